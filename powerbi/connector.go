package powerbi

import (
	"archive/zip"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/odata-bridge/bridge/internal/mtext"
)

// ErrInvalidConnector reports connector parameters that cannot produce a
// working connector; the wrapped message lists every problem.
var ErrInvalidConnector = errors.New("invalid connector parameters")

// Defaults of the Connector fields; PublicURL has none.
const (
	DefaultKind     = "ODataBridge"
	DefaultLabel    = "OData Bridge"
	DefaultVersion  = "1.0.0"
	DefaultClientID = "powerbi"
)

// RedirectURI is the fixed redirect of Power Query's OAuth sign-in window; the
// bridge must list it for the connector's client.
const RedirectURI = "https://oauth.powerbi.com/views/oauthredirect.html"

// IconSizes lists the pixel sizes of the PNG icons packed in the .mez.
func IconSizes() []int { return []int{16, 20, 24, 32, 40, 48, 64, 80} }

// Connector holds the parameters of a generated Power Query custom connector.
type Connector struct {
	// Kind is the data source kind and section name, an M identifier.
	// Empty means DefaultKind.
	Kind string
	// Label is the name shown in Get Data and in credential prompts.
	// Empty means DefaultLabel.
	Label string
	// Version is the connector version, x.y.z. Empty means DefaultVersion.
	Version string
	// PublicURL is the bridge's absolute public base URL; it is required.
	// A trailing slash is ignored.
	PublicURL string
	// ClientID is the OAuth client id the connector presents to the bridge.
	// Empty means DefaultClientID.
	ClientID string
}

// File is one named file of the connector package.
type File struct {
	// Name is the file name inside the .mez (flat, no directories).
	Name string
	// Data is the file content.
	Data []byte
}

//go:embed connector.pq.tmpl
var pqSource string

var pqTemplate = template.Must(template.New("connector.pq").
	Funcs(template.FuncMap{"m": mtext.Quote}).
	Option("missingkey=error").
	Parse(pqSource))

var (
	identPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	versionPattern = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$`)
)

// mKeywords are the M keywords (M language specification, "Keywords and
// predefined identifiers"); none of them can name a section or a kind.
var mKeywords = map[string]bool{
	"and": true, "as": true, "each": true, "else": true, "error": true, "false": true,
	"if": true, "in": true, "is": true, "let": true, "meta": true, "not": true,
	"null": true, "or": true, "otherwise": true, "section": true, "shared": true,
	"then": true, "true": true, "try": true, "type": true,
}

// withDefaults returns c with every empty optional field set to its default.
func (c Connector) withDefaults() Connector {
	if c.Kind == "" {
		c.Kind = DefaultKind
	}
	if c.Label == "" {
		c.Label = DefaultLabel
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	return c
}

// Validate reports, in one error wrapping ErrInvalidConnector, every
// parameter that would make the connector unusable. Empty optional fields
// take their defaults first.
func (c Connector) Validate() error {
	_, err := c.normalized()
	return err
}

// normalized applies the defaults, validates, and trims the public URL.
func (c Connector) normalized() (Connector, error) {
	c = c.withDefaults()
	var problems []string
	if !identPattern.MatchString(c.Kind) || mKeywords[c.Kind] {
		problems = append(problems, fmt.Sprintf("kind %q is not an M identifier (letters, digits, '_'; not a keyword)", c.Kind))
	}
	if !versionPattern.MatchString(c.Version) {
		problems = append(problems, fmt.Sprintf("version %q is not x.y.z", c.Version))
	}
	if err := checkText(c.Label); err != nil {
		problems = append(problems, "label "+err.Error())
	}
	if err := checkText(c.ClientID); err != nil {
		problems = append(problems, "client_id "+err.Error())
	}
	base, err := normalizeBaseURL(c.PublicURL)
	if err != nil {
		problems = append(problems, "public_url "+err.Error())
	}
	c.PublicURL = base
	if len(problems) > 0 {
		return c, fmt.Errorf("%w: %s", ErrInvalidConnector, strings.Join(problems, "; "))
	}
	return c, nil
}

// checkText accepts short printable UTF-8 text.
func checkText(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > 200:
		return errors.New("is longer than 200 bytes")
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("contains a control character")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.Is(unicode.Noncharacter_Code_Point, r) }) >= 0:
		return errors.New("contains a Unicode noncharacter") // XML 1.0 cannot carry U+FFFE or U+FFFF
	}
	return nil
}

// normalizeBaseURL checks that raw is an absolute http(s) URL without
// credentials, query or fragment, and returns it without a trailing slash.
func normalizeBaseURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("is empty")
	}
	if !utf8.ValidString(raw) || strings.IndexFunc(raw, unicode.IsControl) >= 0 || strings.ContainsAny(raw, " \"") {
		return "", errors.New("contains a control character, a space or a quote")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("does not parse as a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", errors.New("must be an absolute http or https URL")
	case u.Host == "" || u.Hostname() == "":
		return "", errors.New("has no host")
	case u.User != nil:
		return "", errors.New("must not carry credentials")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(raw, "?#"):
		return "", errors.New("must not have a query or fragment")
	}
	return strings.TrimRight(raw, "/"), nil
}

// pqData is what the .pq template sees.
type pqData struct {
	Connector
	Icons16, Icons32 []string
}

// PQ renders the connector's section document (the .pq source).
func (c Connector) PQ() ([]byte, error) {
	n, err := c.normalized()
	if err != nil {
		return nil, err
	}
	data := pqData{Connector: n}
	for _, size := range []int{16, 20, 24, 32} {
		data.Icons16 = append(data.Icons16, n.iconName(size))
	}
	for _, size := range []int{32, 40, 48, 64, 80} {
		data.Icons32 = append(data.Icons32, n.iconName(size))
	}
	var b bytes.Buffer
	if err := pqTemplate.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("render connector: %w", err)
	}
	return b.Bytes(), nil
}

// iconName is the file name the Publish record loads for one icon size.
func (c Connector) iconName(size int) string { return fmt.Sprintf("%s%d.png", c.Kind, size) }

// resxStrings returns the resources.resx entries, in file order.
func (c Connector) resxStrings() [][2]string {
	return [][2]string{
		{"ButtonTitle", c.Label},
		{"ButtonHelp", "Connect to the OData feeds of the bridge at " + c.PublicURL + "."},
		{"AuthenticationLabel", "Sign in to " + c.Label},
		{"FunctionName", c.Label},
		{"FunctionDescription", "Lists the OData sources that the bridge at " + c.PublicURL + " relays, and opens their feeds."},
		{"UrlCaption", "Bridge URL"},
		{"UrlDescription", "The address of the bridge: " + c.PublicURL},
		{"WrongBridge", "This connector belongs to the bridge at " + c.PublicURL + ". Download the connector from the bridge you want to reach."},
		{"ForeignFeed", "The bridge listed a feed outside its own address; the connector does not open it."},
		{"NoCode", "The sign-in answer carried neither a code nor an error."},
		{"StateMismatch", "The sign-in answer does not belong to this sign-in; please sign in again."},
	}
}

// Resx renders resources.resx, the string table that Extension.LoadString
// reads: the Get Data button text and the help and error strings.
func (c Connector) Resx() ([]byte, error) {
	n, err := c.normalized()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n<root>\n")
	headers := [][2]string{
		{"resmimetype", "text/microsoft-resx"},
		{"version", "2.0"},
		{"reader", "System.Resources.ResXResourceReader, System.Windows.Forms, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089"},
		{"writer", "System.Resources.ResXResourceWriter, System.Windows.Forms, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089"},
	}
	for _, h := range headers {
		fmt.Fprintf(&b, "  <resheader name=\"%s\">\n    <value>%s</value>\n  </resheader>\n", xmlText(h[0]), xmlText(h[1]))
	}
	for _, d := range n.resxStrings() {
		fmt.Fprintf(&b, "  <data name=\"%s\" xml:space=\"preserve\">\n    <value>%s</value>\n  </data>\n", xmlText(d[0]), xmlText(d[1]))
	}
	b.WriteString("</root>\n")
	return b.Bytes(), nil
}

// xmlEscaper escapes text for XML and HTML character data and quoted
// attribute values, with the named entities Office writes. A carriage return
// is a character reference, so that XML's line-end normalisation keeps it.
var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "\r", "&#13;")

// xmlText escapes s for XML character data and attribute values. Callers
// have already refused the control characters XML 1.0 cannot carry.
func xmlText(s string) string { return xmlEscaper.Replace(s) }

// MezName is the file name of the packed connector, e.g. "ODataBridge.mez";
// Power BI Desktop loads it from Documents\Power BI Desktop\Custom Connectors.
func (c Connector) MezName() string { return c.withDefaults().Kind + ".mez" }

// Files returns the files of the .mez in packing order: the section document
// as {Kind}.m, resources.resx, and the icons {Kind}16.png … {Kind}80.png.
func (c Connector) Files() ([]File, error) {
	n, err := c.normalized()
	if err != nil {
		return nil, err
	}
	pq, err := n.PQ()
	if err != nil {
		return nil, err
	}
	resx, err := n.Resx()
	if err != nil {
		return nil, err
	}
	files := []File{{Name: n.Kind + ".m", Data: pq}, {Name: "resources.resx", Data: resx}}
	icons, err := n.Icons()
	if err != nil {
		return nil, err
	}
	return append(files, icons...), nil
}

// Icons returns the PNG icons named as the Publish record loads them.
func (c Connector) Icons() ([]File, error) {
	n := c.withDefaults()
	var files []File
	for _, size := range IconSizes() {
		data, err := icon(size)
		if err != nil {
			return nil, fmt.Errorf("icon %d px: %w", size, err)
		}
		files = append(files, File{Name: n.iconName(size), Data: data})
	}
	return files, nil
}

// mezTime is the modification time of every .mez entry, so that the same
// parameters always give the same bytes (and the same HTTP ETag).
var mezTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Mez packs the connector as a .mez: a flat zip of the section document,
// resources.resx and the icons, as the Power Query SDK packs an extension.
func (c Connector) Mez() ([]byte, error) {
	files, err := c.Files()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, f := range files {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: mezTime})
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", f.Name, err)
		}
		if _, err := w.Write(f.Data); err != nil {
			return nil, fmt.Errorf("pack %s: %w", f.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("pack connector: %w", err)
	}
	return b.Bytes(), nil
}

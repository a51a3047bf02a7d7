package powerbi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/odata-bridge/bridge/internal/mtext"
)

// ErrInvalidFeed reports a feed URL or query name that a connection file
// cannot carry.
var ErrInvalidFeed = errors.New("invalid connection file parameters")

// checkFeedURL accepts an absolute http(s) URL without credentials or fragment.
func checkFeedURL(raw string) error {
	if raw == "" || !utf8.ValidString(raw) || strings.IndexFunc(raw, unicode.IsControl) >= 0 || strings.ContainsAny(raw, " \"") {
		return fmt.Errorf("%w: feed URL is empty or contains a control character, a space or a quote", ErrInvalidFeed)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("%w: feed URL must be an absolute http or https URL", ErrInvalidFeed)
	}
	if u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%w: feed URL must not carry credentials or a fragment", ErrInvalidFeed)
	}
	return nil
}

// pbids is Power BI's connection file (.pbids): a version and one or more
// connections, each naming a protocol, an address and a mode.
type pbids struct {
	Version     string            `json:"version"`
	Connections []pbidsConnection `json:"connections"`
}

type pbidsConnection struct {
	Details pbidsDetails   `json:"details"`
	Options map[string]any `json:"options"`
	Mode    string         `json:"mode"`
}

type pbidsDetails struct {
	Protocol string       `json:"protocol"`
	Address  pbidsAddress `json:"address"`
}

type pbidsAddress struct {
	URL string `json:"url"`
}

// PBIDS renders a Power BI Desktop connection file that opens feedURL with
// the built-in OData feed connector, in Import mode.
func PBIDS(feedURL string) ([]byte, error) {
	if err := checkFeedURL(feedURL); err != nil {
		return nil, err
	}
	doc := pbids{
		Version: "0.1",
		Connections: []pbidsConnection{{
			Details: pbidsDetails{Protocol: "odata", Address: pbidsAddress{URL: feedURL}},
			Options: map[string]any{},
			Mode:    "Import",
		}},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render pbids: %w", err)
	}
	return append(b, '\n'), nil
}

// Mashup header values as Excel writes them in an .odc's PowerQueryMashupData.
const (
	mashupVersion    = "2.140.405.0"
	mashupMinVersion = "2.21.0.0"
)

// ODC renders an Office Data Connection file that opens feedURL in Excel's
// Power Query: an OLE DB connection through Microsoft.Mashup.OleDb.1 whose
// mashup (one query, named name, reading the feed with OData.Feed) is
// embedded in the file. title is the connection's description.
//
// The layout follows the .odc that Excel writes when a Power Query query is
// exported as a connection file: an HTML document with the docprops and msodc
// XML islands, the connection in odc:PowerQueryConnection and the mashup
// document, escaped, in odc:PowerQueryMashupData. Attributes are quoted and
// the preview script is left out, so the file is also well-formed XML.
func ODC(name, title, feedURL string) ([]byte, error) {
	return ODCVersion(name, title, feedURL, "")
}

// ODCVersion is ODC for a feed whose OData version is known: a version 4
// feed is read with OData.Feed's newer implementation
// ([Implementation="2.0"]), as the custom connector reads it; versions 2
// and 3, and "" for an unknown version, keep the default implementation,
// which reads every version.
func ODCVersion(name, title, feedURL, version string) ([]byte, error) {
	if err := checkFeedURL(feedURL); err != nil {
		return nil, err
	}
	if err := checkText(name); err != nil {
		return nil, fmt.Errorf("%w: name %v", ErrInvalidFeed, err)
	}
	if title == "" {
		title = name
	}
	if err := checkText(title); err != nil {
		return nil, fmt.Errorf("%w: title %v", ErrInvalidFeed, err)
	}
	formula := "let\r\n    Source = " + FeedCall(feedURL, version) + "\r\nin\r\n    Source"
	mashup := `<Mashup xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.microsoft.com/DataMashup">` +
		`<Client>EXCEL</Client><Version>` + mashupVersion + `</Version><MinVersion>` + mashupMinVersion + `</MinVersion>` +
		`<Culture>en-US</Culture><SafeCombine>true</SafeCombine><Items>` +
		`<Query Name="` + xmlText(name) + `"><Formula>` + cdata(formula) + `</Formula>` +
		`<IsParameterQuery xsi:nil="true" /><IsDirectQuery xsi:nil="true" /></Query></Items></Mashup>`
	connection := "Provider=Microsoft.Mashup.OleDb.1;Data Source=$Workbook$;Location=" + oleDBValue(name) + ";Extended Properties=\"\""
	command := "SELECT * FROM [" + strings.ReplaceAll(name, "]", "]]") + "]"

	var b strings.Builder
	w := func(s ...string) {
		for _, x := range s {
			b.WriteString(x)
		}
	}
	w(`<html xmlns:o="urn:schemas-microsoft-com:office:office"`, "\r\n",
		`xmlns="http://www.w3.org/TR/REC-html40">`, "\r\n\r\n<head>\r\n",
		`<meta http-equiv="Content-Type" content="text/x-ms-odc; charset=utf-8" />`, "\r\n",
		`<meta name="ProgId" content="ODC.Database" />`, "\r\n",
		`<meta name="SourceType" content="OLEDB" />`, "\r\n",
		`<title>Query - `, xmlText(name), `</title>`, "\r\n",
		`<xml id="docprops"><o:DocumentProperties`, "\r\n",
		`  xmlns:o="urn:schemas-microsoft-com:office:office"`, "\r\n",
		`  xmlns="http://www.w3.org/TR/REC-html40">`, "\r\n",
		`  <o:Description>`, xmlText(title), `</o:Description>`, "\r\n",
		`  <o:Name>Query - `, xmlText(name), `</o:Name>`, "\r\n",
		` </o:DocumentProperties>`, "\r\n",
		`</xml><xml id="msodc"><odc:OfficeDataConnection`, "\r\n",
		`  xmlns:odc="urn:schemas-microsoft-com:office:odc"`, "\r\n",
		`  xmlns="http://www.w3.org/TR/REC-html40">`, "\r\n",
		`  <odc:PowerQueryConnection odc:Type="OLEDB">`, "\r\n",
		`   <odc:ConnectionString>`, xmlText(connection), `</odc:ConnectionString>`, "\r\n",
		`   <odc:CommandType>SQL</odc:CommandType>`, "\r\n",
		`   <odc:CommandText>`, xmlText(command), `</odc:CommandText>`, "\r\n",
		`  </odc:PowerQueryConnection>`, "\r\n",
		`  <odc:PowerQueryMashupData>`, xmlText(mashup), `</odc:PowerQueryMashupData>`, "\r\n",
		` </odc:OfficeDataConnection>`, "\r\n",
		`</xml>`, "\r\n",
		`<style>`, "\r\n", `<!--`, "\r\n",
		`    .ODCDataSource`, "\r\n", `    {`, "\r\n", `    behavior: url(dataconn.htc);`, "\r\n", `    }`, "\r\n",
		`-->`, "\r\n", `</style>`, "\r\n",
		`</head>`, "\r\n\r\n",
		`<body>`, "\r\n", `</body>`, "\r\n\r\n", `</html>`, "\r\n")
	return []byte(b.String()), nil
}

// FeedCall is the M expression that reads feedURL with OData.Feed, with the
// options of the feed's OData version (see ODCVersion).
func FeedCall(feedURL, version string) string {
	if strings.HasPrefix(version, "4") {
		return "OData.Feed(" + mtext.Quote(feedURL) + `, null, [Implementation="2.0"])`
	}
	return "OData.Feed(" + mtext.Quote(feedURL) + ")"
}

// cdata wraps s in CDATA sections, splitting any "]]>" across two sections.
func cdata(s string) string {
	return "<![CDATA[" + strings.ReplaceAll(s, "]]>", "]]]]><![CDATA[>") + "]]>"
}

// oleDBValue quotes an OLE DB connection string value when it needs it
// (OLE DB connection string syntax: a value with ';', quotes or edge spaces
// is enclosed in double quotes, and a double quote inside is doubled).
func oleDBValue(v string) string {
	if !strings.ContainsAny(v, `;"'=`) && strings.TrimSpace(v) == v {
		return v
	}
	return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
}

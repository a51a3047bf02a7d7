package powerbi

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/odata-bridge/bridge/internal/mtext"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		c       Connector
		wantErr []string // substrings of the error; nil means valid
	}{
		{name: "defaults", c: Connector{PublicURL: "https://bridge.example.com"}},
		{name: "all set", c: Connector{Kind: "K2_Bridge2", Label: `K2 "Prod" é`, Version: "10.0.12", PublicURL: "http://127.0.0.1:8080/x/", ClientID: "pbi"}},
		{name: "no public url", c: Connector{}, wantErr: []string{"public_url is empty"}},
		{name: "relative url", c: Connector{PublicURL: "/bridge"}, wantErr: []string{"public_url must be an absolute"}},
		{name: "ftp url", c: Connector{PublicURL: "ftp://bridge.example.com"}, wantErr: []string{"public_url must be an absolute"}},
		{name: "no host", c: Connector{PublicURL: "https:///x"}, wantErr: []string{"public_url has no host"}},
		{name: "credentials", c: Connector{PublicURL: "https://u:p@bridge.example.com"}, wantErr: []string{"credentials"}},
		{name: "query", c: Connector{PublicURL: "https://bridge.example.com/?a=b"}, wantErr: []string{"query or fragment"}},
		{name: "empty query", c: Connector{PublicURL: "https://bridge.example.com/?"}, wantErr: []string{"query or fragment"}},
		{name: "fragment", c: Connector{PublicURL: "https://bridge.example.com/#x"}, wantErr: []string{"query or fragment"}},
		{name: "quote in url", c: Connector{PublicURL: `https://bridge.example.com/"x`}, wantErr: []string{"quote"}},
		{name: "kind digit", c: Connector{Kind: "1Bridge", PublicURL: "https://b.example"}, wantErr: []string{`kind "1Bridge"`}},
		{name: "kind dot", c: Connector{Kind: "OData.Bridge", PublicURL: "https://b.example"}, wantErr: []string{"not an M identifier"}},
		{name: "kind keyword", c: Connector{Kind: "section", PublicURL: "https://b.example"}, wantErr: []string{"not an M identifier"}},
		{name: "kind non-ascii", c: Connector{Kind: "Brücke", PublicURL: "https://b.example"}, wantErr: []string{"not an M identifier"}},
		{name: "version two parts", c: Connector{Version: "1.0", PublicURL: "https://b.example"}, wantErr: []string{`version "1.0"`}},
		{name: "version leading zero", c: Connector{Version: "1.01.0", PublicURL: "https://b.example"}, wantErr: []string{"x.y.z"}},
		{name: "label control", c: Connector{Label: "a\nb", PublicURL: "https://b.example"}, wantErr: []string{"label contains a control character"}},
		{name: "client id bad utf8", c: Connector{ClientID: "\xff", PublicURL: "https://b.example"}, wantErr: []string{"client_id is not valid UTF-8"}},
		{name: "every problem at once", c: Connector{Kind: "let", Version: "x", PublicURL: "nope"},
			wantErr: []string{"kind", "version", "public_url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConnector) {
				t.Fatalf("Validate() = %v, want an ErrInvalidConnector", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to mention %q", err, want)
				}
			}
			if _, err := tt.c.PQ(); !errors.Is(err, ErrInvalidConnector) {
				t.Errorf("PQ() error = %v, want ErrInvalidConnector", err)
			}
			if _, err := tt.c.Mez(); !errors.Is(err, ErrInvalidConnector) {
				t.Errorf("Mez() error = %v, want ErrInvalidConnector", err)
			}
		})
	}
}

func TestPQGolden(t *testing.T) {
	got, err := Connector{PublicURL: "https://bridge.example.com"}.PQ()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "ODataBridge.pq")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestPQGolden -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("PQ() differs from %s (-want +got; refresh with -update):\n%s", golden, diff)
	}
}

// member returns the text of a section member definition "name = …;".
func member(t *testing.T, pq, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?ms)^(?:shared )?` + regexp.QuoteMeta(name) + ` = .*?;\n\n`).FindString(pq)
	if m == "" {
		t.Fatalf("the connector has no section member %s", name)
	}
	return m
}

func TestPQContent(t *testing.T) {
	for _, set := range loadParamSets(t) {
		t.Run(set.Name, func(t *testing.T) {
			c := set.Connector.withDefaults()
			b, err := set.Connector.PQ()
			if err != nil {
				t.Fatal(err)
			}
			pq := string(b)
			base := strings.TrimRight(c.PublicURL, "/")
			wants := []string{
				"[Version = " + mtext.Quote(c.Version) + "]\nsection " + c.Kind + ";\n",
				"BridgeUrl = " + mtext.Quote(base) + ";\n",
				"ClientId = " + mtext.Quote(c.ClientID) + ";\n",
				`RedirectUri = "https://oauth.powerbi.com/views/oauthredirect.html";`,
				"[DataSource.Kind = \"" + c.Kind + "\", Publish = \"" + c.Kind + ".Publish\"]\nshared " + c.Kind + ".Contents = ",
				// The data source path is the bridge URL: the one required parameter, limited to it.
				"Documentation.AllowedValues = {BridgeUrl}",
				"TestConnection = (dataSourcePath) => {\"" + c.Kind + ".Contents\", dataSourcePath}",
				"Label = " + mtext.Quote(c.Label) + "\n",
				`OData.Feed(feedUrl, null, FeedOptions(`,
				`[Implementation = "2.0"]`,
				`Web.Contents(checkedUrl & "/api/sources"`,
				`code_challenge_method = "S256"`,
				`Crypto.CreateHash(CryptoAlgorithm.SHA256, octets)`,
				`grant_type = "authorization_code"`,
				`grant_type = "refresh_token"`,
				`Web.Contents(RevokeUri,`,
			}
			for _, want := range wants {
				if !strings.Contains(pq, want) {
					t.Errorf("the connector lacks %q", want)
				}
			}
			// The ContentsImpl function takes exactly the bridge URL.
			if impl := member(t, pq, "ContentsImpl"); !strings.HasPrefix(impl, "ContentsImpl = (url as text) as table =>") {
				t.Errorf("ContentsImpl signature: %q", strings.SplitN(impl, "\n", 2)[0])
			}
			// A public client: nothing secret ships in the connector.
			for _, banned := range []string{"client_secret", "clientsecret", "secret"} {
				if strings.Contains(strings.ToLower(pq), banned) {
					t.Errorf("the connector mentions %q", banned)
				}
			}
			for i := 0; i < len(pq); i++ {
				if pq[i] > 0x7e || (pq[i] < 0x20 && pq[i] != '\n') {
					t.Fatalf("byte %#x at %d: the .pq should be printable ASCII", pq[i], i)
				}
			}
		})
	}
}

// resx is the shape of resources.resx.
type resx struct {
	XMLName   xml.Name `xml:"root"`
	Resheader []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value"`
	} `xml:"resheader"`
	Data []struct {
		Name  string `xml:"name,attr"`
		Space string `xml:"http://www.w3.org/XML/1998/namespace space,attr"`
		Value string `xml:"value"`
	} `xml:"data"`
}

// parseResx decodes resources.resx strictly and returns its strings by name.
func parseResx(t *testing.T, data []byte) map[string]string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	var r resx
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("resources.resx is not well-formed: %v", err)
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if cd, ok := tok.(xml.CharData); err != nil || !ok || len(bytes.TrimSpace(cd)) > 0 {
			t.Fatalf("resources.resx has content after the root element: %v %v", tok, err)
		}
	}
	headers := map[string]string{}
	for _, h := range r.Resheader {
		headers[h.Name] = h.Value
	}
	if headers["resmimetype"] != "text/microsoft-resx" || headers["version"] != "2.0" ||
		!strings.HasPrefix(headers["reader"], "System.Resources.ResXResourceReader,") {
		t.Errorf("resources.resx headers = %v", headers)
	}
	strs := map[string]string{}
	for _, d := range r.Data {
		if _, dup := strs[d.Name]; dup {
			t.Errorf("resources.resx defines %q twice", d.Name)
		}
		if d.Space != "preserve" {
			t.Errorf("resources.resx %q: xml:space = %q, want preserve", d.Name, d.Space)
		}
		strs[d.Name] = d.Value
	}
	return strs
}

var (
	loadStringRef = regexp.MustCompile(`Extension\.LoadString\("([^"]*)"\)`)
	contentsRef   = regexp.MustCompile(`Extension\.Contents\("([^"]*)"\)`)
)

func TestMez(t *testing.T) {
	for _, set := range loadParamSets(t) {
		t.Run(set.Name, func(t *testing.T) {
			c := set.Connector.withDefaults()
			mez, err := set.Connector.Mez()
			if err != nil {
				t.Fatal(err)
			}
			zr, err := zip.NewReader(bytes.NewReader(mez), int64(len(mez)))
			if err != nil {
				t.Fatalf("the .mez is not a zip: %v", err)
			}
			files := map[string][]byte{}
			var names []string
			for _, f := range zr.File {
				if strings.ContainsAny(f.Name, `/\`) {
					t.Errorf("entry %q is not flat", f.Name)
				}
				if f.Method != zip.Deflate {
					t.Errorf("entry %q: method %d, want deflate", f.Name, f.Method)
				}
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatalf("read %s: %v", f.Name, err)
				}
				names = append(names, f.Name)
				files[f.Name] = data
			}
			want := []string{c.Kind + ".m", "resources.resx"}
			for _, size := range []int{16, 20, 24, 32, 40, 48, 64, 80} {
				want = append(want, c.Kind+itoa(size)+".png")
			}
			if diff := cmp.Diff(want, names); diff != "" {
				t.Fatalf(".mez entries (-want +got):\n%s", diff)
			}

			pq, _ := set.Connector.PQ()
			if !bytes.Equal(files[c.Kind+".m"], pq) {
				t.Errorf("%s.m differs from PQ()", c.Kind)
			}
			for _, size := range IconSizes() {
				name := c.Kind + itoa(size) + ".png"
				cfg, err := png.DecodeConfig(bytes.NewReader(files[name]))
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if cfg.Width != size || cfg.Height != size {
					t.Errorf("%s is %dx%d, want %dx%d", name, cfg.Width, cfg.Height, size, size)
				}
				if _, err := png.Decode(bytes.NewReader(files[name])); err != nil {
					t.Errorf("%s does not decode: %v", name, err)
				}
			}

			strs := parseResx(t, files["resources.resx"])
			refs := loadStringRef.FindAllStringSubmatch(string(pq), -1)
			if len(refs) < 5 {
				t.Fatalf("the .pq loads only %d strings", len(refs))
			}
			for _, ref := range refs {
				if v, ok := strs[ref[1]]; !ok || v == "" {
					t.Errorf("the .pq loads %q, which resources.resx lacks", ref[1])
				}
			}
			if strs["ButtonTitle"] != c.Label {
				t.Errorf("ButtonTitle = %q, want the label %q", strs["ButtonTitle"], c.Label)
			}
			// Every icon the Publish record loads is in the package, and every icon is used.
			var loaded []string
			for _, ref := range contentsRef.FindAllStringSubmatch(string(pq), -1) {
				if _, ok := files[ref[1]]; !ok {
					t.Errorf("the .pq loads %q, which the .mez lacks", ref[1])
				}
				loaded = append(loaded, ref[1])
			}
			for name := range files {
				if strings.HasSuffix(name, ".png") && !slices.Contains(loaded, name) {
					t.Errorf("%s is packed but the Publish record does not load it", name)
				}
			}
		})
	}
}

func TestMezIsReproducible(t *testing.T) {
	c := Connector{PublicURL: "https://bridge.example.com"}
	a, err := c.Mez()
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Mez()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two Mez() calls with the same parameters gave different bytes")
	}
	if got, want := c.MezName(), "ODataBridge.mez"; got != want {
		t.Errorf("MezName() = %q, want %q", got, want)
	}
	if got, want := (Connector{Kind: "K2"}).MezName(), "K2.mez"; got != want {
		t.Errorf("MezName() = %q, want %q", got, want)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

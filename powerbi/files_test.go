package powerbi

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/internal/mtext"
)

func TestPBIDS(t *testing.T) {
	feed := "https://bridge.example.com:8443/base/odata/k2/"
	b, err := PBIDS(feed)
	if err != nil {
		t.Fatal(err)
	}
	// Power BI's .pbids schema: version, and connections with details
	// (protocol, address.url), options and mode.
	var doc struct {
		Version     string `json:"version"`
		Connections []struct {
			Details struct {
				Protocol string `json:"protocol"`
				Address  struct {
					URL string `json:"url"`
				} `json:"address"`
			} `json:"details"`
			Options map[string]any `json:"options"`
			Mode    string         `json:"mode"`
		} `json:"connections"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("the .pbids does not match the schema: %v\n%s", err, b)
	}
	if doc.Version != "0.1" {
		t.Errorf("version = %q, want 0.1", doc.Version)
	}
	if len(doc.Connections) != 1 {
		t.Fatalf("%d connections, want 1", len(doc.Connections))
	}
	c := doc.Connections[0]
	if c.Details.Protocol != "odata" || c.Details.Address.URL != feed || c.Mode != "Import" || c.Options == nil {
		t.Errorf("connection = %+v, want protocol odata, url %s, mode Import, options {}", c, feed)
	}

	for _, bad := range []string{"", "bridge.example.com/odata/k2", "ftp://x/y", "https://u:p@x/odata/", "https://x/a b", "https://x/#f"} {
		if _, err := PBIDS(bad); !errors.Is(err, ErrInvalidFeed) {
			t.Errorf("PBIDS(%q) error = %v, want ErrInvalidFeed", bad, err)
		}
	}
}

// odcDoc is the structure of the .odc that Excel writes for a Power Query
// connection: an HTML page whose head carries the Office meta tags, the
// docprops island (o:DocumentProperties) and the msodc island
// (odc:OfficeDataConnection with odc:PowerQueryConnection and
// odc:PowerQueryMashupData).
type odcDoc struct {
	XMLName xml.Name `xml:"http://www.w3.org/TR/REC-html40 html"`
	Head    struct {
		Meta []struct {
			HTTPEquiv string `xml:"http-equiv,attr"`
			Name      string `xml:"name,attr"`
			Content   string `xml:"content,attr"`
		} `xml:"meta"`
		Title string `xml:"title"`
		XML   []struct {
			ID    string `xml:"id,attr"`
			Props *struct {
				Description string `xml:"urn:schemas-microsoft-com:office:office Description"`
				Name        string `xml:"urn:schemas-microsoft-com:office:office Name"`
			} `xml:"urn:schemas-microsoft-com:office:office DocumentProperties"`
			Conn *struct {
				PQ struct {
					Type             string `xml:"urn:schemas-microsoft-com:office:odc Type,attr"`
					ConnectionString string `xml:"urn:schemas-microsoft-com:office:odc ConnectionString"`
					CommandType      string `xml:"urn:schemas-microsoft-com:office:odc CommandType"`
					CommandText      string `xml:"urn:schemas-microsoft-com:office:odc CommandText"`
				} `xml:"urn:schemas-microsoft-com:office:odc PowerQueryConnection"`
				Mashup string `xml:"urn:schemas-microsoft-com:office:odc PowerQueryMashupData"`
			} `xml:"urn:schemas-microsoft-com:office:odc OfficeDataConnection"`
		} `xml:"xml"`
	} `xml:"head"`
}

// mashupDoc is the DataMashup document inside PowerQueryMashupData.
type mashupDoc struct {
	XMLName     xml.Name `xml:"http://schemas.microsoft.com/DataMashup Mashup"`
	Client      string   `xml:"Client"`
	Version     string   `xml:"Version"`
	MinVersion  string   `xml:"MinVersion"`
	Culture     string   `xml:"Culture"`
	SafeCombine string   `xml:"SafeCombine"`
	Queries     []struct {
		Name    string `xml:"Name,attr"`
		Formula string `xml:"Formula"`
	} `xml:"Items>Query"`
}

func TestODC(t *testing.T) {
	tests := []struct {
		name, title, feed string
		wantLocation      string
	}{
		{"k2", "K2 SmartObjects", "https://bridge.example.com/odata/k2/", "Location=k2;"},
		{`we"ird];name`, "Tïtle <&>", "http://127.0.0.1:8080/b/odata/x/?$format=json&a=]]>", `Location="we""ird];name";`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ODC(tt.name, tt.title, tt.feed)
			if err != nil {
				t.Fatal(err)
			}
			dec := xml.NewDecoder(bytes.NewReader(b))
			dec.Strict = true
			var doc odcDoc
			if err := dec.Decode(&doc); err != nil {
				t.Fatalf("the .odc is not well-formed: %v\n%s", err, b)
			}
			meta := map[string]string{}
			for _, m := range doc.Head.Meta {
				meta[m.HTTPEquiv+m.Name] = m.Content
			}
			if meta["Content-Type"] != "text/x-ms-odc; charset=utf-8" || meta["ProgId"] != "ODC.Database" || meta["SourceType"] != "OLEDB" {
				t.Errorf("meta = %v", meta)
			}
			if want := "Query - " + tt.name; doc.Head.Title != want {
				t.Errorf("title = %q, want %q", doc.Head.Title, want)
			}
			islands := map[string]int{}
			for i, x := range doc.Head.XML {
				islands[x.ID] = i
			}
			pi, ok1 := islands["docprops"]
			ci, ok2 := islands["msodc"]
			if !ok1 || !ok2 || doc.Head.XML[pi].Props == nil || doc.Head.XML[ci].Conn == nil {
				t.Fatalf("the .odc lacks the docprops or msodc island: %+v", doc.Head.XML)
			}
			if p := doc.Head.XML[pi].Props; p.Description != tt.title || p.Name != "Query - "+tt.name {
				t.Errorf("docprops = %+v", *p)
			}
			conn := doc.Head.XML[ci].Conn
			cs := conn.PQ.ConnectionString
			if conn.PQ.Type != "OLEDB" || !strings.HasPrefix(cs, "Provider=Microsoft.Mashup.OleDb.1;Data Source=$Workbook$;") ||
				!strings.Contains(cs, tt.wantLocation) {
				t.Errorf("PowerQueryConnection type %q, connection string %q", conn.PQ.Type, cs)
			}
			wantCommand := "SELECT * FROM [" + strings.ReplaceAll(tt.name, "]", "]]") + "]"
			if conn.PQ.CommandType != "SQL" || conn.PQ.CommandText != wantCommand {
				t.Errorf("command %q %q, want SQL %q", conn.PQ.CommandType, conn.PQ.CommandText, wantCommand)
			}

			var m mashupDoc
			mdec := xml.NewDecoder(strings.NewReader(conn.Mashup))
			mdec.Strict = true
			if err := mdec.Decode(&m); err != nil {
				t.Fatalf("PowerQueryMashupData is not a DataMashup document: %v\n%s", err, conn.Mashup)
			}
			if m.Client != "EXCEL" || m.Version == "" || m.MinVersion == "" || m.Culture == "" || len(m.Queries) != 1 {
				t.Fatalf("mashup = %+v", m)
			}
			q := m.Queries[0]
			if q.Name != tt.name {
				t.Errorf("query name = %q, want %q", q.Name, tt.name)
			}
			wantCall := "OData.Feed(" + mtext.Quote(tt.feed) + ")"
			if !strings.Contains(q.Formula, wantCall) {
				t.Errorf("formula %q lacks %s", q.Formula, wantCall)
			}
			lit := strings.TrimSuffix(strings.TrimPrefix(wantCall, "OData.Feed("), ")")
			if got, err := mtext.Unquote(lit); err != nil || got != tt.feed {
				t.Errorf("the formula's URL reads back as %q, %v; want %q", got, err, tt.feed)
			}
			if strings.Contains(string(b), "<script") {
				t.Error("the .odc carries a script")
			}
		})
	}
}

// TestODCFormulaParses runs the embedded formula through the Power Query parser.
func TestODCFormulaParses(t *testing.T) {
	b, err := ODC("k2", "K2", "https://bridge.example.com:8443/odata/k2/Items('a%23(')?$top=5")
	if err != nil {
		t.Fatal(err)
	}
	var doc odcDoc
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var formula string
	for _, x := range doc.Head.XML {
		if x.Conn != nil {
			var m mashupDoc
			if err := xml.Unmarshal([]byte(x.Conn.Mashup), &m); err != nil || len(m.Queries) != 1 {
				t.Fatalf("mashup: %v", err)
			}
			formula = m.Queries[0].Formula
		}
	}
	doc2 := "section Odc;\nshared Query = " + formula + ";\n"
	if failed, out := parseM(t, map[string][]byte{"odc.pq": []byte(doc2)}); failed {
		t.Errorf("the Power Query parser rejected the .odc formula:\n%s\n%s", out, formula)
	}
}

func TestODCRejects(t *testing.T) {
	tests := []struct{ name, title, feed string }{
		{"", "t", "https://b.example/odata/k2/"},
		{"k2", "t", "not a url"},
		{"k2", "t", "file:///etc/passwd"},
		{"k\n2", "t", "https://b.example/odata/k2/"},
		{"k2", "t\x00", "https://b.example/odata/k2/"},
	}
	for _, tt := range tests {
		if _, err := ODC(tt.name, tt.title, tt.feed); !errors.Is(err, ErrInvalidFeed) {
			t.Errorf("ODC(%q, %q, %q) error = %v, want ErrInvalidFeed", tt.name, tt.title, tt.feed, err)
		}
	}
}

// fuzzSeeds returns the texts of the connector parameter sets in testdata.
func fuzzSeeds(f *testing.F) []string {
	raw, err := os.ReadFile("testdata/connectors.json")
	if err != nil {
		f.Fatal(err)
	}
	var sets []struct{ Connector Connector }
	if err := json.Unmarshal(raw, &sets); err != nil {
		f.Fatal(err)
	}
	seeds := []string{"", `"`, "#(", "#(#)", "\r\n\t", "\x00\x7f\u0085", "\xff\xfe", "😀"}
	for _, s := range sets {
		c := s.Connector
		seeds = append(seeds, c.Kind, c.Label, c.Version, c.PublicURL, c.ClientID)
	}
	return seeds
}

// FuzzODC checks that every accepted name, title and URL gives a
// well-formed .odc whose mashup carries them back unchanged.
func FuzzODC(f *testing.F) {
	for _, set := range fuzzSeeds(f) {
		f.Add(set, set, "https://bridge.example.com/odata/k2/")
	}
	f.Add("k2", "K2", "http://127.0.0.1:8080/b/odata/x/?$format=json&a=]]>")
	f.Fuzz(func(t *testing.T, name, title, feed string) {
		b, err := ODC(name, title, feed)
		if err != nil {
			if !errors.Is(err, ErrInvalidFeed) {
				t.Fatalf("ODC error %v is not ErrInvalidFeed", err)
			}
			return
		}
		var doc odcDoc
		dec := xml.NewDecoder(bytes.NewReader(b))
		dec.Strict = true
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("ODC(%q, %q, %q) is not well-formed: %v", name, title, feed, err)
		}
		var m mashupDoc
		for _, x := range doc.Head.XML {
			if x.Conn == nil {
				continue
			}
			if err := xml.Unmarshal([]byte(x.Conn.Mashup), &m); err != nil {
				t.Fatalf("mashup of ODC(%q, %q, %q): %v", name, title, feed, err)
			}
		}
		if len(m.Queries) != 1 || m.Queries[0].Name != name || !strings.Contains(m.Queries[0].Formula, "OData.Feed("+mtext.Quote(feed)+")") {
			t.Fatalf("ODC(%q, %q, %q) mashup = %+v", name, title, feed, m)
		}
	})
}

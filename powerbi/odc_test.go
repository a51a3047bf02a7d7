package powerbi

import (
	"encoding/xml"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/odata-bridge/bridge/internal/meval"
	"github.com/odata-bridge/bridge/odata"
)

// odcFormula returns the query name and formula embedded in an .odc.
func odcFormula(t *testing.T, b []byte) (name, formula string) {
	t.Helper()
	var doc odcDoc
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the .odc is not well-formed: %v", err)
	}
	for _, x := range doc.Head.XML {
		if x.Conn == nil {
			continue
		}
		var m mashupDoc
		if err := xml.Unmarshal([]byte(x.Conn.Mashup), &m); err != nil || len(m.Queries) != 1 {
			t.Fatalf("mashup %q: %v", x.Conn.Mashup, err)
		}
		return m.Queries[0].Name, m.Queries[0].Formula
	}
	t.Fatal("the .odc has no PowerQueryMashupData")
	return "", ""
}

// TestODCVersion evaluates the query of an entity set's .odc: OData.Feed
// reads exactly the entity set's URL, with Implementation="2.0" for a
// version 4 feed and the default implementation otherwise; and Microsoft's
// parser accepts every variant.
func TestODCVersion(t *testing.T) {
	const feed = "https://bridge.example.com:8443/b/odata/k2/Ordr%C3%A9s_2"
	v2impl := &meval.Record{Names: []string{"Implementation"}, Values: []meval.Value{"2.0"}}
	tests := []struct {
		version  string
		wantArgs []meval.Value
	}{
		{odata.Version4, []meval.Value{feed, nil, v2impl}},
		{"4.01", []meval.Value{feed, nil, v2impl}},
		{odata.Version3, []meval.Value{feed}},
		{odata.Version2, []meval.Value{feed}},
		{"", []meval.Value{feed}},
	}
	docs := map[string][]byte{}
	for _, tt := range tests {
		t.Run("version "+tt.version, func(t *testing.T) {
			b, err := ODCVersion("Ordrés_2", "K2: Ordrés_2", feed, tt.version)
			if err != nil {
				t.Fatal(err)
			}
			name, formula := odcFormula(t, b)
			if name != "Ordrés_2" {
				t.Errorf("query name %q, want Ordrés_2", name)
			}
			doc := []byte("section Odc;\nshared Query = " + formula + ";\n")
			docs[fmt.Sprintf("odc-v%s.pq", tt.version)] = doc
			var calls [][]meval.Value
			host := meval.Host{Functions: map[string]func([]meval.Value) (meval.Value, error){
				"OData.Feed": func(args []meval.Value) (meval.Value, error) {
					calls = append(calls, args)
					return "rows", nil
				},
			}}
			s, err := meval.Parse(doc, host)
			if err != nil {
				t.Fatalf("meval.Parse: %v\n%s", err, doc)
			}
			got, err := s.Eval("Query")
			if err != nil || got != "rows" {
				t.Fatalf("Query = %v, %v; want the feed's rows", got, err)
			}
			if len(calls) != 1 {
				t.Fatalf("%d OData.Feed calls, want 1", len(calls))
			}
			if diff := cmp.Diff(tt.wantArgs, calls[0]); diff != "" {
				t.Errorf("OData.Feed arguments (-want +got):\n%s", diff)
			}
		})
	}
	if failed, out := parseM(t, docs); failed {
		t.Errorf("the Power Query parser rejected an .odc formula:\n%s", out)
	}
}

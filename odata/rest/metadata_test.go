package rest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// presetService is the k2-workflow service as a config would declare it;
// $metadata and the service document need no upstream call.
func presetService(t *testing.T) *Service {
	t.Helper()
	sets, err := Preset(PresetK2Workflow)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Name: "workflow", URL: "https://k2.example.com/api/workflow/v1/",
		PublicBase: "https://bridge.example.com/odata/workflow/", EntitySets: sets,
	}, Options{ErrorHandler: testErrorHandler})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", name, diff)
	}
}

// csdl is the part of a CSDL document the navigator reads.
type csdl struct {
	XMLName      xml.Name `xml:"Edmx"`
	Version      string   `xml:"Version,attr"`
	DataServices struct {
		Schema struct {
			Namespace   string           `xml:"Namespace,attr"`
			EntityTypes []csdlEntityType `xml:"EntityType"`
			Container   struct {
				Name        string           `xml:"Name,attr"`
				Sets        []csdlEntitySet  `xml:"EntitySet"`
				Annotations []csdlAnnotation `xml:"Annotation"`
			} `xml:"EntityContainer"`
		} `xml:"Schema"`
	} `xml:"DataServices"`
}

type csdlEntityType struct {
	Name string `xml:"Name,attr"`
	Key  []struct {
		Name string `xml:"Name,attr"`
	} `xml:"Key>PropertyRef"`
	Properties []struct {
		Name string `xml:"Name,attr"`
		Type string `xml:"Type,attr"`
	} `xml:"Property"`
}

type csdlEntitySet struct {
	Name        string           `xml:"Name,attr"`
	EntityType  string           `xml:"EntityType,attr"`
	Annotations []csdlAnnotation `xml:"Annotation"`
}

type csdlAnnotation struct {
	Term string `xml:"Term,attr"`
}

func TestMetadataGolden(t *testing.T) {
	s := presetService(t)
	w := httptest.NewRecorder()
	s.ServeFeed(w, httptest.NewRequest(http.MethodGet, "https://bridge.example.com/odata/workflow/$metadata", nil), "$metadata", "alice", nil)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/xml" {
		t.Errorf("Content-Type: got %q, want application/xml", ct)
	}
	if v := w.Header().Get("OData-Version"); v != "4.0" {
		t.Errorf("OData-Version: got %q, want 4.0", v)
	}
	body := w.Body.Bytes()
	golden(t, "k2-workflow.metadata.xml", body)

	// Well-formed: every token decodes.
	dec := xml.NewDecoder(bytes.NewReader(body))
	for {
		if _, err := dec.Token(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("$metadata is not well-formed XML: %v", err)
			}
			break
		}
	}
	var doc csdl
	if err := xml.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != "4.0" {
		t.Errorf("Edmx Version: got %q, want 4.0", doc.Version)
	}
	schema := doc.DataServices.Schema
	if schema.Container.Name == "" {
		t.Fatal("no EntityContainer")
	}
	sets, _ := Preset(PresetK2Workflow)
	for _, es := range sets {
		i := slices.IndexFunc(schema.Container.Sets, func(s csdlEntitySet) bool {
			return s.Name == es.Name
		})
		if i < 0 {
			t.Errorf("the EntityContainer does not name the entity set %s", es.Name)
			continue
		}
		set := schema.Container.Sets[i]
		if want := schema.Namespace + "." + es.Name; set.EntityType != want {
			t.Errorf("%s: EntityType %q, want %q", es.Name, set.EntityType, want)
		}
		var terms []string
		for _, a := range set.Annotations {
			terms = append(terms, a.Term)
		}
		for _, want := range []string{"Capabilities.CountRestrictions", "Capabilities.FilterRestrictions", "Capabilities.SortRestrictions", "Capabilities.TopSupported", "Capabilities.SkipSupported", "Capabilities.ExpandRestrictions"} {
			if !slices.Contains(terms, want) {
				t.Errorf("%s: no %s annotation", es.Name, want)
			}
		}
		j := slices.IndexFunc(schema.EntityTypes, func(et csdlEntityType) bool {
			return et.Name == es.Name
		})
		if j < 0 {
			t.Errorf("no EntityType %s", es.Name)
			continue
		}
		et := schema.EntityTypes[j]
		if len(et.Key) != 1 || et.Key[0].Name != es.Key {
			t.Errorf("%s: key %v, want %s", es.Name, et.Key, es.Key)
		}
		if len(et.Properties) != len(es.Properties) {
			t.Errorf("%s: %d properties in CSDL, want %d", es.Name, len(et.Properties), len(es.Properties))
		}
		for k, p := range et.Properties {
			if k < len(es.Properties) && (p.Name != es.Properties[k].Name || p.Type != es.Properties[k].typ()) {
				t.Errorf("%s property %d: got %s %s, want %s %s", es.Name, k, p.Name, p.Type, es.Properties[k].Name, es.Properties[k].typ())
			}
		}
	}
	var terms []string
	for _, a := range schema.Container.Annotations {
		terms = append(terms, a.Term)
	}
	for _, want := range []string{"Capabilities.ConformanceLevel", "Capabilities.FilterFunctions", "Capabilities.SupportedFormats"} {
		if !slices.Contains(terms, want) {
			t.Errorf("EntityContainer: no %s annotation", want)
		}
	}
}

func TestServiceDocumentGolden(t *testing.T) {
	s := presetService(t)
	w := httptest.NewRecorder()
	s.ServeFeed(w, httptest.NewRequest(http.MethodGet, "https://bridge.example.com/odata/workflow/", nil), "", "alice", nil)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != jsonContentType {
		t.Errorf("Content-Type: got %q, want %q", ct, jsonContentType)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, w.Body.Bytes(), "", "  "); err != nil {
		t.Fatalf("service document is not JSON: %v", err)
	}
	pretty.WriteByte('\n')
	golden(t, "k2-workflow.service.json", pretty.Bytes())

	var doc struct {
		Context string `json:"@odata.context"`
		Value   []struct{ Name, Kind, URL string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Context != "https://bridge.example.com/odata/workflow/$metadata" {
		t.Errorf("@odata.context: got %q", doc.Context)
	}
	var names []string
	for _, v := range doc.Value {
		names = append(names, v.Name)
		if v.Kind != "EntitySet" || v.URL != v.Name {
			t.Errorf("%s: kind %q url %q, want EntitySet and the name", v.Name, v.Kind, v.URL)
		}
	}
	if want := []string{"Workflows", "Tasks", "Instances"}; !slices.Equal(names, want) {
		t.Errorf("entity sets: got %v, want %v", names, want)
	}
}

func TestMetadataFormatJSON(t *testing.T) {
	s := presetService(t)
	w := httptest.NewRecorder()
	s.ServeFeed(w, httptest.NewRequest(http.MethodGet, "https://bridge.example.com/odata/workflow/$metadata?$format=json", nil), "$metadata", "alice", nil)
	if w.Code != http.StatusNotImplemented {
		t.Errorf("$metadata?$format=json: status %d, want 501", w.Code)
	}
}

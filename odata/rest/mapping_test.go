package rest

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestPresetIsValid(t *testing.T) {
	for _, name := range Presets() {
		sets, err := Preset(name)
		if err != nil {
			t.Fatalf("Preset(%q): %v", name, err)
		}
		if err := Validate(sets); err != nil {
			t.Errorf("Preset(%q) does not validate: %v", name, err)
		}
		if err := Validate(K2WorkflowInstancesPerWorkflow(sets)); err != nil {
			t.Errorf("per-workflow instances of %q do not validate: %v", name, err)
		}
	}
	// Preset hands out copies: editing one leaves the next intact.
	a, _ := Preset(PresetK2Workflow)
	a[0].Properties[0].Name = "changed"
	_ = K2WorkflowInstancesPerWorkflow(a)
	b, _ := Preset(PresetK2Workflow)
	if b[0].Properties[0].Name != "id" || b[2].Path != "instances" {
		t.Errorf("Preset returned shared state: %+v", b[0].Properties[0])
	}
}

func TestValidate(t *testing.T) {
	ok := func() EntitySet {
		return EntitySet{Name: "Tasks", Path: "tasks", Items: "tasks", Key: "sn", Properties: []Property{{Name: "sn"}, {Name: "n", Type: EdmInt32}}}
	}
	tests := []struct {
		name string
		sets func() []EntitySet
		want []string
	}{
		{"empty", func() []EntitySet { return nil }, []string{"entity_sets: at least one entity set is required"}},
		{"missing everything", func() []EntitySet { return []EntitySet{{}} }, []string{
			"entity_sets[0].name: is required", "entity_sets[0].path: is required",
			"entity_sets[0].properties: at least one property is required", "entity_sets[0].key: is required",
		}},
		{"bad names and types", func() []EntitySet {
			es := ok()
			es.Name = "My Tasks"
			es.Properties = append(es.Properties, Property{Name: "1st"}, Property{Name: "n"}, Property{Name: "x", Type: "Edm.Guid"})
			return []EntitySet{es}
		}, []string{
			`entity_sets[0].name: "My Tasks" is not an identifier`,
			`entity_sets[0].properties[2].name: "1st" is not an identifier`,
			`entity_sets[0].properties[3].name: "n" is declared twice`,
			`entity_sets[0].properties[4].type: "Edm.Guid" is not one of`,
		}},
		{"key", func() []EntitySet {
			a, b := ok(), ok()
			a.Key = "nope"
			b.Name, b.Key = "Other", "d"
			b.Properties = append(b.Properties, Property{Name: "d", Type: EdmDateTimeOffset})
			return []EntitySet{a, b}
		}, []string{
			`entity_sets[0].key: "nope" is not one of the properties`,
			`entity_sets[1].key: "d" has type Edm.DateTimeOffset; a key must be`,
		}},
		{"duplicate set", func() []EntitySet { return []EntitySet{ok(), ok()} }, []string{
			`entity_sets[1].name: "Tasks" is already used by entity_sets[0]`,
		}},
		{"paths", func() []EntitySet {
			a, b, c, d := ok(), ok(), ok(), ok()
			a.Path = "/api/tasks"
			b.Name, b.Path = "B", "https://evil.example.com/tasks"
			c.Name, c.Path = "C", "tasks/../admin"
			d.Name, d.Path, d.Items = "D", "tasks?all=1", "a..b"
			return []EntitySet{a, b, c, d}
		}, []string{
			`entity_sets[0].path: "/api/tasks" must be relative to the source URL`,
			`entity_sets[1].path: "https://evil.example.com/tasks" must be relative`,
			`entity_sets[2].path: "tasks/../admin" must not contain . or .. segments`,
			`entity_sets[3].path: "tasks?all=1" must not carry a query`,
			`entity_sets[3].items: "a..b" is not a dotted JSON path`,
		}},
		{"paging", func() []EntitySet {
			a, b, c := ok(), ok(), ok()
			a.Paging = Paging{Style: "page"}
			b.Name, b.Paging = "B", Paging{Style: "next"}
			c.Name, c.Paging = "C", Paging{Style: "cursor", FirstPage: -1}
			return []EntitySet{a, b, c}
		}, []string{
			`entity_sets[0].paging.param: is required for style "page"`,
			`entity_sets[0].paging.size: must be positive for style "page"`,
			`entity_sets[1].paging.next: "" is not a dotted JSON path`,
			`entity_sets[2].paging.style: "cursor" is not one of none, page, offset, next`,
			`entity_sets[2].paging.first_page: must not be negative`,
		}},
		{"parents", func() []EntitySet {
			a, b, c, d, e := ok(), ok(), ok(), ok(), ok()
			b.Name, b.Parent, b.Path = "B", "Nope", "x/{sn}"
			c.Name, c.Parent, c.Path = "C", "Tasks", "tasks/{missing}/items"
			c.Properties = append(c.Properties, Property{Name: "p", Source: "$parent.zzz"})
			d.Name, d.Path = "D", "tasks/{sn}"
			d.Properties = append(d.Properties, Property{Name: "p", Source: "$parent.sn"})
			e.Name, e.Parent, e.Path = "E", "C", "x/{sn}"
			return []EntitySet{a, b, c, d, e}
		}, []string{
			`entity_sets[1].parent: "Nope" is not an entity set of this source`,
			`entity_sets[2].path: placeholder {missing} is not a property of "Tasks"`,
			`entity_sets[2].properties[2].source: "zzz" is not a property of "Tasks"`,
			`entity_sets[3].properties[2].source: "$parent.sn" reads the parent row but the entity set has no parent`,
			`entity_sets[3].path: "tasks/{sn}" has placeholders but the entity set has no parent`,
			`entity_sets[4].parent: "C" has a parent itself`,
		}},
		{"self parent", func() []EntitySet {
			a := ok()
			a.Parent, a.Path = "Tasks", "t/{sn}"
			return []EntitySet{a}
		}, []string{"entity_sets[0].parent: an entity set cannot be its own parent"}},
	}
	for _, tt := range tests {
		err := Validate(tt.sets())
		if !errors.Is(err, ErrMapping) {
			t.Errorf("%s: got %v, want ErrMapping", tt.name, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q\nwant it to contain %q", tt.name, err, w)
			}
		}
		if got, want := len(problemRE.FindAllString(err.Error(), -1)), len(tt.want); got != want {
			t.Errorf("%s: %d problems reported, want %d: %v", tt.name, got, want, err)
		}
	}
}

// problemRE finds the start of each reported problem.
var problemRE = regexp.MustCompile(`(: |; )entity_sets`)

// TestYAMLMapping reads an inline mapping as a config file declares it
// under a source's entity_sets.
func TestYAMLMapping(t *testing.T) {
	raw, err := os.ReadFile("testdata/inline-mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		EntitySets []EntitySet `yaml:"entity_sets"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := Validate(cfg.EntitySets); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	preset, _ := Preset(PresetK2Workflow)
	inst := K2WorkflowInstancesPerWorkflow(preset)[2]
	got := cfg.EntitySets[1]
	if got.Name != "Instances" || got.Path != inst.Path || got.Parent != inst.Parent || got.Paging.Style != "page" || got.Paging.Size != 50 {
		t.Errorf("got %+v", got)
	}
	if p := got.Properties[2]; p.Name != "workflowId" || p.Source != "$parent.id" || p.Type != EdmInt32 {
		t.Errorf("property 2: got %+v", p)
	}
}

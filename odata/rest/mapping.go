package rest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrMapping is returned by Validate, Preset and New for an invalid entity-set mapping.
var ErrMapping = errors.New("invalid rest mapping")

// EntitySet maps one upstream JSON list to an OData v4 entity set. It carries
// yaml tags so config files can declare it inline under a source's
// `entity_sets`.
type EntitySet struct {
	// Name is the entity set's OData name, e.g. "Tasks"; it also names the entity type.
	Name string `yaml:"name"`
	// Path is the upstream path relative to the source URL, e.g. "tasks". It may
	// contain {prop} placeholders naming properties of the Parent set, e.g.
	// "workflows/{id}/instances"; then the list is fetched once per parent row.
	Path string `yaml:"path"`
	// Items is the dotted path of the item array in the upstream response, e.g.
	// "tasks" in {itemCount, tasks:[…]}; empty means the response is the array.
	Items string `yaml:"items"`
	// Key is the name of the key property (one of Properties); its values must
	// be unique and non-null.
	Key string `yaml:"key"`
	// Properties are the columns, in $metadata order.
	Properties []Property `yaml:"properties"`
	// Paging says how to read the upstream's next page; zero: the upstream does not page.
	Paging Paging `yaml:"paging"`
	// Parent names another entity set of the same source whose rows fill the
	// placeholders of Path; empty: Path has no placeholders. Properties may read
	// the parent row's properties through the Source prefix "$parent.".
	Parent string `yaml:"parent"`
}

// Property is one column of an entity set.
type Property struct {
	// Name is the OData property name, a simple identifier such as originator_name.
	Name string `yaml:"name"`
	// Source is the dotted JSON path of the value in an upstream item, e.g.
	// originator.name; empty means Name. An array of scalars read into an
	// Edm.String is joined with ", ". "$parent.x" reads property x of the parent row.
	Source string `yaml:"source"`
	// Type is the EDM type: Edm.String, Edm.Int32, Edm.Int64, Edm.Boolean,
	// Edm.DateTimeOffset, Edm.Decimal or Edm.Double; empty means Edm.String.
	Type string `yaml:"type"`
}

// Paging describes how an upstream list is read page by page.
type Paging struct {
	// Style is "" or "none" (one call), "page" (a page-number parameter),
	// "offset" (a row-offset parameter) or "next" (a next link inside the body).
	Style string `yaml:"style"`
	// Param is the query parameter carrying the page number ("page") or the row offset ("offset").
	Param string `yaml:"param"`
	// SizeParam is the query parameter carrying the page size; empty: none is sent.
	SizeParam string `yaml:"size_param"`
	// Size is the page size the upstream uses; a shorter page ends the list. Required for "page" and "offset".
	Size int `yaml:"size"`
	// FirstPage is the number of the first page for "page"; zero means 1.
	FirstPage int `yaml:"first_page"`
	// Next is the dotted JSON path of the next-page URL for "next", e.g.
	// "links.next"; it may be absolute (same host as the source) or relative.
	Next string `yaml:"next"`
}

// Supported EDM types of a Property.
const (
	EdmString         = "Edm.String"
	EdmInt32          = "Edm.Int32"
	EdmInt64          = "Edm.Int64"
	EdmBoolean        = "Edm.Boolean"
	EdmDateTimeOffset = "Edm.DateTimeOffset"
	EdmDecimal        = "Edm.Decimal"
	EdmDouble         = "Edm.Double"
)

var edmTypes = map[string]bool{
	EdmString: true, EdmInt32: true, EdmInt64: true, EdmBoolean: true,
	EdmDateTimeOffset: true, EdmDecimal: true, EdmDouble: true,
}

// CSDL §15.1 SimpleIdentifier, restricted to ASCII so names survive in URLs
// and Power Query column names unchanged.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

var placeholderRE = regexp.MustCompile(`\{([^{}]*)\}`)

// Validate checks a mapping and reports every problem in one error, each
// naming its path, e.g. "entity_sets[0].key: ...".
func Validate(sets []EntitySet) error {
	var probs []string
	add := func(path, format string, args ...any) {
		probs = append(probs, path+": "+fmt.Sprintf(format, args...))
	}
	if len(sets) == 0 {
		add("entity_sets", "at least one entity set is required")
	}
	names := map[string]int{}
	for i, es := range sets {
		p := fmt.Sprintf("entity_sets[%d]", i)
		switch {
		case es.Name == "":
			add(p+".name", "is required")
		case !identRE.MatchString(es.Name):
			add(p+".name", "%q is not an identifier (letters, digits, _; not starting with a digit)", es.Name)
		default:
			if j, dup := names[es.Name]; dup {
				add(p+".name", "%q is already used by entity_sets[%d]", es.Name, j)
			}
			names[es.Name] = i
		}
		validatePath(p+".path", es.Path, add)
		if es.Items != "" && !validDotted(es.Items) {
			add(p+".items", "%q is not a dotted JSON path", es.Items)
		}
		props := map[string]string{}
		for j, pr := range es.Properties {
			pp := fmt.Sprintf("%s.properties[%d]", p, j)
			switch {
			case pr.Name == "":
				add(pp+".name", "is required")
			case !identRE.MatchString(pr.Name):
				add(pp+".name", "%q is not an identifier (letters, digits, _; not starting with a digit)", pr.Name)
			default:
				if _, dup := props[pr.Name]; dup {
					add(pp+".name", "%q is declared twice", pr.Name)
				}
				props[pr.Name] = pr.typ()
			}
			if !edmTypes[pr.typ()] {
				add(pp+".type", "%q is not one of Edm.String, Edm.Int32, Edm.Int64, Edm.Boolean, Edm.DateTimeOffset, Edm.Decimal, Edm.Double", pr.Type)
			}
			src := pr.Source
			if rest, ok := strings.CutPrefix(src, "$parent."); ok {
				if es.Parent == "" {
					add(pp+".source", "%q reads the parent row but the entity set has no parent", src)
				}
				src = rest
			}
			if src != "" && !validDotted(src) {
				add(pp+".source", "%q is not a dotted JSON path", pr.Source)
			}
		}
		if len(es.Properties) == 0 {
			add(p+".properties", "at least one property is required")
		}
		switch t, ok := props[es.Key]; {
		case es.Key == "":
			add(p+".key", "is required")
		case !ok:
			add(p+".key", "%q is not one of the properties", es.Key)
		case t != EdmString && t != EdmInt32 && t != EdmInt64:
			add(p+".key", "%q has type %s; a key must be Edm.String, Edm.Int32 or Edm.Int64", es.Key, t)
		}
		validatePaging(p+".paging", es.Paging, add)
	}
	// Parents are checked once every name is known.
	for i, es := range sets {
		p := fmt.Sprintf("entity_sets[%d]", i)
		holes := placeholderRE.FindAllStringSubmatch(es.Path, -1)
		if es.Parent == "" {
			if len(holes) > 0 {
				add(p+".path", "%q has placeholders but the entity set has no parent", es.Path)
			}
			continue
		}
		j, ok := names[es.Parent]
		switch {
		case !ok:
			add(p+".parent", "%q is not an entity set of this source", es.Parent)
			continue
		case es.Parent == es.Name:
			add(p+".parent", "an entity set cannot be its own parent")
			continue
		case sets[j].Parent != "":
			add(p+".parent", "%q has a parent itself; one level of nesting is supported", es.Parent)
		}
		if len(holes) == 0 {
			add(p+".path", "%q has no {property} placeholder for the parent %q", es.Path, es.Parent)
		}
		for _, h := range holes {
			if !sets[j].hasProperty(h[1]) {
				add(p+".path", "placeholder {%s} is not a property of %q", h[1], es.Parent)
			}
		}
		for k, pr := range es.Properties {
			if rest, ok := strings.CutPrefix(pr.Source, "$parent."); ok && !sets[j].hasProperty(rest) {
				add(fmt.Sprintf("%s.properties[%d].source", p, k), "%q is not a property of %q", rest, es.Parent)
			}
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: %s", ErrMapping, strings.Join(probs, "; "))
	}
	return nil
}

func validatePath(p, path string, add func(string, string, ...any)) {
	switch {
	case path == "":
		add(p, "is required")
	case strings.HasPrefix(path, "/") || strings.Contains(path, "://") || strings.HasPrefix(path, "//"):
		add(p, "%q must be relative to the source URL", path)
	case strings.Contains(path, "?") || strings.Contains(path, "#"):
		add(p, "%q must not carry a query or fragment; use paging for parameters", path)
	default:
		for _, seg := range strings.Split(placeholderRE.ReplaceAllString(path, "x"), "/") {
			if seg == ".." || seg == "." {
				add(p, "%q must not contain . or .. segments", path)
				return
			}
		}
	}
}

func validatePaging(p string, pg Paging, add func(string, string, ...any)) {
	switch pg.Style {
	case "", "none":
	case "page", "offset":
		if pg.Param == "" {
			add(p+".param", "is required for style %q", pg.Style)
		}
		if pg.Size <= 0 {
			add(p+".size", "must be positive for style %q", pg.Style)
		}
	case "next":
		if !validDotted(pg.Next) {
			add(p+".next", "%q is not a dotted JSON path", pg.Next)
		}
	default:
		add(p+".style", "%q is not one of none, page, offset, next", pg.Style)
	}
	if pg.FirstPage < 0 {
		add(p+".first_page", "must not be negative")
	}
}

func validDotted(s string) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
	}
	return true
}

func (p Property) typ() string {
	if p.Type == "" {
		return EdmString
	}
	return p.Type
}

func (p Property) source() string {
	if p.Source == "" {
		return p.Name
	}
	return p.Source
}

func (es *EntitySet) hasProperty(name string) bool {
	for _, p := range es.Properties {
		if p.Name == name {
			return true
		}
	}
	return false
}

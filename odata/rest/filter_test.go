package rest

import (
	"bufio"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/odata"
)

// evalSet is a small entity set with one property of every type.
func evalSet() *entitySet {
	return compile(EntitySet{
		Name: "Items", Path: "items", Key: "name",
		Properties: []Property{
			{Name: "name"},
			{Name: "n", Type: EdmInt32},
			{Name: "big", Type: EdmInt64},
			{Name: "price", Type: EdmDouble},
			{Name: "ok", Type: EdmBoolean},
			{Name: "at", Type: EdmDateTimeOffset},
			{Name: "note"},
			{Name: "Status"},
		},
	})
}

func evalRows() []row {
	at := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	return []row{
		{"a", int64(1), int64(10), 1.5, true, at("2019-03-20T15:46:41Z"), "x", "Open"},
		{"b", int64(2), int64(20), 2.5, false, at("2020-01-31T00:00:00Z"), nil, "Completed"},
		{"c", int64(3), nil, nil, nil, nil, "it's", "Open"},
		{"Ünï", int64(-4), int64(1 << 40), 0.0, true, at("2019-12-01T23:59:59.5+02:00"), "", "Failed"},
	}
}

func TestFilterEval(t *testing.T) {
	tests := []struct {
		filter string
		want   []string
	}{
		{"name eq 'a'", []string{"a"}},
		{"name ne 'a'", []string{"b", "c", "Ünï"}},
		{"n gt 1", []string{"b", "c"}},
		{"n ge 2", []string{"b", "c"}},
		{"n lt 0", []string{"Ünï"}},
		{"n le 1", []string{"a", "Ünï"}},
		{"n eq -4", []string{"Ünï"}},
		{"big gt 15", []string{"b", "Ünï"}},
		{"big eq 1099511627776", []string{"Ünï"}},
		{"price gt 2", []string{"b"}},
		{"price eq 1.5", []string{"a"}},
		{"n lt 2.5", []string{"a", "b", "Ünï"}},
		{"price lt 1e1", []string{"a", "b", "Ünï"}},
		{"ok eq true", []string{"a", "Ünï"}},
		{"ok", []string{"a", "Ünï"}},
		{"not ok", []string{"b"}},
		{"ok eq false", []string{"b"}},
		{"ok ne true", []string{"b", "c"}},
		// null handling: eq null, ne null, ordering with null is false.
		{"big eq null", []string{"c"}},
		{"big ne null", []string{"a", "b", "Ünï"}},
		{"null eq big", []string{"c"}},
		{"note eq null", []string{"b"}},
		{"big gt null", nil},
		{"price lt 100", []string{"a", "b", "Ünï"}},
		{"not (price lt 100)", []string{"c"}}, // c: null lt 100 is false, so not gives true
		// logic and grouping
		{"n eq 1 or n eq 3", []string{"a", "c"}},
		{"n gt 1 and Status eq 'Open'", []string{"c"}},
		{"(n eq 1 or n eq 2) and ok eq false", []string{"b"}},
		{"n eq 1 or n eq 2 and ok eq false", []string{"a", "b"}},
		{"not n eq 1", []string{"b", "c", "Ünï"}},
		{"not (n eq 1 or n eq 2)", []string{"c", "Ünï"}},
		{"((((n eq 1))))", []string{"a"}},
		{"ok and big gt 15", []string{"Ünï"}},
		{"ok or n eq 3", []string{"a", "c", "Ünï"}},
		// three-valued logic: ok is null for c
		{"ok or true", []string{"a", "b", "c", "Ünï"}},
		{"ok and false", nil},
		{"not (ok and true)", []string{"b"}},
		// strings
		{"contains(Status,'pe')", []string{"a", "c"}},
		{"startswith(name,'Ü')", []string{"Ünï"}},
		{"endswith(Status, 'ed')", []string{"b", "Ünï"}},
		{"contains(note,'x')", []string{"a"}},
		{"not contains(note,'x')", []string{"c", "Ünï"}},
		{"note eq 'it''s'", []string{"c"}},
		{"note eq ''", []string{"Ünï"}},
		{"tolower(Status) eq 'open'", []string{"a", "c"}},
		{"toupper(name) eq 'B'", []string{"b"}},
		{"length(name) eq 3", []string{"Ünï"}},
		{"indexof(Status,'e') eq 2", []string{"a", "c"}},
		{"substring(Status,1) eq 'pen'", []string{"a", "c"}},
		{"substring(Status,0,2) eq 'Co'", []string{"b"}},
		{"trim(' a ') eq name", []string{"a"}},
		{"concat(name,'!') eq 'b!'", []string{"b"}},
		{"name gt 'a'", []string{"b", "c", "Ünï"}},
		{"contains(Status, 'Open') eq true", []string{"a", "c"}},
		// dates
		{"year(at) eq 2019", []string{"a", "Ünï"}},
		{"month(at) eq 1", []string{"b"}},
		{"day(at) eq 20", []string{"a"}},
		{"year(at) eq 2019 and month(at) eq 12", []string{"Ünï"}},
		{"hour(at) eq 23", []string{"Ünï"}},
		{"at gt 2019-06-01T00:00:00Z", []string{"b", "Ünï"}},
		{"at lt 2019-12-01T22:00:00Z", []string{"a", "Ünï"}},
		{"at ge 2020-01-31", []string{"b"}},
		{"at eq 2019-03-20T15:46:41Z", []string{"a"}},
		{"at eq 2019-03-20T15:46Z", nil},
		{"at eq null", []string{"c"}},
		{"year(at) eq null", []string{"c"}},
		// in, and the numeric and date functions Power Query folds to
		{"name in ('a','c')", []string{"a", "c"}},
		{"n in (2, 3.0, 9)", []string{"b", "c"}},
		{"note in ('x', null)", []string{"a", "b"}},
		{"not (Status in ('Open'))", []string{"b", "Ünï"}},
		{"round(price) eq 3", []string{"b"}},
		{"round(price) eq 2", []string{"a"}},
		{"floor(price) eq 1", []string{"a"}},
		{"ceiling(price) eq 3", []string{"b"}},
		{"round(n) eq 2", []string{"b"}},
		{"date(at) eq 2019-03-20", []string{"a"}},
		{"date(at) eq 2019-12-01", []string{"Ünï"}},
		{"date(at) lt 2020-01-01", []string{"a", "Ünï"}},
		// case-insensitive property fallback
		{"status eq 'Failed'", []string{"Ünï"}},
		{"Status eq 'Failed' and  NAME eq 'Ünï'", []string{"Ünï"}},
	}
	es := evalSet()
	rows := evalRows()
	for _, tt := range tests {
		e, err := parseFilter(tt.filter, es)
		if err != nil {
			t.Errorf("parseFilter(%q): %v", tt.filter, err)
			continue
		}
		var got []string
		for _, r := range rows {
			if e.eval(r) == true {
				got = append(got, r[0].(string))
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("$filter=%s: got %q, want %q", tt.filter, got, tt.want)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	tests := []struct {
		filter string
		want   error
		msg    string
	}{
		// type mismatches are 400 with a clear message
		{"name eq 1", odata.ErrBadRequest, "cannot compare property name (Edm.String) with a literal of type Edm.Int64 using eq"},
		{"n eq 'one'", odata.ErrBadRequest, "cannot compare property n (Edm.Int32) with a literal of type Edm.String"},
		{"at gt '2019-01-01'", odata.ErrBadRequest, "cannot compare property at (Edm.DateTimeOffset)"},
		{"ok eq 1", odata.ErrBadRequest, "cannot compare"},
		{"contains(n,'1')", odata.ErrBadRequest, "argument 1 of contains must be Edm.String, got property n"},
		{"year(name) eq 2019", odata.ErrBadRequest, "argument 1 of year must be Edm.DateTimeOffset"},
		{"contains(name)", odata.ErrBadRequest, "contains takes 2 argument(s), got 1"},
		{"substring(name)", odata.ErrBadRequest, "substring takes 2 or 3 arguments"},
		{"name", odata.ErrBadRequest, "not a boolean condition"},
		{"n eq 1 and name", odata.ErrBadRequest, "operands of and must be boolean"},
		{"not name", odata.ErrBadRequest, "operands of not must be boolean"},
		{"missing eq 1", odata.ErrBadRequest, `Items has no property "missing"`},
		{"name eq 'a", odata.ErrBadRequest, "unterminated string literal"},
		{"name eq", odata.ErrBadRequest, "unexpected end of expression"},
		{"(name eq 'a'", odata.ErrBadRequest, "unexpected end"},
		{"name eq 'a')", odata.ErrBadRequest, `unexpected ")"`},
		{"name eq 'a' 'b'", odata.ErrBadRequest, "unexpected"},
		{"", odata.ErrBadRequest, "unexpected end"},
		{"n eq 99999999999999999999", odata.ErrBadRequest, "out of range"},
		{"at eq 2019-13-45", odata.ErrBadRequest, "invalid date"},
		{"at eq 2019-03-20T15:46:41", odata.ErrBadRequest, "offset such as Z"},
		{"n eq 1x", odata.ErrBadRequest, "invalid literal 1x"},
		{"name eq #", odata.ErrBadRequest, "unexpected character"},
		{"frobnicate(name)", odata.ErrBadRequest, "unknown function frobnicate"},
		{strings.Repeat("(", 200) + "ok" + strings.Repeat(")", 200), odata.ErrBadRequest, "nested more than"},
		// unsupported constructs are 501 naming the construct
		{"n add 1 eq 2", odata.ErrNotImplemented, "the arithmetic operator add is not supported"},
		{"n mod 2 eq 0", odata.ErrNotImplemented, "arithmetic operator mod"},
		{"Tags/any(t:t eq 'x')", odata.ErrNotImplemented, "the lambda operator any is not supported"},
		{"Tags/all(t:t eq 'x')", odata.ErrNotImplemented, "the lambda operator all"},
		{"originator/name eq 'x'", odata.ErrNotImplemented, "the property path originator/name"},
		{"Lines/$count gt 1", odata.ErrNotImplemented, "Lines/$count"},
		{"name in ('a',1)", odata.ErrBadRequest, "cannot compare property name (Edm.String) with a literal of type Edm.Int64 using in"},
		{"name in 'a'", odata.ErrBadRequest, "in needs a parenthesized list"},
		{"name in ('a' 'b')", odata.ErrBadRequest, "unexpected"},
		{"name in @list", odata.ErrNotImplemented, "the parameter alias @list"},
		{"round(name) eq 1", odata.ErrBadRequest, "argument 1 of round must be Edm.Double"},
		{"Status has Ns.Color'Red'", odata.ErrNotImplemented, "the has operator"},
		{"totalseconds(at) eq 2", odata.ErrNotImplemented, "the function totalseconds"},
		{"now() gt at", odata.ErrNotImplemented, "the function now"},
		{"geo.distance(a,b) lt 1", odata.ErrNotImplemented, "the function geo.distance"},
		{"at gt duration'P1D'", odata.ErrNotImplemented, "the typed literal duration'…'"},
		{"name eq @p", odata.ErrNotImplemented, "the parameter alias @p"},
		{"$it/name eq 'a'", odata.ErrNotImplemented, "$it"},
		{"isof(name,Edm.String)", odata.ErrNotImplemented, "the function isof"},
		{"Ns.Type/name eq 'a'", odata.ErrNotImplemented, "the qualified name Ns.Type"},
	}
	es := evalSet()
	for _, tt := range tests {
		_, err := parseFilter(tt.filter, es)
		if !errors.Is(err, tt.want) {
			t.Errorf("parseFilter(%q): got error %v, want %v", tt.filter, err, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("parseFilter(%q): got message %q, want it to contain %q", tt.filter, err, tt.msg)
		}
	}
}

func TestFilterGUIDLiteral(t *testing.T) {
	es := evalSet()
	e, err := parseFilter("name eq 01234567-89ab-cdef-0123-456789abcdef", es)
	if err != nil {
		t.Fatalf("parseFilter: %v", err)
	}
	r := row{"01234567-89ab-cdef-0123-456789abcdef", nil, nil, nil, nil, nil, nil, nil}
	if got := e.eval(r); got != true {
		t.Errorf("eval: got %v, want true", got)
	}
}

// filterSeeds reads testdata/filters.txt, one $filter per line.
func filterSeeds(t testing.TB) []string {
	f, err := os.Open("testdata/filters.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seeds []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			seeds = append(seeds, line)
		}
	}
	return seeds
}

// FuzzFilter checks that the parser never panics, that every error wraps
// one of the two sentinels clients see, and that evaluation of whatever
// parses never panics either.
func FuzzFilter(f *testing.F) {
	for _, s := range filterSeeds(f) {
		f.Add(s)
	}
	es := evalSet()
	rows := evalRows()
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseFilter(s, es)
		if err != nil {
			if !errors.Is(err, odata.ErrBadRequest) && !errors.Is(err, odata.ErrNotImplemented) {
				t.Fatalf("parseFilter(%q): error %v wraps neither ErrBadRequest nor ErrNotImplemented", s, err)
			}
			return
		}
		for _, r := range rows {
			switch v := e.eval(r); v.(type) {
			case nil, bool:
			default:
				t.Fatalf("eval(%q) = %T, want a boolean or null", s, v)
			}
		}
	})
}

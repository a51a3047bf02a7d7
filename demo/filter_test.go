package demo

import (
	"bufio"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// sample is a small set with every property type and a nullable column.
var sample = &entitySet{name: "Items", typeName: "Item", props: []property{
	{"ID", edmInt32, false}, {"Name", edmString, false}, {"Price", edmDecimal, false},
	{"Active", edmBoolean, false}, {"Due", edmDateTime, true},
}, rows: [][]any{
	{int64(1), "Apple", 1.5, true, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
	{int64(2), "O'Neill", 20.0, false, nil},
	{int64(3), "Zürich", 300.25, true, time.Date(2026, 6, 30, 12, 0, 0, 0, time.UTC)},
}}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   []int64 // IDs of matching rows
	}{
		{"ID eq 2", []int64{2}},
		{"ID ne 2", []int64{1, 3}},
		{"ID gt 1", []int64{2, 3}},
		{"ID ge 2", []int64{2, 3}},
		{"ID lt 3", []int64{1, 2}},
		{"ID le 1", []int64{1}},
		{"Name eq 'O''Neill'", []int64{2}},
		{"Name eq 'Zürich'", []int64{3}},
		{"Name gt 'B'", []int64{2, 3}},
		{"Price gt 20", []int64{3}},
		{"Price eq 20.0", []int64{2}},
		{"Price lt 2M", []int64{1}},
		{"Price gt 1.5d and Price lt 300.25", []int64{2}},
		{"Active", []int64{1, 3}},
		{"Active eq false", []int64{2}},
		{"not Active", []int64{2}},
		{"Due eq null", []int64{2}},
		{"Due ne null", []int64{1, 3}},
		{"null eq Due", []int64{2}},
		{"Due gt 2026-03-01T00:00:00Z", []int64{3}},
		{"Due lt 2026-03-01T00:00:00+01:00", []int64{1}},
		{"Due lt datetime'2026-03-01T00:00:00'", []int64{1}},
		{"Due ge datetimeoffset'2026-06-30T12:00:00Z'", []int64{3}},
		{"Due gt 2026-01-01", []int64{3}},
		{"ID eq 1 or ID eq 3", []int64{1, 3}},
		{"ID eq 1 or ID eq 2 and Active", []int64{1}}, // and binds tighter than or
		{"(ID eq 1 or ID eq 2) and Active", []int64{1}},
		{"((ID eq 1) or (ID eq 2)) and not (Active)", []int64{2}},
		{"ID gt -5 and ID lt 2", []int64{1}},
		{"true", []int64{1, 2, 3}},
		{"contains(Name,'pp')", []int64{1}},
		{"startswith(Name,'O''')", []int64{2}},
		{"endswith(Name, 'ich')", []int64{3}},
		{"substringof('pp',Name)", []int64{1}},
		{"tolower(Name) eq 'apple'", []int64{1}},
		{"contains(toupper(trim(Name)),'APP')", []int64{1}},
		{"length(Name) eq 6", []int64{3}},
		{"year(Due) eq 2026 and month(Due) gt 3", []int64{3}},
		{"day(Due) eq 1 and hour(Due) eq 0 and minute(Due) eq 0 and second(Due) eq 0", []int64{1}},
		{"not contains(Name,'pp')", []int64{2, 3}},
		{"1 eq 2", nil},
	}
	for _, tc := range tests {
		e, err := parseFilter(tc.filter, sample)
		if err != nil {
			t.Errorf("parseFilter(%q) = %v", tc.filter, err)
			continue
		}
		var got []int64
		for _, r := range sample.rows {
			if truthy(e.eval(r)) {
				got = append(got, r[0].(int64))
			}
		}
		if !equalIDs(got, tc.want) {
			t.Errorf("$filter=%s matched %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseFilterErrors(t *testing.T) {
	for _, f := range []string{
		"",
		"   ",
		"Colour eq 'red'",
		"ID eq",
		"eq 1",
		"ID eq 1 and",
		"(ID eq 1",
		"ID eq 1)",
		"Name eq 'open",
		"ID eq 'one'",
		"Name gt 5",
		"Due gt 'yesterday'",
		"Active eq 1",
		"Due gt 2026-13-01T00:00:00Z",
		"ID eq 1x",
		"ID eq 12MM",
		"ID",
		"Name",
		"ID eq 1 ID eq 2",
		"guid'abc' eq ID",
		"ID eq 1 # comment",
		"ID eq 1 and 5",
		"contains(Name)",
		"contains(ID,'x')",
		"year(Name) eq 1",
		"contains(Name,'x'",
		"contains(Name,'x',)",
		"length(Name)",
		strings.Repeat("(", 40) + "ID eq 1" + strings.Repeat(")", 40),
		strings.Repeat("tolower(", 40) + "Name" + strings.Repeat(")", 40) + " eq 'a'",
		strings.Repeat("not ", 40) + "Active",
	} {
		if _, err := parseFilter(f, sample); !errors.Is(err, errBadQuery) {
			t.Errorf("parseFilter(%q) = %v, want errBadQuery", f, err)
		}
	}
	if _, err := parseFilter("geo.distance(Name,'x') lt 1", sample); !errors.Is(err, errBadQuery) {
		t.Errorf("a dotted function name = %v, want errBadQuery", err)
	}
	if _, err := parseFilter("indexof(Name,'x') eq 1", sample); !errors.Is(err, errNotImplemented) {
		t.Errorf("an unsupported function = %v, want errNotImplemented", err)
	}
}

// filterSeeds reads the sample filters in testdata/filters.txt.
func filterSeeds(tb testing.TB) []string {
	tb.Helper()
	f, err := os.Open("testdata/filters.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// TestFilterSeedsParse keeps the fuzz seeds meaningful: each one is valid
// against Orders or Customers.
func TestFilterSeedsParse(t *testing.T) {
	d := generated()
	for _, s := range filterSeeds(t) {
		_, errO := parseFilter(s, d.set("Orders"))
		_, errC := parseFilter(s, d.set("Customers"))
		if errO != nil && errC != nil {
			t.Errorf("seed %q parses against neither set: %v; %v", s, errO, errC)
		}
	}
}

// FuzzParseFilter checks that any $filter either parses into a predicate
// that evaluates to a bool on every row, or fails with errBadQuery or
// errNotImplemented.
func FuzzParseFilter(f *testing.F) {
	for _, s := range filterSeeds(f) {
		f.Add(s)
	}
	f.Add("Name eq 'Zürich' or (Due lt datetime'2026-01-01T00:00:00' and not Active)")
	d := generated()
	sets := []*entitySet{sample, d.set("Orders"), d.set("Customers")}
	f.Fuzz(func(t *testing.T, s string) {
		for _, set := range sets {
			e, err := parseFilter(s, set)
			if err != nil {
				if !errors.Is(err, errBadQuery) && !errors.Is(err, errNotImplemented) {
					t.Fatalf("parseFilter(%q) = %v, want errBadQuery or errNotImplemented", s, err)
				}
				continue
			}
			for _, r := range set.rows[:min(len(set.rows), 50)] {
				if _, ok := e.eval(r).(bool); !ok {
					t.Fatalf("$filter=%q is not a predicate on %s", s, set.name)
				}
			}
		}
	})
}

// FuzzParseQuery checks the whole system-query-option parser: any query
// string either fails with errBadQuery or errNotImplemented, or yields a
// window within the set.
func FuzzParseQuery(f *testing.F) {
	for _, s := range filterSeeds(f) {
		f.Add("$filter=" + url.QueryEscape(s) + "&$top=10")
	}
	for _, s := range []string{
		"", "$top=5&$skip=3", "$orderby=Amount%20desc,OrderID&$select=OrderID,Amount",
		"$count=true&$skiptoken=1000", "$inlinecount=allpages", "$select=*", "$expand=X", "$format=json",
		"$top=1&$top=2", "%zz", "$orderby=Amount%20sideways", "$select=,", "custom=1&$skip=99999999",
	} {
		f.Add(s)
	}
	orders := generated().set("Orders")
	f.Fuzz(func(t *testing.T, raw string) {
		for _, proto := range []protocol{v3, v4} {
			qq, err := parseQuery(raw, orders, proto)
			if err != nil {
				if !errors.Is(err, errBadQuery) && !errors.Is(err, errNotImplemented) {
					t.Fatalf("parseQuery(%q) = %v, want errBadQuery or errNotImplemented", raw, err)
				}
				continue
			}
			rows, matched := qq.window(orders)
			if len(rows) > matched || matched > len(orders.rows) {
				t.Fatalf("parseQuery(%q): window of %d rows from %d matches of %d", raw, len(rows), matched, len(orders.rows))
			}
		}
	})
}

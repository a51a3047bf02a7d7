package demo

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/odata"
)

// service names one OData root of the shared world and its annotation names.
type service struct {
	name, root             string
	context, count, next   string
	versionHeader, version string
}

func services() []service {
	return []service{
		{"v4", world.ODataV4URL, "@odata.context", "@odata.count", "@odata.nextLink", "OData-Version", odata.Version4},
		{"v3", world.ODataV3URL, "odata.metadata", "odata.count", "odata.nextLink", "DataServiceVersion", odata.Version3},
	}
}

// rowsOf returns the value array of a collection response.
func rowsOf(t *testing.T, m map[string]any) []map[string]any {
	t.Helper()
	raw, ok := m["value"].([]any)
	if !ok {
		t.Fatalf("response has no value array: %v", m)
	}
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i] = r.(map[string]any)
	}
	return out
}

func intOf(t *testing.T, v any) int {
	t.Helper()
	n, err := strconv.Atoi(fmt.Sprint(v))
	if err != nil {
		t.Fatalf("%v is not an integer", v)
	}
	return n
}

// TestPagingFollowsAbsoluteNextLinks reads whole sets page by page: every
// page but the last has 1,000 rows and an absolute next link on the
// upstream's own host, and all pages together hold every row exactly once.
func TestPagingFollowsAbsoluteNextLinks(t *testing.T) {
	for _, svc := range services() {
		for _, tc := range []struct {
			set, query string
			want       []int // keys in order; nil: every key of the set in key order
		}{
			{set: "Orders"},
			{set: "WorkflowInstances"},
			{set: "Orders", query: q("$filter", "Status eq 'Open'", "$orderby", "Amount desc", "$top", "2500", "$skip", "10")},
		} {
			t.Run(svc.name+"/"+tc.set+"?"+tc.query, func(t *testing.T) {
				set := generated().set(tc.set)
				want := tc.want
				if tc.query != "" {
					qq, err := parseQuery(tc.query, set, v4)
					if err != nil {
						t.Fatal(err)
					}
					rows, _ := qq.window(set)
					for _, i := range rows {
						want = append(want, int(set.rows[i][0].(int64)))
					}
				} else {
					for _, r := range set.rows {
						want = append(want, int(r[0].(int64)))
					}
				}
				next := svc.root + tc.set
				if tc.query != "" {
					next += "?" + tc.query
				}
				var got []int
				pages := 0
				for next != "" {
					pages++
					if pages > 20 {
						t.Fatalf("more than 20 pages; next link loops: %s", next)
					}
					r, m := getAs(t, "alice", next)
					if r.status != 200 {
						t.Fatalf("GET %s = %d %s", next, r.status, r.body)
					}
					rows := rowsOf(t, m)
					for _, row := range rows {
						got = append(got, intOf(t, row[set.props[0].name]))
					}
					link, _ := m[svc.next].(string)
					if link == "" {
						next = ""
						continue
					}
					if len(rows) != pageCap {
						t.Errorf("page %d has %d rows and a next link, want %d", pages, len(rows), pageCap)
					}
					u, err := url.Parse(link)
					if err != nil || !u.IsAbs() || !strings.HasPrefix(link, svc.root+tc.set+"?") {
						t.Fatalf("next link %q is not absolute on the upstream's host %s", link, svc.root)
					}
					next = link
				}
				if wantPages := (len(want) + pageCap - 1) / pageCap; pages != wantPages {
					t.Errorf("read %d pages, want %d", pages, wantPages)
				}
				if !slices.Equal(got, want) {
					t.Errorf("rows over all pages: got %d keys, want %d in order (first got %v, want %v)",
						len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
				}
				seen := map[int]bool{}
				for _, k := range got {
					if seen[k] {
						t.Fatalf("key %d came twice", k)
					}
					seen[k] = true
				}
			})
		}
	}
}

func TestLargestSetIsLarge(t *testing.T) {
	largest := 0
	for _, s := range generated().sets {
		largest = max(largest, len(s.rows))
	}
	if largest < 5000 {
		t.Errorf("largest set has %d rows, want at least 5000", largest)
	}
	if len(generated().sets) < 3 {
		t.Errorf("%d entity sets, want at least 3", len(generated().sets))
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, b := generate(), generate()
	for i := range a.sets {
		if !slices.EqualFunc(a.sets[i].rows, b.sets[i].rows, func(x, y []any) bool { return fmt.Sprint(x) == fmt.Sprint(y) }) {
			t.Errorf("set %s differs between two generations", a.sets[i].name)
		}
	}
	if len(a.tasks) != len(b.tasks) || a.tasks[0].serialNumber != b.tasks[0].serialNumber {
		t.Errorf("tasks differ between two generations")
	}
}

// edmx is the part of a CSDL document the test checks, in either version.
type edmx struct {
	XMLName      xml.Name
	Version      string `xml:"Version,attr"`
	DataServices struct {
		DataServiceVersion string `xml:"DataServiceVersion,attr"`
		Schemas            []struct {
			XMLName     xml.Name
			Namespace   string `xml:"Namespace,attr"`
			EntityTypes []struct {
				Name string `xml:"Name,attr"`
				Key  struct {
					PropertyRefs []struct {
						Name string `xml:"Name,attr"`
					} `xml:"PropertyRef"`
				} `xml:"Key"`
				Properties []struct {
					Name string `xml:"Name,attr"`
					Type string `xml:"Type,attr"`
				} `xml:"Property"`
			} `xml:"EntityType"`
			Containers []struct {
				Name string `xml:"Name,attr"`
				Sets []struct {
					Name       string `xml:"Name,attr"`
					EntityType string `xml:"EntityType,attr"`
				} `xml:"EntitySet"`
			} `xml:"EntityContainer"`
		} `xml:"Schema"`
	} `xml:"DataServices"`
}

func TestMetadataIsWellFormedCSDL(t *testing.T) {
	for _, tc := range []struct {
		svc                         string
		root                        string
		edmxNS, edmNS, version, dsv string
		dateType                    string
	}{
		{"v4", world.ODataV4URL, "http://docs.oasis-open.org/odata/ns/edmx", "http://docs.oasis-open.org/odata/ns/edm", "4.0", "", "Edm.DateTimeOffset"},
		{"v3", world.ODataV3URL, "http://schemas.microsoft.com/ado/2007/06/edmx", "http://schemas.microsoft.com/ado/2009/11/edm", "1.0", "3.0", "Edm.DateTime"},
	} {
		t.Run(tc.svc, func(t *testing.T) {
			r, _ := getAs(t, "alice", tc.root+"$metadata")
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/xml") {
				t.Fatalf("GET $metadata = %d %s, want 200 application/xml", r.status, r.header.Get("Content-Type"))
			}
			// Well-formed: the whole document tokenizes.
			dec := xml.NewDecoder(strings.NewReader(string(r.body)))
			for {
				_, err := dec.Token()
				if err != nil {
					if err.Error() != "EOF" {
						t.Fatalf("$metadata is not well-formed XML: %v", err)
					}
					break
				}
			}
			var doc edmx
			if err := xml.Unmarshal(r.body, &doc); err != nil {
				t.Fatalf("unmarshal $metadata: %v", err)
			}
			if doc.XMLName.Space != tc.edmxNS || doc.XMLName.Local != "Edmx" || doc.Version != tc.version {
				t.Errorf("root = {%s}%s Version=%s, want {%s}Edmx Version=%s", doc.XMLName.Space, doc.XMLName.Local, doc.Version, tc.edmxNS, tc.version)
			}
			if doc.DataServices.DataServiceVersion != tc.dsv {
				t.Errorf("DataServiceVersion = %q, want %q", doc.DataServices.DataServiceVersion, tc.dsv)
			}
			if len(doc.DataServices.Schemas) != 1 {
				t.Fatalf("%d schemas, want 1", len(doc.DataServices.Schemas))
			}
			s := doc.DataServices.Schemas[0]
			if s.XMLName.Space != tc.edmNS {
				t.Errorf("Schema namespace = %s, want %s", s.XMLName.Space, tc.edmNS)
			}
			types := map[string][]string{}
			for _, et := range s.EntityTypes {
				var props []string
				for _, p := range et.Properties {
					props = append(props, p.Name)
					if strings.HasSuffix(p.Name, "Date") && p.Type != tc.dateType {
						t.Errorf("%s.%s has type %s, want %s", et.Name, p.Name, p.Type, tc.dateType)
					}
				}
				if len(et.Key.PropertyRefs) != 1 || !slices.Contains(props, et.Key.PropertyRefs[0].Name) {
					t.Errorf("entity type %s: key does not name one of its properties", et.Name)
				}
				types[s.Namespace+"."+et.Name] = props
			}
			if len(s.Containers) != 1 {
				t.Fatalf("%d entity containers, want 1", len(s.Containers))
			}
			var sets []string
			for _, es := range s.Containers[0].Sets {
				sets = append(sets, es.Name)
				if _, ok := types[es.EntityType]; !ok {
					t.Errorf("entity set %s has undeclared type %s", es.Name, es.EntityType)
				}
			}
			for _, want := range []string{"Customers", "Orders", "WorkflowInstances"} {
				if !slices.Contains(sets, want) {
					t.Errorf("entity sets %v lack %s", sets, want)
				}
			}
		})
	}
}

func TestServiceDocumentAndHeaders(t *testing.T) {
	for _, svc := range services() {
		t.Run(svc.name, func(t *testing.T) {
			r, m := getAs(t, "bob", svc.root)
			if r.status != 200 {
				t.Fatalf("GET service document = %d", r.status)
			}
			if got := r.header.Get(svc.versionHeader); got != svc.version {
				t.Errorf("%s = %q, want %q", svc.versionHeader, got, svc.version)
			}
			if got, want := m[svc.context], svc.root+"$metadata"; got != want {
				t.Errorf("%s = %v, want %s", svc.context, got, want)
			}
			var names []string
			for _, v := range rowsOf(t, m) {
				names = append(names, v["name"].(string))
				if v["url"] != v["name"] {
					t.Errorf("set %v: url %v, want the set name", v["name"], v["url"])
				}
			}
			if got, want := strings.Join(names, ","), "Customers,Orders,WorkflowInstances"; got != want {
				t.Errorf("sets = %s, want %s", got, want)
			}
		})
	}
}

// TestV4AndV3Shapes checks what differs between the versions: media types,
// annotation names, the count's JSON type, decimals and date-times.
func TestV4AndV3Shapes(t *testing.T) {
	tests := []struct {
		svc         service
		contentType string
		count       any
		amount      string // JSON text of Amount of order 1
		date        string
	}{
		{services()[0], "application/json; odata.metadata=minimal", json.Number("12000"), "11391.4", "2025-01-06T09:25:09Z"},
		{services()[1], "application/json;odata=minimalmetadata", "12000", "11391.40", "2025-01-06T09:25:09"},
	}
	for _, tc := range tests {
		t.Run(tc.svc.name, func(t *testing.T) {
			opt := "$count=true"
			if tc.svc.name == "v3" {
				opt = "$inlinecount=allpages"
			}
			r, m := getAs(t, "alice", tc.svc.root+"Orders?$top=1&"+opt)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type = %q, want prefix %q", ct, tc.contentType)
			}
			if got := r.header.Get(tc.svc.versionHeader); got != tc.svc.version {
				t.Errorf("%s = %q, want %q", tc.svc.versionHeader, got, tc.svc.version)
			}
			if got, want := m[tc.svc.context], tc.svc.root+"$metadata#Orders"; got != want {
				t.Errorf("context = %v, want %s", got, want)
			}
			if got := m[tc.svc.count]; got != tc.count {
				t.Errorf("%s = %#v, want %#v", tc.svc.count, got, tc.count)
			}
			row := rowsOf(t, m)[0]
			if got := fmt.Sprint(row["Amount"]); !strings.HasPrefix(got, strings.TrimRight(tc.amount, "0")) {
				t.Errorf("Amount = %#v, want %s", row["Amount"], tc.amount)
			}
			if _, isString := row["Amount"].(string); isString != (tc.svc.name == "v3") {
				t.Errorf("Amount JSON type: string=%v, want string only in v3", isString)
			}
			if got := row["OrderDate"]; got != tc.date {
				t.Errorf("OrderDate = %v, want %s", got, tc.date)
			}
		})
	}
}

// TestQueryOptions runs each option against both versions and compares with
// the generated rows, computed independently here.
func TestQueryOptions(t *testing.T) {
	d := generated()
	orders := d.set("Orders")
	customers := d.set("Customers")
	var openOrders, bigEUR, sweden, shippedNull int
	cutoff := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var bigEURAfter int
	for _, r := range orders.rows {
		if r[3] == "Open" {
			openOrders++
		}
		if r[5] == "EUR" && r[4].(float64) > 10000 {
			bigEUR++
			if r[2].(time.Time).After(cutoff) {
				bigEURAfter++
			}
		}
		if r[7] == nil {
			shippedNull++
		}
	}
	var oNeill int
	for _, r := range customers.rows {
		if r[2] == "Sweden" {
			sweden++
		}
		if strings.HasPrefix(r[1].(string), "O'Neill") {
			oNeill++
		}
	}

	type check func(t *testing.T, svc service, m map[string]any, body string)
	countIs := func(n int) check {
		return func(t *testing.T, svc service, m map[string]any, _ string) {
			if got := intOf(t, m[svc.count]); got != n {
				t.Errorf("count = %d, want %d", got, n)
			}
		}
	}
	rowsAre := func(n int) check {
		return func(t *testing.T, _ service, m map[string]any, _ string) {
			if got := len(rowsOf(t, m)); got != n {
				t.Errorf("%d rows, want %d", got, n)
			}
		}
	}
	tests := []struct {
		name   string
		path   string
		v4, v3 string // query for each version; v3 "" means the same as v4
		status int
		checks []check
	}{
		{"top", "Customers", "$top=7", "", 200, []check{rowsAre(7)}},
		{"skip", "Customers", q("$skip", "1495"), "", 200, []check{rowsAre(5), func(t *testing.T, _ service, m map[string]any, _ string) {
			if got := intOf(t, rowsOf(t, m)[0]["CustomerID"]); got != 1496 {
				t.Errorf("first CustomerID = %d, want 1496", got)
			}
		}}},
		{"top zero", "Customers", "$top=0", "", 200, []check{rowsAre(0)}},
		{"filter eq", "Orders", q("$filter", "Status eq 'Open'", "$count", "true"), q("$filter", "Status eq 'Open'", "$inlinecount", "allpages"), 200, []check{countIs(openOrders)}},
		{"filter and gt", "Orders", q("$filter", "Currency eq 'EUR' and Amount gt 10000", "$count", "true"), q("$filter", "Currency eq 'EUR' and Amount gt 10000", "$inlinecount", "allpages"), 200, []check{countIs(bigEUR)}},
		{"filter date", "Orders", q("$filter", "Currency eq 'EUR' and Amount gt 10000 and OrderDate gt 2026-01-01T00:00:00Z", "$count", "true"),
			q("$filter", "Currency eq 'EUR' and Amount gt 10000 and OrderDate gt datetime'2026-01-01T00:00:00'", "$inlinecount", "allpages"), 200, []check{countIs(bigEURAfter)}},
		{"filter ne null", "Orders", q("$filter", "ShippedDate eq null", "$count", "true"), q("$filter", "ShippedDate eq null", "$inlinecount", "allpages"), 200, []check{countIs(shippedNull)}},
		{"filter function", "Customers", q("$filter", "startswith(Name,'O''Neill')", "$count", "true"),
			q("$filter", "startswith(Name,'O''Neill')", "$inlinecount", "allpages"), 200, []check{countIs(oNeill)}},
		{"unsupported function", "Customers", q("$filter", "indexof(Name,'a') eq 1"), "", 501, nil},
		{"filter lt", "Customers", q("$filter", "CustomerID lt 11"), "", 200, []check{rowsAre(10)}},
		{"filter ne and", "Customers", q("$filter", "Country ne 'Sweden' and CustomerID lt 1501", "$top", "0", "$count", "true"),
			q("$filter", "Country ne 'Sweden' and CustomerID lt 1501", "$top", "0", "$inlinecount", "allpages"), 200, []check{countIs(customerCount - sweden), rowsAre(0)}},
		{"select", "Customers", q("$select", "City,Name", "$top", "2"), "", 200, []check{rowsAre(2), func(t *testing.T, svc service, m map[string]any, _ string) {
			row := rowsOf(t, m)[0]
			if len(row) != 2 || row["Name"] == nil || row["City"] == nil {
				t.Errorf("row = %v, want only Name and City", row)
			}
			if ctx := m[svc.context].(string); !strings.Contains(ctx, "City,Name") {
				t.Errorf("context %s does not name the selection", ctx)
			}
		}}},
		{"orderby", "Orders", q("$orderby", "Amount desc,OrderID", "$top", "50"), "", 200, []check{rowsAre(50), func(t *testing.T, _ service, m map[string]any, _ string) {
			prev := 1e18
			for _, r := range rowsOf(t, m) {
				a, _ := strconv.ParseFloat(fmt.Sprint(r["Amount"]), 64)
				if a > prev {
					t.Fatalf("Amount %v after %v: not descending", a, prev)
				}
				prev = a
			}
		}}},
		{"count segment", "Orders/$count", q("$filter", "Status eq 'Open'"), "", 200, []check{func(t *testing.T, _ service, _ map[string]any, body string) {
			if body != strconv.Itoa(openOrders) {
				t.Errorf("$count body = %q, want %d", body, openOrders)
			}
		}}},
		{"entity by key", "Customers(42)", "", "", 200, []check{func(t *testing.T, svc service, m map[string]any, _ string) {
			if intOf(t, m["CustomerID"]) != 42 || m["Name"] != customers.rows[41][1] {
				t.Errorf("Customers(42) = %v", m)
			}
			if ctx := m[svc.context].(string); !strings.HasPrefix(ctx, svc.root+"$metadata#Customers") {
				t.Errorf("entity context = %s", ctx)
			}
		}}},
		{"entity by named key", "Orders(OrderID=7)", q("$select", "Amount"), "", 200, []check{func(t *testing.T, svc service, m map[string]any, _ string) {
			if len(m) != 2 || m["Amount"] == nil {
				t.Errorf("Orders(OrderID=7)?$select=Amount = %v, want the context and Amount", m)
			}
		}}},
		{"entity missing", "Customers(99999)", "", "", 404, nil},
		{"set missing", "Invoices", "", "", 404, nil},
		{"unknown property", "Orders", q("$filter", "Colour eq 'red'"), "", 400, nil},
		{"type mismatch", "Orders", q("$filter", "Amount eq 'many'"), "", 400, nil},
		{"bad literal", "Orders", q("$filter", "OrderDate gt 2026-13-45"), "", 400, nil},
		{"bad top", "Orders", "$top=-1", "", 400, nil},
		{"repeated option", "Orders", "$top=1&$top=2", "", 400, nil},
		{"unknown option", "Orders", "$search=x", "", 400, nil},
		{"expand", "Orders", "$expand=Customer", "", 501, nil},
		{"unknown format", "Orders", "$format=csv", "", 501, nil},
		{"v3 option in v4", "Orders", "$inlinecount=allpages", "$count=true", 400, nil},
	}
	for _, svc := range services() {
		for _, tc := range tests {
			t.Run(svc.name+"/"+tc.name, func(t *testing.T) {
				query := tc.v4
				if svc.name == "v3" && tc.v3 != "" {
					query = tc.v3
				}
				u := svc.root + tc.path
				if query != "" {
					u += "?" + query
				}
				r, m := getAs(t, "carol", u)
				if r.status != tc.status {
					t.Fatalf("GET %s = %d %s, want %d", u, r.status, r.body, tc.status)
				}
				if tc.status >= 400 {
					checkErrorShape(t, svc, m)
					return
				}
				for _, c := range tc.checks {
					c(t, svc, m, string(r.body))
				}
			})
		}
	}
}

// checkErrorShape checks the version's JSON error body.
func checkErrorShape(t *testing.T, svc service, m map[string]any) {
	t.Helper()
	if svc.name == "v4" {
		e, ok := m["error"].(map[string]any)
		if !ok || e["code"] == nil || e["message"] == "" {
			t.Errorf("v4 error body = %v, want {error:{code,message}}", m)
		}
		return
	}
	e, ok := m["odata.error"].(map[string]any)
	msg, _ := e["message"].(map[string]any)
	if !ok || msg["value"] == "" || msg["lang"] == nil {
		t.Errorf("v3 error body = %v, want {odata.error:{code,message:{lang,value}}}", m)
	}
}

func TestPreferMaxPageSize(t *testing.T) {
	for _, tc := range []struct {
		prefer  string
		rows    int
		applied string
	}{
		{"odata.maxpagesize=250", 250, "odata.maxpagesize=250"},
		{"odata.maxpagesize=5000", 1000, "odata.maxpagesize=1000"},
		{"", 1000, ""},
	} {
		t.Run(tc.prefer, func(t *testing.T) {
			got, link := fetchPage(t, world.ODataV4URL+"Orders", tc.prefer)
			if got.rows != tc.rows || got.applied != tc.applied {
				t.Errorf("Prefer %q: %d rows, Preference-Applied %q; want %d, %q", tc.prefer, got.rows, got.applied, tc.rows, tc.applied)
			}
			if !strings.HasSuffix(link, "$skiptoken="+strconv.Itoa(tc.rows)) {
				t.Errorf("next link %s does not continue after row %d", link, tc.rows)
			}
		})
	}
}

type pageInfo struct {
	rows    int
	applied string
}

func fetchPage(t *testing.T, u, prefer string) (pageInfo, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tokenFor(t, "alice"))
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct {
		Value []json.RawMessage `json:"value"`
		Next  string            `json:"@odata.nextLink"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return pageInfo{len(m.Value), resp.Header.Get("Preference-Applied")}, m.Next
}

func TestNextLinkQueryKeepsOptions(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"", "$skiptoken=1000"},
		{"$filter=Status%20eq%20%27Open%27&$top=5", "$filter=Status%20eq%20%27Open%27&$top=5&$skiptoken=1000"},
		{"$skiptoken=3&a=b", "a=b&$skiptoken=1000"},
		{"%24skiptoken=3&%24top=9", "%24top=9&$skiptoken=1000"},
		{"x=1&&y=2", "x=1&y=2&$skiptoken=1000"},
	}
	for _, tc := range tests {
		if got := nextLinkQuery(tc.raw, 1000); got != tc.want {
			t.Errorf("nextLinkQuery(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func FuzzNextLinkQuery(f *testing.F) {
	for _, s := range []string{"", "$top=5", "$skiptoken=3&$filter=a%20eq%201", "%zz=1&$skiptoken=x"} {
		f.Add(s, 1000)
	}
	f.Fuzz(func(t *testing.T, raw string, token int) {
		got := nextLinkQuery(raw, token)
		suffix := "$skiptoken=" + strconv.Itoa(token)
		if !strings.HasSuffix(got, suffix) {
			t.Fatalf("nextLinkQuery(%q) = %q, want it to end in %s", raw, got, suffix)
		}
		// Every other non-empty part survives byte for byte.
		for part := range strings.SplitSeq(raw, "&") {
			key, _, _ := strings.Cut(part, "=")
			if k, err := url.QueryUnescape(key); part == "" || (err == nil && k == "$skiptoken") {
				continue
			}
			if !slices.Contains(strings.Split(got, "&"), part) {
				t.Fatalf("nextLinkQuery(%q) = %q lost %q", raw, got, part)
			}
		}
	})
}

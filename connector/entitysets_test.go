package connector

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/internal/meval"
	"github.com/odata-bridge/bridge/odata"
)

// serviceDocuments is an upstream with one service document of each shape
// under /{shape}/, each printing the upstream's own absolute URLs where
// real services do, and recording the credentials it was sent.
type serviceDocuments struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
}

func newServiceDocuments(t *testing.T) *serviceDocuments {
	u := &serviceDocuments{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.auth = append(u.auth, r.Header.Get("Authorization"))
		u.mu.Unlock()
		up := "http://" + r.Host
		shape, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if rest != "" {
			http.NotFound(w, r)
			return
		}
		switch shape {
		case "v4": // OData JSON Format v4.01 §5: kinds, relative and absolute URLs
			w.Header().Set("OData-Version", "4.0")
			w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
			fmt.Fprintf(w, `{"@odata.context":"%[1]s/v4/$metadata","value":[`+
				`{"name":"People","kind":"EntitySet","url":"People"},`+
				`{"name":"Me","kind":"Singleton","url":"Me"},`+
				`{"name":"GetNearestAirport","kind":"FunctionImport","url":"GetNearestAirport"},`+
				`{"name":"Airports","url":"%[1]s/v4/Airports"},`+
				`{"name":"Ordrés","kind":"EntitySet","url":"Ordr%%C3%%A9s"},`+
				`{"name":"Elsewhere","kind":"EntitySet","url":"https://other.example/v4/Elsewhere"},`+
				`{"name":"Nested","kind":"EntitySet","url":"a/b"}]}`, up)
		case "v3": // JSON light
			w.Header().Set("DataServiceVersion", "3.0;")
			w.Header().Set("Content-Type", "application/json;odata=minimalmetadata;streaming=true;charset=utf-8")
			fmt.Fprintf(w, `{"odata.metadata":"%s/v3/$metadata","value":[{"name":"Customers","url":"Customers"},{"name":"Orders","url":"Orders"}]}`, up)
		case "v2": // verbose JSON
			w.Header().Set("DataServiceVersion", "2.0;")
			w.Header().Set("Content-Type", "application/json;charset=utf-8")
			io.WriteString(w, `{"d":{"EntitySets":["Products","Categories","Other.Container_Set"]}}`)
		case "atom": // RFC 5023 service document, with a BOM and xml:base
			w.Header().Set("DataServiceVersion", "1.0;")
			w.Header().Set("Content-Type", "application/atomsvc+xml;charset=utf-8")
			fmt.Fprintf(w, "\ufeff"+`<?xml version="1.0" encoding="utf-8" standalone="yes"?>`+"\n"+
				`<service xml:base="%s/atom/" xmlns="http://www.w3.org/2007/app" xmlns:atom="http://www.w3.org/2005/Atom">`+
				`<workspace><atom:title>Default</atom:title>`+
				`<collection href="Rooms"><atom:title>Rooms</atom:title></collection>`+
				`<collection href="Buildings"><atom:title>All buildings</atom:title></collection>`+
				`</workspace></service>`, up)
		case "deny":
			w.Header().Set("OData-Version", "4.0")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":{"code":"Forbidden","message":"no"}}`)
		case "big":
			w.Header().Set("OData-Version", "4.0")
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"value":[`)
			entry := []byte(`{"name":"People","url":"People"},`)
			for range maxServiceDocument/len(entry) + 1 {
				w.Write(entry)
			}
			io.WriteString(w, `{"name":"Last","url":"Last"}]}`)
		case "html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, `<!doctype html><p>Sign in`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// seen returns the Authorization headers the upstream received.
func (u *serviceDocuments) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auth...)
}

var serviceShapes = []string{"v4", "v3", "v2", "atom", "deny", "big", "html"}

// newEntitySetBridge is a bridge whose sources are the shapes of
// serviceDocuments, relayed by the real relay with the caller's own token.
func newEntitySetBridge(t *testing.T, up *serviceDocuments) *bridge {
	return newBridge(t, func(*idp.Provider) []Source { return nil }, func(o *Options) {
		var rs []odata.Upstream
		for _, name := range serviceShapes {
			rs = append(rs, odata.Upstream{Name: name, URL: up.srv.URL + "/" + name + "/", PublicBase: o.PublicURL + "/odata/" + name + "/"})
		}
		relay, err := odata.NewRelay(rs, odata.Options{ErrorHandler: func(w http.ResponseWriter, _ *http.Request, version string, err error) { WriteError(w, version, err) }})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range serviceShapes {
			feed, _ := relay.Feed(name)
			o.Sources = append(o.Sources, Source{Name: name, Title: "Shape " + name, Kind: "odata", Auth: AuthUser, Feed: feed})
		}
	})
}

func TestEntitySets(t *testing.T) {
	up := newServiceDocuments(t)
	b := newEntitySetBridge(t, up)
	access, _ := b.signIn(t)
	set := func(source, name, segment string) entitySet {
		return entitySet{Name: name, URL: b.url + "/odata/" + source + "/" + segment, ODCURL: b.url + "/excel/" + source + "/" + segment + ".odc"}
	}
	tests := []struct {
		source string
		want   []entitySet
	}{
		{"v4", []entitySet{set("v4", "People", "People"), set("v4", "Airports", "Airports"), set("v4", "Ordrés", "Ordr%C3%A9s")}},
		{"v3", []entitySet{set("v3", "Customers", "Customers"), set("v3", "Orders", "Orders")}},
		{"v2", []entitySet{set("v2", "Products", "Products"), set("v2", "Categories", "Categories")}},
		{"atom", []entitySet{set("atom", "Rooms", "Rooms"), set("atom", "All buildings", "Buildings")}},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			resp, body := b.get(t, "/api/sources/"+tt.source+"/entity-sets", bearer(access))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %s; want 200", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			var got []entitySet
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(entitySet{})); diff != "" {
				t.Errorf("entity sets (-want +got):\n%s", diff)
			}
		})
	}
	// The upstream was read with the user's provider token, never the
	// bridge's own token.
	for _, a := range up.seen() {
		if !strings.HasPrefix(a, "Bearer ") || strings.Contains(a, access) {
			t.Errorf("upstream Authorization = %q, want the provider's bearer token", a)
		}
	}
	if len(up.seen()) != len(tests) {
		t.Errorf("upstream saw %d requests, want %d", len(up.seen()), len(tests))
	}
}

func TestEntitySetsRefusals(t *testing.T) {
	up := newServiceDocuments(t)
	b := newEntitySetBridge(t, up)
	access, _ := b.signIn(t)
	tests := []struct {
		name, path string
		header     http.Header
		want       int
	}{
		{"no credentials", "/api/sources/v4/entity-sets", nil, http.StatusUnauthorized},
		{"unknown bearer", "/api/sources/v4/entity-sets", bearer("nope"), http.StatusUnauthorized},
		{"unknown source", "/api/sources/nosuch/entity-sets", bearer(access), http.StatusNotFound},
		{"upstream refuses", "/api/sources/deny/entity-sets", bearer(access), http.StatusForbidden},
		{"document too large", "/api/sources/big/entity-sets", bearer(access), http.StatusBadGateway},
		{"not OData", "/api/sources/html/entity-sets", bearer(access), http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := b.get(t, tt.path, tt.header)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, body %s; want %d", resp.StatusCode, body, tt.want)
			}
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" {
				t.Errorf("body %s, want a JSON error with a message", body)
			}
		})
	}
	n := len(up.seen())
	b.get(t, "/api/sources/v4/entity-sets", nil)
	if got := len(up.seen()); got != n {
		t.Errorf("a call without credentials reached the upstream")
	}
}

// TestEntitySetsCredentials: the list is read with each credential the
// keys API accepts: a feed key (Basic, as Excel sends it), and the page's
// cookie, only with its CSRF token.
func TestEntitySetsCredentials(t *testing.T) {
	up := newServiceDocuments(t)
	b := newEntitySetBridge(t, up)
	access, _ := b.signIn(t)
	ctx := context.Background()
	sid, err := b.store.Authenticate(ctx, access)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := b.store.CreateFeedKey(ctx, sid, "excel")
	if err != nil {
		t.Fatal(err)
	}
	srv := b.srv.Config.Handler.(*Server)
	pc, err := srv.newPageSession(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	cookie := cookieName + "=" + srv.sealCookie(pc)
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"feed key", http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+string(key)))}}, http.StatusOK},
		{"page cookie with its CSRF token", http.Header{"Cookie": {cookie}, "X-Csrf-Token": {pc.CSRF}}, http.StatusOK},
		{"page cookie without a CSRF token", http.Header{"Cookie": {cookie}}, http.StatusForbidden},
		{"page cookie with a wrong CSRF token", http.Header{"Cookie": {cookie}, "X-Csrf-Token": {"wrong"}}, http.StatusForbidden},
		{"ended page session, from the page's script", http.Header{"Cookie": {cookieName + "=ended"}, "X-Csrf-Token": {pc.CSRF}}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := b.get(t, "/api/sources/v3/entity-sets", tt.header)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, body %s; want %d", resp.StatusCode, body, tt.want)
			}
			if tt.want != http.StatusOK && len(resp.Header.Values("WWW-Authenticate")) != 0 {
				t.Errorf("WWW-Authenticate %q to the page's script, which would make the browser ask for a password", resp.Header.Values("WWW-Authenticate"))
			}
			if tt.want == http.StatusOK && !strings.Contains(body, b.url+"/excel/v3/Customers.odc") {
				t.Errorf("body %s lacks the Customers .odc", body)
			}
		})
	}
}

// odcFormula returns the query name and M formula inside an .odc.
func odcFormula(t *testing.T, odc []byte) (name, formula string) {
	t.Helper()
	var doc struct {
		Mashup []string `xml:"head>xml>OfficeDataConnection>PowerQueryMashupData"`
	}
	if err := xml.Unmarshal(odc, &doc); err != nil || len(doc.Mashup) != 1 {
		t.Fatalf("the .odc has no mashup (%v):\n%s", err, odc)
	}
	var m struct {
		Queries []struct {
			Name    string `xml:"Name,attr"`
			Formula string `xml:"Formula"`
		} `xml:"Items>Query"`
	}
	if err := xml.Unmarshal([]byte(doc.Mashup[0]), &m); err != nil || len(m.Queries) != 1 {
		t.Fatalf("mashup %q: %v", doc.Mashup[0], err)
	}
	return m.Queries[0].Name, m.Queries[0].Formula
}

// parseMSections runs Microsoft's Power Query parser (powerbi/mcheck) on
// section documents. Without node or the parser it skips, as the powerbi
// package's check does, and fails in CI.
func parseMSections(t *testing.T, docs map[string][]byte) {
	t.Helper()
	check := filepath.Join("..", "powerbi", "mcheck", "check.js")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join("..", "powerbi", "mcheck", "node_modules", "@microsoft", "powerquery-parser", "package.json"))
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the Power Query parser is required in CI: %v (npm ci --prefix powerbi/mcheck)", err)
		}
		t.Skipf("the Power Query parser is not installed (%v); run: npm ci --prefix powerbi/mcheck", err)
	}
	dir := t.TempDir()
	args := []string{check}
	for name, doc := range docs {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	var out bytes.Buffer
	cmd := exec.Command(node, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("the Power Query parser rejected an .odc formula (%v):\n%s", err, out.String())
	}
}

// TestEntitySetODC loads a table's .odc as Excel would: its M, parsed by
// Microsoft's parser and evaluated, reads exactly that entity set's feed on
// the bridge, with the implementation of the source's OData version.
func TestEntitySetODC(t *testing.T) {
	up := newServiceDocuments(t)
	b := newEntitySetBridge(t, up)
	access, _ := b.signIn(t)
	// Reading the lists teaches the bridge each source's version.
	for _, src := range []string{"v4", "v3"} {
		if resp, body := b.get(t, "/api/sources/"+src+"/entity-sets", bearer(access)); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s entity sets: %d %s", src, resp.StatusCode, body)
		}
	}
	v2impl := &meval.Record{Names: []string{"Implementation"}, Values: []meval.Value{"2.0"}}
	tests := []struct {
		path, wantName string
		wantArgs       []meval.Value
	}{
		{"/excel/v4/People.odc", "People", []meval.Value{b.url + "/odata/v4/People", nil, v2impl}},
		{"/excel/v4/Ordr%C3%A9s.odc", "Ordrés", []meval.Value{b.url + "/odata/v4/Ordr%C3%A9s", nil, v2impl}},
		{"/excel/v3/Customers.odc", "Customers", []meval.Value{b.url + "/odata/v3/Customers"}},
		{"/excel/atom/Rooms.odc", "Rooms", []meval.Value{b.url + "/odata/atom/Rooms"}}, // version never read: the default
	}
	docs := map[string][]byte{}
	for i, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := b.get(t, tt.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/x-ms-odc") {
				t.Errorf("Content-Type %q, want text/x-ms-odc", ct)
			}
			if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
				t.Errorf("Content-Disposition %q, want an attachment", cd)
			}
			name, formula := odcFormula(t, []byte(body))
			if name != tt.wantName {
				t.Errorf("query name %q, want %q", name, tt.wantName)
			}
			doc := []byte("section Odc;\nshared Query = " + formula + ";\n")
			docs[fmt.Sprintf("odc%d.pq", i)] = doc
			var calls [][]meval.Value
			s, err := meval.Parse(doc, meval.Host{Functions: map[string]func([]meval.Value) (meval.Value, error){
				"OData.Feed": func(args []meval.Value) (meval.Value, error) {
					calls = append(calls, args)
					return "rows", nil
				},
			}})
			if err != nil {
				t.Fatalf("meval.Parse: %v\n%s", err, doc)
			}
			if got, err := s.Eval("Query"); err != nil || got != "rows" {
				t.Fatalf("Query = %v, %v; want OData.Feed's rows", got, err)
			}
			if len(calls) != 1 {
				t.Fatalf("%d OData.Feed calls, want 1", len(calls))
			}
			if diff := cmp.Diff(tt.wantArgs, calls[0]); diff != "" {
				t.Errorf("OData.Feed arguments (-want +got):\n%s", diff)
			}
		})
	}
	parseMSections(t, docs)

	for _, path := range []string{
		"/excel/nosuch/People.odc",
		"/excel/v4/People.txt",
		"/excel/v4/Peo%2Fple.odc",
		"/excel/v4/1People.odc",
		"/excel/v4/People%22%29.odc",
		"/excel/v4/People%00.odc",
		"/excel/v4/a.b.odc",
		"/excel/v4/" + strings.Repeat("x", 129) + ".odc",
	} {
		if resp, _ := b.get(t, path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
	}
}

func TestValidEntitySetName(t *testing.T) {
	tests := map[string]bool{
		"People": true, "_x": true, "Ordrés": true, "Spalte_2": true, "Ωmega": true,
		"": false, "2x": false, "a.b": false, "a/b": false, "a b": false, `a"`: false, "a(1)": false, "a%": false, "\xff": false,
		strings.Repeat("x", 128): true, strings.Repeat("x", 129): false,
	}
	for name, want := range tests {
		if got := validEntitySetName(name); got != want {
			t.Errorf("validEntitySetName(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzParseServiceDocument: whatever the upstream sends, the parser does
// not panic, and every set it returns is an OData identifier, listed once.
func FuzzParseServiceDocument(f *testing.F) {
	const root = "https://bridge.example.com/odata/k2/"
	for _, seed := range []string{
		`{"@odata.context":"https://bridge.example.com/odata/k2/$metadata","value":[{"name":"People","kind":"EntitySet","url":"People"},{"name":"Me","kind":"Singleton","url":"Me"}]}`,
		`{"odata.metadata":"https://bridge.example.com/odata/k2/$metadata","value":[{"name":"Customers","url":"Customers"}]}`,
		`{"d":{"EntitySets":["Products","Other.Set"]}}`,
		"\ufeff" + `<service xml:base="https://bridge.example.com/odata/k2/" xmlns="http://www.w3.org/2007/app" xmlns:atom="http://www.w3.org/2005/Atom"><workspace><collection href="Rooms"><atom:title>Rooms</atom:title></collection></workspace></service>`,
		`{"value":[{"url":"../x"},{"url":"a%2Fb"},{"url":"People"},{"url":"People"}]}`,
		`<html>`, `{}`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sets, err := parseServiceDocument(body, root)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, s := range sets {
			if !validEntitySetName(s.segment) || seen[s.segment] {
				t.Fatalf("set %+v: not an identifier, or listed twice", s)
			}
			seen[s.segment] = true
		}
	})
}

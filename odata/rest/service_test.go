package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/internal/fixtures"
	"github.com/odata-bridge/bridge/odata"
)

func TestEntitySet(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	w := get(t, s, "Tasks", "alice", &bearer{token: "alice"})
	f := decodeFeed(t, w)
	for h, want := range map[string]string{
		"Content-Type":  "application/json;odata.metadata=minimal",
		"OData-Version": "4.0",
	} {
		if got := w.Header().Get(h); got != want {
			t.Errorf("%s: got %q, want %q", h, got, want)
		}
	}
	if got, want := f.Context, publicBase+"$metadata#Tasks"; got != want {
		t.Errorf("@odata.context: got %q, want %q", got, want)
	}
	if f.Count != nil || f.NextLink != "" {
		t.Errorf("got count %v and nextLink %q, want neither", f.Count, f.NextLink)
	}
	if got := len(f.Value); got != 53 {
		t.Fatalf("rows: got %d, want 53", got)
	}
	first := f.Value[0]
	want := map[string]any{
		"serialNumber":           "alice_1",
		"status":                 "Available",
		"taskStartDate":          "2026-01-01T08:00:00Z",
		"sleepUntil":             nil,
		"priority":               float64(0),
		"workflowID":             float64(1),
		"workflowInstanceFolio":  "Folio 100",
		"originator_displayName": "Alice",
		"originator_email":       "alice@denallix.com",
		"actions_batchable":      "Approve, Decline",
		"actions_system":         "Redirect, Sleep",
		"actions_nonBatchable":   "",
		"eventName":              nil,
	}
	for k, v := range want {
		if got, ok := first[k]; !ok || got != v {
			t.Errorf("first row %s: got %#v (present %v), want %#v", k, got, ok, v)
		}
	}
	if got, want := len(first), len(s.byName["Tasks"].Properties); got != want {
		t.Errorf("first row has %d properties, want %d", got, want)
	}
}

func TestServiceRootFromRequest(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, func(src *Config) { src.PublicBase = "" })
	w := get(t, s, "http://bridge.test/odata/workflow/Workflows", "alice", &bearer{token: "alice"})
	if got, want := decodeFeed(t, w).Context, "http://bridge.test/odata/workflow/$metadata#Workflows"; got != want {
		t.Errorf("@odata.context: got %q, want %q", got, want)
	}
}

// follow reads a feed to its end through @odata.nextLink and returns every
// key in the order received, and the pages seen.
func follow(t *testing.T, s *Service, first, user string, auth odata.Authorizer, header ...string) (keys []string, pages []feed) {
	t.Helper()
	next := first
	for next != "" {
		if len(pages) > 100 {
			t.Fatal("more than 100 pages")
		}
		f := decodeFeed(t, get(t, s, next, user, auth, header...))
		for _, v := range f.Value {
			keys = append(keys, fmt.Sprint(v["serialNumber"]))
		}
		pages = append(pages, f)
		next = f.NextLink
	}
	return keys, pages
}

func TestPagingToTheEnd(t *testing.T) {
	for _, ttl := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprintf("cache=%v", ttl), func(t *testing.T) {
			u := newK2Upstream(t)
			s := newTestService(t, u, func(src *Config) { src.PageSize = 7; src.CacheTTL = ttl })
			auth := &bearer{token: "alice"}
			// Every task not completed, newest priority first.
			want := map[string]bool{}
			for i, task := range u.tasks["alice"] {
				if taskStatuses[i%4] != "Completed" {
					want[task["serialNumber"].(string)] = true
				}
			}
			keys, pages := follow(t, s, target("Tasks", "$filter", "status ne 'Completed'", "$count", "true", "$orderby", "priority desc"), "alice", auth)
			if got, want := len(pages), (len(want)+6)/7; got != want {
				t.Errorf("pages: got %d, want %d", got, want)
			}
			seen := map[string]bool{}
			for _, k := range keys {
				if seen[k] {
					t.Errorf("task %s received twice", k)
				}
				seen[k] = true
				if !want[k] {
					t.Errorf("task %s should not be in the result", k)
				}
			}
			if len(seen) != len(want) {
				t.Errorf("received %d distinct tasks, want %d", len(seen), len(want))
			}
			for i, p := range pages {
				if p.Count == nil || *p.Count != len(want) {
					t.Errorf("page %d: @odata.count %v, want %d", i, p.Count, len(want))
				}
				if i < len(pages)-1 && len(p.Value) != 7 {
					t.Errorf("page %d: %d rows, want 7", i, len(p.Value))
				}
				if next := p.NextLink; next != "" && !strings.HasPrefix(next, publicBase+"Tasks?") {
					t.Errorf("page %d: nextLink %q is not under the service root", i, next)
				}
			}
			// The order holds across pages.
			var last float64 = 3
			for _, p := range pages {
				for _, v := range p.Value {
					if pr := v["priority"].(float64); pr > last {
						t.Fatalf("priority %v after %v: $orderby=priority desc broken across pages", pr, last)
					} else {
						last = pr
					}
				}
			}
			wantCalls := int64(len(pages))
			if ttl > 0 {
				wantCalls = 1
			}
			if got := u.calls.Load(); got != wantCalls {
				t.Errorf("upstream calls: got %d, want %d", got, wantCalls)
			}
		})
	}
}

func TestSkipTokenTampered(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, func(src *Config) { src.PageSize = 10 })
	auth := &bearer{token: "alice"}
	f := decodeFeed(t, get(t, s, target("Tasks", "$filter", "priority eq 1"), "alice", auth))
	if f.NextLink == "" {
		t.Fatal("no nextLink on the first page")
	}
	next, err := url.Parse(f.NextLink)
	if err != nil {
		t.Fatal(err)
	}
	tok := next.Query().Get("$skiptoken")
	flip := []byte(tok)
	flip[len(flip)/2] ^= 'A' ^ 'B'
	tests := []struct {
		name, query string
	}{
		{"flipped byte", "$filter=priority%20eq%201&$skiptoken=" + string(flip)},
		{"other filter", "$filter=priority%20eq%202&$skiptoken=" + tok},
		{"added orderby", "$filter=priority%20eq%201&$orderby=status&$skiptoken=" + tok},
		{"garbage", "$filter=priority%20eq%201&$skiptoken=not-a-token"},
		{"offset", "$filter=priority%20eq%201&$skiptoken=10"},
		{"empty", "$filter=priority%20eq%201&$skiptoken="},
	}
	for _, tt := range tests {
		w := get(t, s, "Tasks?"+tt.query, "alice", auth)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400; body %s", tt.name, w.Code, w.Body)
			continue
		}
		if msg := errorMessage(t, w); !strings.Contains(msg, "$skiptoken is invalid") {
			t.Errorf("%s: message %q does not name the $skiptoken", tt.name, msg)
		}
	}
	if got := u.calls.Load(); got != 1 {
		t.Errorf("upstream calls: got %d, want 1 (forged tokens are refused before the upstream)", got)
	}
	// The untouched link still works.
	if w := get(t, s, f.NextLink, "alice", auth); w.Code != http.StatusOK {
		t.Errorf("untouched nextLink: status %d, want 200", w.Code)
	}
}

func TestPreferMaxPageSize(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, func(src *Config) { src.PageSize = 20 })
	auth := &bearer{token: "alice"}
	tests := []struct {
		prefer      string
		wantRows    int
		wantApplied string
	}{
		{"odata.maxpagesize=5", 5, "odata.maxpagesize=5"},
		{"maxpagesize=3", 3, "maxpagesize=3"},
		{"odata.track-changes, odata.maxpagesize=8", 8, "odata.maxpagesize=8"},
		{"odata.maxpagesize=500", 20, "odata.maxpagesize=20"}, // the server's page size is the ceiling
		{"odata.maxpagesize=zero", 20, ""},
		{"", 20, ""},
	}
	for _, tt := range tests {
		var h []string
		if tt.prefer != "" {
			h = []string{"Prefer", tt.prefer}
		}
		w := get(t, s, "Tasks", "alice", auth, h...)
		f := decodeFeed(t, w)
		if len(f.Value) != tt.wantRows {
			t.Errorf("Prefer %q: got %d rows, want %d", tt.prefer, len(f.Value), tt.wantRows)
		}
		if got := w.Header().Get("Preference-Applied"); got != tt.wantApplied {
			t.Errorf("Prefer %q: Preference-Applied %q, want %q", tt.prefer, got, tt.wantApplied)
		}
	}
	// The page size sticks to the next links, with or without the header.
	keys, pages := follow(t, s, "Tasks", "alice", auth, "Prefer", "odata.maxpagesize=25")
	if len(keys) != 53 || len(pages) != 3 {
		t.Errorf("with Prefer 25 over a 20 ceiling: %d keys in %d pages, want 53 in 3", len(keys), len(pages))
	}
	first := decodeFeed(t, get(t, s, "Tasks", "alice", auth, "Prefer", "odata.maxpagesize=4"))
	second := decodeFeed(t, get(t, s, first.NextLink, "alice", auth))
	if len(second.Value) != 4 {
		t.Errorf("second page without Prefer: %d rows, want 4 (the size of the first)", len(second.Value))
	}
}

func TestCountSegment(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	auth := &bearer{token: "alice"}
	for status, want := range map[string]string{"Available": "14", "Completed": "13", "Nope": "0"} {
		w := get(t, s, target("Tasks/$count", "$filter", "status eq '"+status+"'"), "alice", auth)
		if w.Code != http.StatusOK || w.Body.String() != want {
			t.Errorf("Tasks/$count for %s: got %d %q, want 200 %q", status, w.Code, w.Body, want)
		}
		if ct := w.Header().Get("Content-Type"); ct != "text/plain" {
			t.Errorf("Content-Type: got %q, want text/plain", ct)
		}
	}
	// $count=true counts before $top and $skip.
	f := decodeFeed(t, get(t, s, target("Tasks", "$count", "true", "$top", "2", "$filter", "status eq 'Open'"), "alice", auth))
	if f.Count == nil || *f.Count != 13 || len(f.Value) != 2 {
		t.Errorf("$count=true&$top=2: count %v rows %d, want 13 and 2", f.Count, len(f.Value))
	}
}

func TestSelectOrderBy(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	auth := &bearer{token: "alice"}
	f := decodeFeed(t, get(t, s, target("Tasks", "$select", "priority,serialNumber", "$orderby", "priority desc,taskStartDate asc", "$top", "5"), "alice", auth))
	if got, want := f.Context, publicBase+"$metadata#Tasks(serialNumber,priority)"; got != want {
		t.Errorf("@odata.context: got %q, want %q", got, want)
	}
	var got []string
	for _, v := range f.Value {
		if len(v) != 2 {
			t.Errorf("row %v: got %d properties, want 2", v, len(v))
		}
		got = append(got, fmt.Sprintf("%v:%v", v["priority"], v["serialNumber"]))
	}
	want := []string{"2:alice_3", "2:alice_6", "2:alice_9", "2:alice_12", "2:alice_15"}
	if !slices.Equal(got, want) {
		t.Errorf("rows: got %v, want %v", got, want)
	}
	// Descending dates with a null-free column, and $skip.
	f = decodeFeed(t, get(t, s, target("Tasks", "$orderby", "taskStartDate desc", "$skip", "50", "$select", "serialNumber"), "alice", auth))
	got = got[:0]
	for _, v := range f.Value {
		got = append(got, v["serialNumber"].(string))
	}
	if want := []string{"alice_3", "alice_2", "alice_1"}; !slices.Equal(got, want) {
		t.Errorf("$skip=50: got %v, want %v", got, want)
	}
	f = decodeFeed(t, get(t, s, target("Tasks", "$top", "0"), "alice", auth))
	if len(f.Value) != 0 || f.NextLink != "" {
		t.Errorf("$top=0: got %d rows and nextLink %q, want none", len(f.Value), f.NextLink)
	}
}

func TestEntityByKey(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	auth := &bearer{token: "alice"}
	tests := []struct {
		path   string
		status int
		key    any
	}{
		{"Tasks('alice_7')", 200, "alice_7"},
		{"Tasks(serialNumber='alice_7')", 200, "alice_7"},
		{"Tasks(%27alice_7%27)", 200, "alice_7"},
		{"Tasks%28%27alice_7%27%29", 200, "alice_7"},
		{"Tasks('alice_7')?$select=status", 200, nil},
		{"Workflows(2)", 200, float64(2)},
		{"Workflows(id=2)", 200, float64(2)},
		{"Tasks('nope')", 404, nil},
		{"Tasks('bob_1')", 404, nil},
		{"Tasks(7)", 400, nil},
		{"Workflows('2')", 400, nil},
		{"Tasks(status='x')", 400, nil},
		{"Tasks('a','b')", 400, nil},
		{"Tasks('alice_7'", 400, nil},
		{"Tasks('alice_7')/status", 501, nil},
		{"Tasks/foo", 501, nil},
		{"Nothing", 404, nil},
		{"Nothing('x')", 404, nil},
	}
	for _, tt := range tests {
		w := get(t, s, tt.path, "alice", auth)
		if w.Code != tt.status {
			t.Errorf("%s: status %d, want %d; body %s", tt.path, w.Code, tt.status, w.Body)
			continue
		}
		if tt.key == nil {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		unescaped, _ := url.PathUnescape(tt.path)
		set, _, _ := strings.Cut(unescaped, "(")
		keyName := s.byName[set].Key
		if e[keyName] != tt.key {
			t.Errorf("%s: key %v, want %v", tt.path, e[keyName], tt.key)
		}
		if want := publicBase + "$metadata#" + set + "/$entity"; e["@odata.context"] != want {
			t.Errorf("%s: context %v, want %s", tt.path, e["@odata.context"], want)
		}
	}
	var e map[string]any
	_ = json.Unmarshal(get(t, s, "Tasks('alice_7')?$select=status", "alice", auth).Body.Bytes(), &e)
	if len(e) != 2 || e["status"] != "Open" {
		t.Errorf("entity with $select=status: got %v, want the context and status Open", e)
	}
}

func TestOptionNames(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	auth := &bearer{token: "alice"}
	// OData 4.01 minimal conformance: case-insensitive names, optional $.
	for _, q := range []string{
		"$filter=status%20eq%20'Open'&$top=3",
		"filter=status%20eq%20'Open'&top=3",
		"$FILTER=status%20eq%20'Open'&$Top=3",
		"Filter=status%20eq%20'Open'&TOP=3&custom=ignored",
		"%24filter=status%20eq%20'Open'&%24top=3",
		"$filter=status+eq+'Open'&$top=3",
	} {
		f := decodeFeed(t, get(t, s, "Tasks?"+q, "alice", auth))
		if len(f.Value) != 3 {
			t.Errorf("?%s: got %d rows, want 3", q, len(f.Value))
		}
		for _, v := range f.Value {
			if v["status"] != "Open" {
				t.Errorf("?%s: row with status %v", q, v["status"])
			}
		}
	}
}

func TestUnsupportedAndBadRequests(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	auth := &bearer{token: "alice"}
	tests := []struct {
		query  string
		status int
		msg    string
	}{
		{"$apply=groupby((status))", 501, "$apply is not supported"},
		{"apply=groupby((status))", 501, "$apply is not supported"},
		{"$expand=originator", 501, "$expand is not supported"},
		{"$search=foo", 501, "$search is not supported"},
		{"$compute=priority%20add%201%20as%20p", 501, "$compute is not supported"},
		{"$filter=actions/any(a:a%20eq%20'Approve')", 501, "the lambda operator any is not supported"},
		{"$filter=priority%20add%201%20eq%202", 501, "arithmetic operator add"},
		{"$orderby=tolower(status)", 501, "$orderby item"},
		{"$select=originator/name", 501, "$select item"},
		{"$format=atom", 501, "$format=atom"},
		{"@p=1", 501, "parameter alias"},
		{"$filter=status%20eq%201", 400, "cannot compare property status (Edm.String) with a literal of type Edm.Int64"},
		{"$filter=taskStartDate%20gt%20'2026-01-01'", 400, "cannot compare property taskStartDate (Edm.DateTimeOffset)"},
		{"$filter=nope%20eq%201", 400, `Tasks has no property "nope"`},
		{"$top=-1", 400, "$top must be a non-negative integer"},
		{"$skip=x", 400, "$skip must be a non-negative integer"},
		{"$count=yes", 400, "$count must be true or false"},
		{"$select=nope", 400, `$select: Tasks has no property "nope"`},
		{"$orderby=priority%20sideways", 400, "asc or desc"},
		{"$top=1&top=2", 400, "more than once"},
		{"$frobnicate=1", 400, "unknown system query option"},
		{"$filter=%zz", 400, "not correctly escaped"},
	}
	for _, tt := range tests {
		w := get(t, s, "Tasks?"+tt.query, "alice", auth)
		if w.Code != tt.status {
			t.Errorf("?%s: status %d, want %d; body %s", tt.query, w.Code, tt.status, w.Body)
			continue
		}
		if msg := errorMessage(t, w); !strings.Contains(msg, tt.msg) {
			t.Errorf("?%s: message %q, want it to contain %q", tt.query, msg, tt.msg)
		}
	}
	r, _ := http.NewRequest(http.MethodPost, publicBase+"Tasks", nil)
	w := httptest.NewRecorder()
	s.ServeFeed(w, r, "Tasks", "alice", auth)
	if w.Code != 501 {
		t.Errorf("POST: status %d, want 501", w.Code)
	}
	for _, p := range []string{"$batch", "$crossjoin(Tasks,Workflows)", "$all"} {
		if w := get(t, s, p, "alice", auth); w.Code != 501 {
			t.Errorf("%s: status %d, want 501", p, w.Code)
		}
	}
	if got := u.calls.Load(); got != 0 {
		t.Errorf("invalid requests made %d upstream calls, want 0", got)
	}
}

func TestPerUserIsolation(t *testing.T) {
	for _, ttl := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprintf("cache=%v", ttl), func(t *testing.T) {
			u := newK2Upstream(t)
			s := newTestService(t, u, func(src *Config) { src.CacheTTL = ttl })
			owners := map[string]int{"alice": 53, "bob": 4, "carol": 0}
			// Twice each, interleaved, so a cache keyed wrongly would leak.
			for range 2 {
				for _, user := range []string{"alice", "bob", "carol"} {
					f := decodeFeed(t, get(t, s, target("Tasks", "$count", "true"), user, &bearer{token: user}))
					if *f.Count != owners[user] || len(f.Value) != owners[user] {
						t.Errorf("%s: count %d rows %d, want %d", user, *f.Count, len(f.Value), owners[user])
					}
					for _, v := range f.Value {
						if sn := v["serialNumber"].(string); !strings.HasPrefix(sn, user+"_") {
							t.Errorf("%s received %s's task %s", user, strings.Split(sn, "_")[0], sn)
						}
						if v["originator_username"] != "K2:DENALLIX\\"+user {
							t.Errorf("%s received a task of %v", user, v["originator_username"])
						}
					}
				}
			}
			if w := get(t, s, "Tasks('alice_1')", "bob", &bearer{token: "bob"}); w.Code != 404 {
				t.Errorf("bob reading alice's task: status %d, want 404", w.Code)
			}
			wantCalls := int64(7)
			if ttl > 0 {
				wantCalls = 3 // one per user; bob's entity read comes from bob's cache
			}
			if got := u.calls.Load(); got != wantCalls {
				t.Errorf("upstream calls: got %d, want %d", got, wantCalls)
			}
		})
	}
}

func TestAnonymousCallersAreNotCached(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, func(src *Config) { src.CacheTTL = time.Hour })
	for _, user := range []string{"alice", "bob"} {
		f := decodeFeed(t, get(t, s, target("Tasks", "$count", "true"), "", &bearer{token: user}))
		if want := len(u.tasks[user]); *f.Count != want {
			t.Errorf("%s without a cache key: count %d, want %d", user, *f.Count, want)
		}
	}
}

func TestCacheExpires(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, func(src *Config) { src.CacheTTL = time.Minute })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.cache.now = func() time.Time { return now }
	auth := &bearer{token: "alice"}
	get(t, s, "Tasks", "alice", auth)
	get(t, s, "Tasks", "alice", auth)
	now = now.Add(time.Minute)
	get(t, s, "Tasks", "alice", auth)
	if got := u.calls.Load(); got != 2 {
		t.Errorf("upstream calls: got %d, want 2 (one cached, one after expiry)", got)
	}
}

func TestUpstreamUnauthorizedRenewsOnce(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	auth := &bearer{token: "stale", renewed: "alice"}
	if f := decodeFeed(t, get(t, s, "Workflows", "alice", auth)); len(f.Value) != 2 {
		t.Errorf("after renewal: got %d workflows, want 2", len(f.Value))
	}
	if auth.renews != 1 {
		t.Errorf("renewals: got %d, want 1", auth.renews)
	}
	auth = &bearer{token: "stale", renewed: "still-stale"}
	w := get(t, s, "Workflows", "alice", auth)
	if w.Code != http.StatusUnauthorized || auth.renews != 1 {
		t.Errorf("renewal refused too: status %d after %d renewals, want 401 after 1", w.Code, auth.renews)
	}
}

func TestRowCap(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, func(src *Config) { src.MaxRows = 10 })
	w := get(t, s, "Tasks", "alice", &bearer{token: "alice"})
	if w.Code != http.StatusNotImplemented {
		t.Fatalf("status %d, want 501; body %s", w.Code, w.Body)
	}
	if msg, want := errorMessage(t, w), "Tasks has more than 10 rows upstream"; !strings.Contains(msg, want) {
		t.Errorf("message %q, want it to contain %q", msg, want)
	}
	if w := get(t, s, "Tasks", "bob", &bearer{token: "bob"}); w.Code != 200 {
		t.Errorf("under the cap: status %d, want 200", w.Code)
	}
}

func TestUpstreamPaging(t *testing.T) {
	tests := []struct {
		style  string
		paging Paging
	}{
		{"page", Paging{Style: "page", Param: "page", SizeParam: "pageSize", Size: 10}},
		{"offset", Paging{Style: "offset", Param: "offset", Size: 10}},
		{"next", Paging{Style: "next", Next: "links.next"}},
	}
	for _, tt := range tests {
		t.Run(tt.style, func(t *testing.T) {
			u := newK2Upstream(t)
			u.paging = tt.style
			s := newTestService(t, u, func(src *Config) {
				for i := range src.EntitySets {
					if src.EntitySets[i].Name == "Tasks" {
						src.EntitySets[i].Paging = tt.paging
					}
				}
			})
			keys, _ := follow(t, s, "Tasks", "alice", &bearer{token: "alice"})
			var want []string
			for _, task := range u.tasks["alice"] {
				want = append(want, task["serialNumber"].(string))
			}
			slices.Sort(want)
			if !slices.Equal(keys, want) {
				t.Errorf("got %d tasks %v…, want %d", len(keys), keys[:min(3, len(keys))], len(want))
			}
			if got := u.calls.Load(); got != 6 {
				t.Errorf("upstream calls: got %d, want 6 (53 rows in pages of 10)", got)
			}
		})
	}
}

func TestNextLinkMustStayOnTheSource(t *testing.T) {
	u := newK2Upstream(t)
	u.body = `{"tasks":[{"serialNumber":"x"}],"links":{"next":"https://evil.example.com/steal"}}`
	s := newTestService(t, u, func(src *Config) {
		src.EntitySets[1].Paging = Paging{Style: "next", Next: "links.next"}
	})
	w := get(t, s, "Tasks", "alice", &bearer{token: "alice"})
	if w.Code != http.StatusBadGateway || !strings.Contains(errorMessage(t, w), "leaves the source") {
		t.Errorf("got %d %s, want 502 naming the foreign next link", w.Code, w.Body)
	}
}

func TestInstances(t *testing.T) {
	u := newK2Upstream(t)
	// The preset reads GET instances.
	s := newTestService(t, u, nil)
	f := decodeFeed(t, get(t, s, target("Instances", "$filter", "workflowId eq 1", "$count", "true"), "alice", &bearer{token: "alice"}))
	if *f.Count != 2 || f.Value[0]["folio"] != "Folio 100" || f.Value[0]["startDate"] != "2026-02-01T08:00:00Z" || f.Value[0]["finishDate"] != nil {
		t.Errorf("Instances: got count %d, first %v", *f.Count, f.Value[0])
	}
	// The same entity set read per workflow at workflows/{id}/instances.
	s = newTestService(t, u, func(src *Config) { src.EntitySets, _ = Preset(PresetK2WorkflowPerWorkflow) })
	f = decodeFeed(t, get(t, s, target("Instances", "$orderby", "id", "$select", "id,workflowId,workflowName,workflowDisplayName,workflowCategory"), "alice", &bearer{token: "alice"}))
	var got []string
	for _, v := range f.Value {
		got = append(got, fmt.Sprintf("%v/%v/%v/%v/%v", v["id"], v["workflowId"], v["workflowName"], v["workflowDisplayName"], v["workflowCategory"]))
	}
	if want := []string{
		`100/1/HR\Leave Request/Leave Request/HR`, `101/1/HR\Leave Request/Leave Request/HR`, `200/2/Finance\Expense Claim/Expense Claim/Finance`,
	}; !slices.Equal(got, want) {
		t.Errorf("per-workflow instances: got %v, want %v", got, want)
	}
}

func TestUpstreamErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   int
		msg    string
	}{
		{"server error", 500, "", 502, "the upstream answered 500"},
		{"forbidden", 403, "", 401, "403"},
		{"not json", 0, "<html>", 502, "not the expected JSON"},
		{"no array", 0, `{"itemCount":0}`, 502, `has no "tasks" array`},
		{"items not an array", 0, `{"tasks":{"a":1}}`, 502, `"tasks" is not an array`},
		{"bad int", 0, `{"tasks":[{"serialNumber":"a","priority":"high"}]}`, 502, `upstream item 1: priority: "high" is not Edm.Int32`},
		{"int32 overflow", 0, `{"tasks":[{"serialNumber":"a","priority":3000000000}]}`, 502, "out of range for Edm.Int32"},
		{"bad date", 0, `{"tasks":[{"serialNumber":"a","taskStartDate":"yesterday"}]}`, 502, `"yesterday" is not Edm.DateTimeOffset`},
		{"truncated", 0, `{"tasks":[{"serialNumber":"a"},`, 502, "not the expected JSON"},
		{"null list", 0, `{"tasks":null}`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newK2Upstream(t)
			u.status, u.body = tt.status, tt.body
			s := newTestService(t, u, nil)
			w := get(t, s, "Tasks", "alice", &bearer{token: "alice"})
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.want, w.Body)
			}
			if tt.msg != "" {
				if msg := errorMessage(t, w); !strings.Contains(msg, tt.msg) {
					t.Errorf("message %q, want it to contain %q", msg, tt.msg)
				}
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		u := newK2Upstream(t)
		s := newTestService(t, u, nil)
		u.srv.Close()
		w := get(t, s, "Tasks", "alice", &bearer{token: "alice"})
		if w.Code != http.StatusBadGateway {
			t.Errorf("status %d, want 502", w.Code)
		}
		if strings.Contains(w.Body.String(), u.srv.URL) {
			t.Errorf("the error reveals the upstream URL: %s", w.Body)
		}
	})
}

func TestUpstreamValueForms(t *testing.T) {
	u := newK2Upstream(t)
	u.body = `{"ignored":{"deep":[1,{"x":[2]}]},"tasks":[
		{"serialNumber":"a","priority":"7","taskStartDate":"2026-01-02T03:04:05.123","sleepUntil":"/Date(1767225600000+0100)/","workflowID":2.0},
		{"serialNumber":"b","priority":"","taskStartDate":"2026-01-02","sleepUntil":"","workflowName":42,"instruction":{"text":"hi"}}
	],"itemCount":2}`
	s := newTestService(t, u, nil)
	f := decodeFeed(t, get(t, s, target("Tasks", "$select", "serialNumber,priority,taskStartDate,sleepUntil,workflowID,workflowName,instruction"), "alice", &bearer{token: "alice"}))
	want := []map[string]any{
		{"serialNumber": "a", "priority": float64(7), "taskStartDate": "2026-01-02T03:04:05.123Z", "sleepUntil": "2026-01-01T00:00:00Z", "workflowID": float64(2), "workflowName": nil, "instruction": nil},
		{"serialNumber": "b", "priority": nil, "taskStartDate": "2026-01-02T00:00:00Z", "sleepUntil": nil, "workflowID": nil, "workflowName": "42", "instruction": `{"text":"hi"}`},
	}
	for i, w := range want {
		for k, v := range w {
			if got := f.Value[i][k]; got != v {
				t.Errorf("row %d %s: got %#v, want %#v", i, k, got, v)
			}
		}
	}
}

func TestSwaggerExampleFixture(t *testing.T) {
	body := fixtures.Read(t, fixtures.K2TasksExample)
	u := newK2Upstream(t)
	u.body = string(body)
	s := newTestService(t, u, nil)
	f := decodeFeed(t, get(t, s, "Tasks", "alice", &bearer{token: "alice"}))
	if len(f.Value) != 1 {
		t.Fatalf("rows: got %d, want 1", len(f.Value))
	}
	want := map[string]any{
		"serialNumber": "4021_87", "status": "Open", "taskStartDate": "2026-02-03T08:15:30.25Z",
		"sleepUntil": "2026-02-04T00:00:00Z", "priority": float64(1), "workflowInstanceID": float64(4021),
		"formURL":        "https://k2.example.com/Runtime/Runtime/Form/Expense+Claim+Approval/?SN=4021_87",
		"originator_fqn": `K2:EXAMPLE\rjones`, "originator_displayName": "Riley Jones",
		"actions_batchable": "Approve, Decline", "actions_nonBatchable": "Rework", "actions_system": "Redirect, Sleep, Release",
		"instruction": "Check the receipts before approving.",
	}
	for k, v := range want {
		if got := f.Value[0][k]; got != v {
			t.Errorf("%s: got %#v, want %#v", k, got, v)
		}
	}
}

func TestNextLinkDropsCustomOptions(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, func(src *Config) { src.PageSize = 5 })
	f := decodeFeed(t, get(t, s, "Tasks?api_key=SECRET-KEY&$top=12&$filter=priority%20ge%200", "alice", &bearer{token: "alice"}))
	if strings.Contains(f.NextLink, "SECRET-KEY") || !strings.Contains(f.NextLink, "$top=12&$filter=priority%20ge%200&$skiptoken=") {
		t.Errorf("nextLink %q: want the system options kept byte for byte and the custom option dropped", f.NextLink)
	}
	keys, _ := follow(t, s, "Tasks?$top=12&$skip=3", "alice", &bearer{token: "alice"})
	if len(keys) != 12 || keys[0] != "alice_12" {
		t.Errorf("$top=12&$skip=3 over pages of 5: got %d keys from %v, want 12 from alice_12", len(keys), keys[:1])
	}
}

func TestNewErrors(t *testing.T) {
	sets, _ := Preset(PresetK2Workflow)
	tests := []struct {
		src  Config
		opts Options
		msg  string
	}{
		{Config{Name: "w", URL: "ftp://x/", EntitySets: sets}, Options{ErrorHandler: testErrorHandler}, "absolute http(s) URL"},
		{Config{Name: "w", URL: "relative/", EntitySets: sets}, Options{ErrorHandler: testErrorHandler}, "absolute http(s) URL"},
		{Config{Name: "w", URL: "https://k2/", EntitySets: sets}, Options{}, "ErrorHandler is required"},
		{Config{Name: "w", URL: "https://k2/"}, Options{ErrorHandler: testErrorHandler}, "entity_sets: at least one"},
	}
	for _, tt := range tests {
		_, err := New(tt.src, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("New(%+v): got %v, want an error containing %q", tt.src.URL, err, tt.msg)
		}
	}
	if _, err := Preset("nope"); err == nil || !strings.Contains(err.Error(), `unknown preset "nope"`) {
		t.Errorf("Preset(nope): got %v", err)
	}
}

func TestHeadRequest(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	r := httptest.NewRequest(http.MethodHead, publicBase+"Workflows", nil)
	w := httptest.NewRecorder()
	s.ServeFeed(w, r, "Workflows", "alice", &bearer{token: "alice"})
	if w.Code != 200 || w.Header().Get("OData-Version") != "4.0" {
		t.Errorf("HEAD: status %d OData-Version %q", w.Code, w.Header().Get("OData-Version"))
	}
}

func TestConcurrentUsersStayIsolated(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, func(src *Config) { src.CacheTTL = time.Hour; src.PageSize = 3 })
	users := []string{"alice", "bob", "carol", "alice", "bob", "carol"}
	type result struct {
		user string
		keys []string
	}
	results := make(chan result, len(users))
	var wg sync.WaitGroup
	for _, user := range users {
		wg.Go(func() {
			next := "Tasks?$top=9"
			var keys []string
			for next != "" {
				r := httptest.NewRequest(http.MethodGet, strings.Replace(publicBase, "https://bridge.example.com", "", 1)+strings.TrimPrefix(next, publicBase), nil)
				path := strings.TrimPrefix(r.URL.EscapedPath(), "/odata/workflow/")
				w := httptest.NewRecorder()
				s.ServeFeed(w, r, path, user, &bearer{token: user})
				var f feed
				if err := json.Unmarshal(w.Body.Bytes(), &f); err != nil || w.Code != 200 {
					keys = append(keys, fmt.Sprintf("error %d", w.Code))
					break
				}
				for _, v := range f.Value {
					keys = append(keys, v["serialNumber"].(string))
				}
				next = f.NextLink
			}
			results <- result{user, keys}
		})
	}
	wg.Wait()
	close(results)
	for r := range results {
		want := min(9, len(u.tasks[r.user]))
		if len(r.keys) != want {
			t.Errorf("%s: got %d tasks %v, want %d", r.user, len(r.keys), r.keys, want)
		}
		for _, k := range r.keys {
			if !strings.HasPrefix(k, r.user+"_") {
				t.Errorf("%s received %s", r.user, k)
			}
		}
	}
}

func TestBareArrayUpstream(t *testing.T) {
	u := newK2Upstream(t)
	u.body = `[{"serialNumber":"b","status":"Open"},{"serialNumber":"a","status":"Done"}]`
	s := newTestService(t, u, func(src *Config) { src.EntitySets[1].Items = "" })
	f := decodeFeed(t, get(t, s, target("Tasks", "$select", "serialNumber,status"), "alice", &bearer{token: "alice"}))
	if len(f.Value) != 2 || f.Value[0]["serialNumber"] != "a" || f.Value[1]["status"] != "Open" {
		t.Errorf("got %v, want a/Done then b/Open", f.Value)
	}
	if w := get(t, s, "%24metadata", "alice", nil); w.Code != 200 {
		t.Errorf("escaped $metadata: status %d, want 200", w.Code)
	}
}

func TestUpstreamIgnoresPaging(t *testing.T) {
	u := newK2Upstream(t) // answers every page with the whole list
	s := newTestService(t, u, func(src *Config) {
		src.EntitySets[1].Paging = Paging{Style: "page", Param: "page", Size: 10}
	})
	w := get(t, s, "Tasks", "alice", &bearer{token: "alice"})
	if w.Code != http.StatusBadGateway || !strings.Contains(errorMessage(t, w), "sent 53 rows for a page of 10") {
		t.Errorf("got %d %s, want 502 naming the page size", w.Code, w.Body)
	}
}

func TestSkipTokenFromAnotherSecret(t *testing.T) {
	u := newK2Upstream(t)
	a := newTestService(t, u, func(src *Config) { src.PageSize = 5 })
	sets, _ := Preset(PresetK2Workflow)
	b, err := New(Config{Name: "workflow", URL: u.srv.URL + upstreamBase, PublicBase: publicBase, EntitySets: sets, PageSize: 5},
		Options{Client: u.srv.Client(), Secret: []byte("another-secret"), ErrorHandler: testErrorHandler})
	if err != nil {
		t.Fatal(err)
	}
	f := decodeFeed(t, get(t, a, "Tasks", "alice", &bearer{token: "alice"}))
	if w := get(t, b, f.NextLink, "alice", &bearer{token: "alice"}); w.Code != http.StatusBadRequest {
		t.Errorf("a next link signed with another secret: status %d, want 400", w.Code)
	}
}

func TestUpstreamTimeout(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // never answers before the client gives up
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })
	sets, _ := Preset(PresetK2Workflow)
	client := up.Client()
	client.Timeout = 20 * time.Millisecond
	s, err := New(Config{Name: "workflow", URL: up.URL + "/", EntitySets: sets}, Options{Client: client, ErrorHandler: testErrorHandler})
	if err != nil {
		t.Fatal(err)
	}
	if w := get(t, s, "Tasks", "alice", nil); w.Code != http.StatusGatewayTimeout {
		t.Errorf("status %d, want 504; body %s", w.Code, w.Body)
	}
}

// failingAuth is an odata.Authorizer whose token store is down.
type failingAuth struct{}

var errStoreDown = errors.New("token store unavailable")

func (failingAuth) Authorize(context.Context, *http.Request, bool) error { return errStoreDown }

func TestAuthorizerErrorIsHandedOn(t *testing.T) {
	u := newK2Upstream(t)
	var got error
	sets, _ := Preset(PresetK2Workflow)
	s, err := New(Config{Name: "workflow", URL: u.srv.URL + upstreamBase, EntitySets: sets},
		Options{ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { got = err }})
	if err != nil {
		t.Fatal(err)
	}
	get(t, s, "Tasks", "alice", failingAuth{})
	if !errors.Is(got, errStoreDown) {
		t.Errorf("ErrorHandler got %v, want the odata.Authorizer's error", got)
	}
	if u.calls.Load() != 0 {
		t.Errorf("the upstream was called without credentials")
	}
}

func TestCacheRowBudget(t *testing.T) {
	u := newK2Upstream(t)
	// alice's 53 tasks fit a 56-row budget; adding bob's 4 pushes alice
	// out, and alice's return pushes bob out.
	s := newTestService(t, u, func(src *Config) { src.CacheTTL = time.Hour; src.CacheRows = 56 })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.cache.now = func() time.Time { return now }
	read := func(user string) {
		t.Helper()
		if w := get(t, s, "Tasks", user, &bearer{token: user}); w.Code != 200 {
			t.Fatalf("%s: status %d", user, w.Code)
		}
		now = now.Add(time.Second)
	}
	read("alice") // upstream 1, cached (53)
	read("alice") // cached
	read("bob")   // upstream 2; 53+4 > 56: alice goes
	read("bob")   // cached
	read("alice") // upstream 3; bob goes
	if got := u.calls.Load(); got != 3 {
		t.Errorf("upstream calls: got %d, want 3", got)
	}
	if s.cache.rows != 53 || len(s.cache.m) != 1 {
		t.Errorf("cache holds %d rows in %d entries, want 53 in 1", s.cache.rows, len(s.cache.m))
	}
	s.cache.maxRows = 50
	s.cache.put("carol", "Tasks", make([]row, 51))
	if _, ok := s.cache.get("carol", "Tasks"); ok {
		t.Error("a list larger than the budget was cached")
	}
}

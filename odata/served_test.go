package odata

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// servedBridge mounts a relay with one source s behind a real server, and hands
// the Served of every request to served (or aborted, when the relay aborted the
// response).
type servedBridge struct {
	*httptest.Server
	rl     *Relay
	served chan Served
}

// aborted is what servedBridge reports for a response the relay aborted.
var aborted = Served{Rows: -1}

func newServedBridge(t *testing.T, src Upstream) *servedBridge {
	t.Helper()
	src.Name, src.PublicBase = "s", publicBase
	rl, err := NewRelay([]Upstream{src}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	feed, _ := rl.Feed("s")
	b := &servedBridge{rl: rl, served: make(chan Served, 1)}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				b.served <- aborted
				panic(v)
			}
		}()
		path := strings.TrimPrefix(r.URL.EscapedPath(), "/odata/s/")
		user := r.Header.Get("X-Test-User")
		var auth Authorizer
		if user != "" {
			auth = userAuth(user)
		}
		b.served <- feed.ServeFeed(w, r, path, user, auth)
	}))
	t.Cleanup(func() { b.Close(); rl.Close() })
	return b
}

// get requests target as user and returns the body (decompressed), whether it came
// gzip-compressed, and what the relay returned.
func (b *servedBridge) get(t *testing.T, method, user, target string, gz bool) ([]byte, bool, Served) {
	t.Helper()
	req, err := http.NewRequest(method, b.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-User", user)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	res, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	var body []byte
	zipped := false
	if err == nil {
		body, err = io.ReadAll(res.Body)
		res.Body.Close()
		if zipped = res.Header.Get("Content-Encoding") == "gzip"; zipped && err == nil && len(body) > 0 {
			zr, zerr := gzip.NewReader(bytes.NewReader(body))
			if zerr != nil {
				t.Fatal(zerr)
			}
			body, err = io.ReadAll(zr)
		}
	}
	select {
	case s := <-b.served:
		if err != nil && s != aborted {
			t.Fatalf("%s %s: %v, and the relay did not abort", method, target, err)
		}
		return body, zipped, s
	case <-time.After(10 * time.Second):
		t.Fatalf("%s %s: the handler did not return", method, target)
	}
	return nil, false, Served{}
}

// pagesUpstream serves the pages of TestServedPages by path.
func pagesUpstream(t *testing.T) *upstream {
	return newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		base := u.base()
		page := func(ctype, body string) {
			w.Header().Set("Content-Type", ctype)
			io.WriteString(w, body)
		}
		switch strings.TrimPrefix(r.URL.Path, "/svc/") {
		case "v4":
			w.Header()["OData-Version"] = []string{"4.0"}
			page("application/json;odata.metadata=minimal", fmt.Sprintf(
				`{"@odata.context":"%[1]s$metadata#People","value":[{"Name":"a","Orders@odata.nextLink":"%[1]sPeople('a')/Orders?$skiptoken=1"},{"Name":"b \"value\":[{}]"},{"Name":"c"}],"@odata.nextLink":"%[1]sPeople?$skiptoken=3"}`, base))
		case "v4last":
			page("application/json", `{"@odata.context":"`+base+`$metadata#People","value":[{"Name":"d"}]}`)
		case "v3":
			page("application/json;odata=minimalmetadata", `{"odata.metadata":"`+base+`$metadata#People","value":[{"Name":"a"},{"Name":"b"}],"odata.nextLink":"People?$skiptoken=2"}`)
		case "v2":
			page("application/json", `{"d":{"results":[{"__metadata":{"uri":"`+base+`People('a')"},"Orders":{"results":[],"__next":"x"}}],"__next":"`+base+`People?$skiptoken=1"}}`)
		case "atom":
			page("application/atom+xml;type=feed", `<?xml version="1.0" encoding="utf-8"?><feed xml:base="`+base+`" xmlns="http://www.w3.org/2005/Atom" xmlns:m="m"><entry><link rel="related"><m:inline><feed><entry/><link rel="next" href="x"/></feed></m:inline></link></entry><entry/><entry/><link rel="next" href="`+base+`People?$skiptoken=3"/></feed>`)
		case "atomlast":
			page("application/atom+xml;type=feed", `<feed xmlns="http://www.w3.org/2005/Atom"><entry/></feed>`)
		case "entity":
			page("application/json", `{"@odata.context":"`+base+`$metadata#People/$entity","Name":"a","value":"v"}`)
		case "":
			page("application/json", `{"@odata.context":"`+base+`$metadata","value":[{"name":"People","url":"People"}]}`)
		case "$metadata":
			page("application/xml", `<edmx:Edmx Version="4.0"/>`)
		case "People/$count":
			page("text/plain", "42")
		case "Photo/$value":
			page("image/png", "\x89PNG{\"value\":[{}]}")
		case "missing":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"404","message":"no","value":[{}]}}`)
		default:
			http.NotFound(w, r)
		}
	})
}

// TestServedPages: a source that counts rows reads them and the next link; any other
// reads only the next link, from the ends of the page.
func TestServedPages(t *testing.T) {
	for _, count := range []bool{true, false} {
		t.Run(fmt.Sprintf("count_rows=%v", count), func(t *testing.T) { testServedPages(t, count) })
	}
}

func testServedPages(t *testing.T, count bool) {
	u := pagesUpstream(t)
	b := newServedBridge(t, Upstream{URL: u.base(), CountRows: count})
	tests := []struct {
		path string
		want Served
	}{
		{"v4", Served{Read: true, Rows: 3, Next: true}},
		{"v4last", Served{Read: true, Rows: 1}},
		{"v3", Served{Read: true, Rows: 2, Next: true}},
		{"v2", Served{Read: true, Rows: 1, Next: true}},
		{"atom", Served{Read: true, Rows: 3, Next: true}},
		{"atomlast", Served{Read: true, Rows: 1}},
		{"entity", Served{Read: true}},
		// Not pages: nothing is read of them.
		{"", Served{}},
		{"$metadata", Served{}},
		{"People/$count", Served{}},
		{"Photo/$value", Served{}},
		{"missing", Served{}},
	}
	for _, tt := range tests {
		for _, gz := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/gzip=%v", tt.path, gz), func(t *testing.T) {
				body, zipped, got := b.get(t, "GET", "", "/odata/s/"+tt.path, gz)
				want := tt.want
				if !count && want.Read {
					want.Rows = -1
				}
				if got != want {
					t.Errorf("served %+v, want %+v", got, want)
				}
				if rewritable := tt.path != "People/$count" && tt.path != "Photo/$value"; zipped != (gz && rewritable) {
					t.Errorf("gzip-compressed %v, want %v", zipped, gz && rewritable)
				}
				// What the client got is what was read: the reference decode agrees.
				if tt.want.Read {
					if ref := refServed(body); ref != tt.want {
						t.Errorf("the client's body decodes to %+v, want %+v: %s", ref, tt.want, body)
					}
				}
			})
		}
	}
	t.Run("HEAD", func(t *testing.T) {
		if _, _, got := b.get(t, "HEAD", "", "/odata/s/v4", false); got != (Served{}) {
			t.Errorf("served %+v, want nothing read", got)
		}
	})
}

// TestServedFromMemory checks that an answer the relay holds (a repeat, a page read
// ahead, a cached $metadata) reports what was read when it was relayed.
func TestServedFromMemory(t *testing.T) {
	up := newPagedUpstream(t, "v4", 2, nil)
	b := newServedBridge(t, Upstream{URL: up.base(), RepeatTTL: time.Minute, ReadAhead: 1, CountRows: true})
	first := Served{Read: true, Rows: 1, Next: true}
	for i, gz := range []bool{false, true, false} {
		_, zipped, got := b.get(t, "GET", "alice", "/odata/s/Items?$skiptoken=0", gz)
		if got != first {
			t.Errorf("request %d (gzip %v): served %+v, want %+v", i, gz, got, first)
		}
		if zipped != gz {
			t.Errorf("request %d: gzip-compressed %v, want %v", i, zipped, gz)
		}
	}
	if got := up.requests(0); len(got) != 1 {
		t.Fatalf("the first page reached the upstream %d times, want once: the repeats were not kept", len(got))
	}
	// The next pages were read ahead, and come from memory too.
	for page, want := range []Served{1: first, 2: {Read: true, Rows: 1}} {
		if page == 0 {
			continue
		}
		waitFor(t, func() bool { return len(up.requests(page)) >= 1 })
		_, _, got := b.get(t, "GET", "alice", fmt.Sprintf("/odata/s/Items?$skiptoken=%d", page), true)
		if got != want {
			t.Errorf("page %d: served %+v, want %+v", page, got, want)
		}
		if n := len(up.requests(page)); n != 1 {
			t.Errorf("page %d reached the upstream %d times, want once", page, n)
		}
	}

	// A cached $metadata reports what its first answer did: nothing read.
	u := pagesUpstream(t)
	mb := newServedBridge(t, Upstream{URL: u.base(), CacheMetadata: time.Minute})
	for i := range 2 {
		body, _, got := mb.get(t, "GET", "alice", "/odata/s/$metadata", i == 1)
		if got != (Served{}) || string(body) != `<edmx:Edmx Version="4.0"/>` {
			t.Errorf("$metadata %d: served %+v, body %s", i, got, body)
		}
	}
	if got := u.hits.Load(); got != 1 {
		t.Errorf("$metadata reached the upstream %d times, want once", got)
	}
}

func TestServedAbortedStream(t *testing.T) {
	// Each upstream sends what looks like a whole page, then breaks: the relay must
	// not report it read.
	for _, tc := range []struct {
		name string
		send func(w http.ResponseWriter)
	}{
		{"short of its length", func(w http.ResponseWriter) {
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, `{"value":[{"a":1},{"a":2}]}`)
		}},
		{"broken mid-body", func(w http.ResponseWriter) {
			io.WriteString(w, `{"value":[{"a":1},`)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				tc.send(w)
			})
			for _, gz := range []bool{false, true} {
				b := newServedBridge(t, Upstream{URL: u.base()})
				if _, _, got := b.get(t, "GET", "", "/odata/s/Items", gz); got != aborted {
					t.Errorf("gzip %v: served %+v, want the response aborted", gz, got)
				}
				// Outside a server the relay returns instead of aborting: nothing read.
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", "/odata/s/Items", nil)
				if gz {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				if got := b.rl.Serve(rec, req, "s", "Items", "", nil); got != (Served{}) {
					t.Errorf("gzip %v: Serve returned %+v for a broken stream, want nothing read", gz, got)
				}
			}
		})
	}
}

func TestServedErrors(t *testing.T) {
	b := newServedBridge(t, Upstream{URL: "http://127.0.0.1:1/svc/"})
	for _, target := range []string{"/odata/s/Items", "/odata/s/../x"} {
		if _, _, got := b.get(t, "GET", "", target, false); got != (Served{}) {
			t.Errorf("%s: served %+v, want nothing read", target, got)
		}
	}
	rec := httptest.NewRecorder()
	if got := b.rl.Serve(rec, httptest.NewRequest("GET", "/odata/x/Items", nil), "x", "Items", "", nil); got != (Served{}) || rec.Code != http.StatusNotFound {
		t.Errorf("unknown source: served %+v, status %d", got, rec.Code)
	}
}

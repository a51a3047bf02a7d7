package odata

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const publicBase = "https://bridge.example/odata/s/"

// selfBase as a Source.PublicBase makes newBridge use the bridge server's own URL.
const selfBase = "self"

// upstream is an httptest OData service under /svc/ that records what reached it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	hits atomic.Int64
}

func newUpstream(t *testing.T, h func(u *upstream, w http.ResponseWriter, r *http.Request)) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		u.mu.Unlock()
		h(u, w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) base() string { return u.URL + "/svc/" }

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return nil
	}
	return u.reqs[len(u.reqs)-1]
}

// bridge is a front server that mounts the relay the way connector does: /odata/{source}/{path}.
type bridge struct {
	*httptest.Server
	rl     *Relay
	client *http.Client
	errs   chan error
}

func newBridge(t *testing.T, src Upstream, opts Options, auth Authorizer) *bridge {
	t.Helper()
	if src.Name == "" {
		src.Name = "s"
	}
	if src.PublicBase == "" {
		src.PublicBase = publicBase
	}
	b := &bridge{errs: make(chan error, 16)}
	if opts.ErrorHandler == nil {
		opts.ErrorHandler = func(w http.ResponseWriter, r *http.Request, version string, err error) {
			select {
			case b.errs <- err:
			default:
			}
			defaultErrorHandler(w, r, version, err)
		}
	}
	var rl *Relay
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/odata/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		name, path, _ := strings.Cut(rest, "/")
		user := r.Header.Get("X-Test-User")
		r = r.WithContext(context.WithValue(r.Context(), testUserKey{}, user))
		rl.Serve(w, r, name, path, user, auth)
	}))
	if src.PublicBase == selfBase {
		src.PublicBase = "http://" + b.Listener.Addr().String() + "/odata/" + src.Name + "/"
	}
	rl, err := NewRelay([]Upstream{src}, opts)
	if err != nil {
		t.Fatalf("NewRelay: %v", err)
	}
	b.rl = rl
	b.Start()
	t.Cleanup(b.Close)
	b.client = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(b.client.CloseIdleConnections)
	return b
}

// get sends a request with a raw request-target, so nothing normalizes the path.
func (b *bridge) do(t *testing.T, method, target string, hdr http.Header, body io.Reader) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, b.URL+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = target // sent as is on the request line
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := b.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	return res, got, err
}

func writeJSON(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
	w.Header()["OData-Version"] = []string{"4.0"}
	io.WriteString(w, body)
}

// staticAuth is an Authorizer that sets a bearer token and counts renewals.
type staticAuth struct {
	renewals atomic.Int64
	err      error
}

func (a *staticAuth) Authorize(_ context.Context, out *http.Request, renew bool) error {
	if a.err != nil {
		return a.err
	}
	tok := "upstream-token-1"
	if renew {
		a.renewals.Add(1)
		tok = "upstream-token-2"
	}
	out.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

func TestRelayCases(t *testing.T) {
	type check func(t *testing.T, u *upstream, res *http.Response, body []byte)
	tests := []struct {
		name    string
		method  string
		target  string // after the bridge host
		hdr     http.Header
		handler func(u *upstream, w http.ResponseWriter, r *http.Request)
		status  int
		check   check
	}{
		{
			name:   "absolute next link and context rewritten",
			target: "/odata/s/People",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, fmt.Sprintf(`{"@odata.context":"%s$metadata#People","value":[],"@odata.nextLink":"%sPeople?$skiptoken=5"}`, u.base(), u.base()))
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				want := `{"@odata.context":"` + publicBase + `$metadata#People","value":[],"@odata.nextLink":"` + publicBase + `People?$skiptoken=5"}`
				if string(body) != want {
					t.Errorf("body = %s, want %s", body, want)
				}
			},
		},
		{
			name:   "relative next link kept",
			target: "/odata/s/People",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, `{"@odata.context":"$metadata#People","value":[],"@odata.nextLink":"People?$skiptoken=5"}`)
			},
			status: 200,
			check:  bodyIs(`{"@odata.context":"$metadata#People","value":[],"@odata.nextLink":"People?$skiptoken=5"}`),
		},
		{
			name:   "4.01 unprefixed control information and expanded next links",
			target: "/odata/s/People",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, fmt.Sprintf(`{"@context":"%[1]s$metadata#People","value":[{"@id":"%[1]sPeople(1)","Friends@nextLink":"%[1]sPeople(1)/Friends?$skip=2","Trips@odata.nextLink":"%[1]sPeople(1)/Trips?$skip=2"}],"@nextLink":"%[1]sPeople?$skip=1"}`, u.base()))
			},
			status: 200,
			check:  bodyIs(fmt.Sprintf(`{"@context":"%[1]s$metadata#People","value":[{"@id":"%[1]sPeople(1)","Friends@nextLink":"%[1]sPeople(1)/Friends?$skip=2","Trips@odata.nextLink":"%[1]sPeople(1)/Trips?$skip=2"}],"@nextLink":"%[1]sPeople?$skip=1"}`, publicBase)),
		},
		{
			name:   "metadata=none passes unchanged",
			target: "/odata/s/People",
			hdr:    http.Header{"Accept": {"application/json;odata.metadata=none"}},
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get("Accept"); got != "application/json;odata.metadata=none" {
					http.Error(w, "accept "+got, 400)
					return
				}
				writeJSON(w, `{"value":[{"ID":1}]}`)
			},
			status: 200,
			check:  bodyIs(`{"value":[{"ID":1}]}`),
		},
		{
			name:   "Int64, Decimal and IEEE754Compatible strings byte-identical",
			target: "/odata/s/Numbers",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, `{"value":[{"I":9223372036854775807,"D":123456789012345678901234567890.000000001,"S":"9007199254740993","E":1.0E+308}]}`)
			},
			status: 200,
			check:  bodyIs(`{"value":[{"I":9223372036854775807,"D":123456789012345678901234567890.000000001,"S":"9007199254740993","E":1.0E+308}]}`),
		},
		{
			name:   "v2 verbose JSON with escaped slashes and Date",
			target: "/odata/s/Employees('1')",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				esc := strings.ReplaceAll(u.base(), "/", `\/`)
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("DataServiceVersion", "2.0;")
				fmt.Fprintf(w, `{"d":{"__metadata":{"uri":"%sEmployees('1')","media_src":"Employees('1')/$value"},"EntryDate":"\/Date(915148800000)\/","ne":{"__deferred":{"uri":"%sEmployees('1')/ne"}}}}`, esc, esc)
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				esc := strings.ReplaceAll(publicBase, "/", `\/`)
				want := fmt.Sprintf(`{"d":{"__metadata":{"uri":"%sEmployees('1')","media_src":"Employees('1')/$value"},"EntryDate":"\/Date(915148800000)\/","ne":{"__deferred":{"uri":"%sEmployees('1')/ne"}}}}`, esc, esc)
				if string(body) != want {
					t.Errorf("body = %s, want %s", body, want)
				}
				if got := res.Header.Values("DataServiceVersion"); len(got) != 1 || got[0] != "2.0;" {
					t.Errorf("DataServiceVersion = %q, want [2.0;]", got)
				}
			},
		},
		{
			name:   "Atom with xml:base",
			target: "/odata/s/Rooms",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/atom+xml;type=feed;charset=utf-8")
				fmt.Fprintf(w, `<feed xml:base="%[1]s" xmlns="http://www.w3.org/2005/Atom"><id>%[1]sRooms</id><link rel="next" href="%[1]sRooms?$skiptoken=97"/><link rel="self" href="Rooms"/></feed>`, u.base())
			},
			status: 200,
			check:  bodyIs(fmt.Sprintf(`<feed xml:base="%[1]s" xmlns="http://www.w3.org/2005/Atom"><id>%[1]sRooms</id><link rel="next" href="%[1]sRooms?$skiptoken=97"/><link rel="self" href="Rooms"/></feed>`, publicBase)),
		},
		{
			name:   "Location, Content-Location, OData-EntityId and Link rewritten",
			target: "/odata/s/People(1)",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", u.base()+"People(1)")
				w.Header().Set("Content-Location", u.base()+"People(1)")
				w.Header()["OData-EntityId"] = []string{u.base() + "People(1)"}
				w.Header().Set("Link", "<"+u.base()+"People?$skip=2>; rel=\"next\"")
				w.Header().Set("Set-Cookie", "upstream=1")
				writeJSON(w, `{}`)
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				for k, want := range map[string]string{
					"Location":         publicBase + "People(1)",
					"Content-Location": publicBase + "People(1)",
					"Odata-Entityid":   publicBase + "People(1)",
					"Link":             "<" + publicBase + "People?$skip=2>; rel=\"next\"",
					"Set-Cookie":       "",
				} {
					if got := res.Header.Get(k); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
			},
		},
		{
			name:   "Prefer forwarded, Preference-Applied and OData-Version once",
			target: "/odata/s/People",
			hdr:    http.Header{"Prefer": {"odata.maxpagesize=2"}, "Odata-Maxversion": {"4.0"}, "If-None-Match": {`W/"1"`}},
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Prefer") != "odata.maxpagesize=2" || r.Header.Get("OData-MaxVersion") != "4.0" || r.Header.Get("If-None-Match") != `W/"1"` {
					http.Error(w, "headers not forwarded", 400)
					return
				}
				w.Header().Set("Preference-Applied", "odata.maxpagesize=2")
				w.Header().Set("ETag", `W/"2"`)
				writeJSON(w, `{"value":[]}`)
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				if got := res.Header.Get("Preference-Applied"); got != "odata.maxpagesize=2" {
					t.Errorf("Preference-Applied = %q", got)
				}
				if got := res.Header.Get("ETag"); got != `W/"2"` {
					t.Errorf("ETag = %q", got)
				}
				if got := res.Header.Values("OData-Version"); len(got) != 1 || got[0] != "4.0" {
					t.Errorf("OData-Version = %q, want exactly [4.0]", got)
				}
			},
		},
		{
			name:   "raw query byte for byte less api_key",
			target: "/odata/s/People?$filter=Name%20eq%20'a+b'&api_key=SECRET&$FILTER=x%2By&$top=1&api%5Fkey=SECRET2",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, `{}`)
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				if got, want := u.last().URL.RawQuery, "$filter=Name%20eq%20'a+b'&$FILTER=x%2By&$top=1"; got != want {
					t.Errorf("upstream query = %q, want %q", got, want)
				}
			},
		},
		{
			name:   "%2F key survives",
			target: "/odata/s/Items('a%2Fb')/Name",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, `{}`)
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				if got, want := u.last().URL.EscapedPath(), "/svc/Items('a%2Fb')/Name"; got != want {
					t.Errorf("upstream path = %q, want %q", got, want)
				}
			},
		},
		{
			name:   "caller credentials never go upstream",
			target: "/odata/s/People?api_key=K",
			hdr:    http.Header{"Authorization": {"Bearer bridge-token"}, "Cookie": {"bridge_session=1"}, "X-Feed-Key": {"k"}},
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, `{}`)
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				r := u.last()
				if got := r.Header.Get("Authorization"); got != "Bearer upstream-token-1" {
					t.Errorf("upstream Authorization = %q, want the Authorizer's", got)
				}
				for _, k := range []string{"Cookie", "X-Feed-Key", "X-Forwarded-For", "Accept-Encoding"} {
					if got := r.Header.Get(k); got != "" {
						t.Errorf("upstream %s = %q, want none", k, got)
					}
				}
				if r.URL.RawQuery != "" {
					t.Errorf("upstream query = %q, want empty", r.URL.RawQuery)
				}
			},
		},
		{
			name:   "gzip toward a client that accepts it",
			target: "/odata/s/People",
			hdr:    http.Header{"Accept-Encoding": {"gzip, deflate"}},
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, `{"@odata.context":"`+u.base()+`$metadata#People","value":[]}`)
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				if got := res.Header.Get("Content-Encoding"); got != "gzip" {
					t.Fatalf("Content-Encoding = %q, want gzip", got)
				}
				if got := res.Header.Get("Vary"); !strings.Contains(got, "Accept-Encoding") {
					t.Errorf("Vary = %q, want Accept-Encoding", got)
				}
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				plain, err := io.ReadAll(zr)
				if err != nil {
					t.Fatal(err)
				}
				if want := `{"@odata.context":"` + publicBase + `$metadata#People","value":[]}`; string(plain) != want {
					t.Errorf("body = %s, want %s", plain, want)
				}
			},
		},
		{
			name:   "a gzip body from a misbehaving upstream is decoded and rewritten",
			target: "/odata/s/People",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(w)
				io.WriteString(zw, `{"@odata.context":"`+u.base()+`$metadata"}`)
				zw.Close()
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				if got := res.Header.Get("Content-Encoding"); got != "" {
					t.Errorf("Content-Encoding = %q, want none", got)
				}
				if want := `{"@odata.context":"` + publicBase + `$metadata"}`; string(body) != want {
					t.Errorf("body = %s, want %s", body, want)
				}
			},
		},
		{
			name:   "gzip off when refused",
			target: "/odata/s/People",
			hdr:    http.Header{"Accept-Encoding": {"gzip;q=0, identity"}},
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				writeJSON(w, `{"value":[]}`)
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				if got := res.Header.Get("Content-Encoding"); got != "" {
					t.Errorf("Content-Encoding = %q, want none", got)
				}
				if got := res.Header.Get("Vary"); !strings.Contains(got, "Accept-Encoding") {
					t.Errorf("Vary = %q, want Accept-Encoding", got)
				}
				if string(body) != `{"value":[]}` {
					t.Errorf("body = %s", body)
				}
			},
		},
		{
			name:   "$value passthrough with Content-Length, never gzip",
			target: "/odata/s/Photos(1)/$value",
			hdr:    http.Header{"Accept-Encoding": {"gzip"}},
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json") // even a JSON-typed media body is not touched
				w.Header().Set("Content-Length", "20")
				io.WriteString(w, `"`+strings.Repeat("x", 18)+`"`)
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				if res.ContentLength != 20 || res.Header.Get("Content-Encoding") != "" {
					t.Errorf("Content-Length %d, Content-Encoding %q; want 20 and none", res.ContentLength, res.Header.Get("Content-Encoding"))
				}
			},
		},
		{
			name:   "$count passthrough",
			target: "/odata/s/People/$count",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", "2")
				io.WriteString(w, "42")
			},
			status: 200,
			check: func(t *testing.T, u *upstream, res *http.Response, body []byte) {
				if string(body) != "42" || res.ContentLength != 2 {
					t.Errorf("body %q, Content-Length %d; want 42 and 2", body, res.ContentLength)
				}
			},
		},
		{
			name:   "upstream error body relayed as it is",
			target: "/odata/s/Bad",
			handler: func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(400)
				io.WriteString(w, `{"error":{"code":"BadRequest","message":"no"}}`)
			},
			status: 400,
			check:  bodyIs(`{"error":{"code":"BadRequest","message":"no"}}`),
		},
		{
			name:    "POST without $batch is 501",
			method:  "POST",
			target:  "/odata/s/People",
			handler: nil,
			status:  501,
			check:   bodyIs(`{"error":{"code":"NotImplemented","message":"POST is relayed only for $batch on a source that allows it"}}`),
		},
		{
			name:    "DELETE is 501",
			method:  "DELETE",
			target:  "/odata/s/People(1)",
			handler: nil,
			status:  501,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.handler
			if h == nil {
				h = func(u *upstream, w http.ResponseWriter, r *http.Request) {
					t.Errorf("upstream reached: %s %s", r.Method, r.URL)
				}
			}
			u := newUpstream(t, h)
			b := newBridge(t, Upstream{URL: u.base()}, Options{}, &staticAuth{})
			method := tt.method
			if method == "" {
				method = "GET"
			}
			res, body, err := b.do(t, method, tt.target, tt.hdr, nil)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			if tt.check != nil {
				tt.check(t, u, res, body)
			}
		})
	}
}

func bodyIs(want string) func(t *testing.T, u *upstream, res *http.Response, body []byte) {
	return func(t *testing.T, u *upstream, res *http.Response, body []byte) {
		t.Helper()
		if string(body) != want {
			t.Errorf("body = %s, want %s", body, want)
		}
	}
}

func TestRelayPathEscapes(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) { writeJSON(w, `{}`) })
	b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
	for _, target := range []string{
		"/odata/s/../admin",
		"/odata/s/People/../../admin",
		"/odata/s/%2e%2e/admin",
		"/odata/s/%2E%2E%2Fadmin",
		"/odata/s/..%2Fadmin",
		"/odata/s/%252e%252e/admin",
		"/odata/s/.",
		"/odata/s//evil.example/x",
		"/odata/s/%2F%2Fevil.example/x",
		"/odata/s/http://evil.example/x",
		"/odata/s/http:%2F%2Fevil.example/x",
		"/odata/s/People%5C..%5Cadmin",
		`/odata/s/People\admin`,
		"/odata/s/People%00",
		"/odata/s/..;x/admin",
		"/odata/s/.../admin",
		"/odata/s/..%20/admin",
		"/odata/s/%c0%ae%c0%ae/admin",
		"/odata/s/%EF%BC%8E%EF%BC%8E/admin",
		"/odata/s/%E2%80%A5/admin",
		"/odata/s/a%2F%2Fevil.example/x",
	} {
		t.Run(target, func(t *testing.T) {
			before := u.hits.Load()
			res, body, err := b.do(t, "GET", target, nil, nil)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("status = %d, want 400; body %s", res.StatusCode, body)
			}
			if got := u.hits.Load() - before; got != 0 {
				t.Errorf("upstream saw %d requests, want 0", got)
			}
			select {
			case err := <-b.errs:
				if !errors.Is(err, ErrBadRequest) {
					t.Errorf("error = %v, want ErrBadRequest", err)
				}
			default:
				t.Errorf("the relay reported no error")
			}
		})
	}
}

func TestRelayUnknownSource(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) { t.Error("upstream reached") })
	b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
	res, _, err := b.do(t, "GET", "/odata/nope/People", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 404 {
		t.Errorf("status = %d, want 404", res.StatusCode)
	}
	if got := <-b.errs; !errors.Is(got, ErrUnknownSource) {
		t.Errorf("error = %v, want ErrUnknownSource", got)
	}
}

func TestRelayUpstream401RenewsOnce(t *testing.T) {
	tests := []struct {
		name         string
		acceptSecond bool
		status       int
		renewals     int64
		hits         int64
	}{
		{"renewal succeeds", true, 200, 1, 2},
		{"renewal refused too", false, 401, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") == "Bearer upstream-token-2" && tt.acceptSecond {
					writeJSON(w, `{"value":[]}`)
					return
				}
				w.Header().Set("WWW-Authenticate", `Bearer realm="upstream"`)
				http.Error(w, "expired", http.StatusUnauthorized)
			})
			auth := &staticAuth{}
			reg := prometheus.NewRegistry()
			b := newBridge(t, Upstream{URL: u.base()}, Options{Registerer: reg}, auth)
			res, body, err := b.do(t, "GET", "/odata/s/People", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status {
				t.Errorf("status = %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			if got := auth.renewals.Load(); got != tt.renewals {
				t.Errorf("renewals = %d, want %d", got, tt.renewals)
			}
			if got := u.hits.Load(); got != tt.hits {
				t.Errorf("upstream hits = %d, want %d", got, tt.hits)
			}
			if got := counterValue(t, b.rl.metrics.retries.WithLabelValues("s")); got != 1 {
				t.Errorf("retries metric = %v, want 1", got)
			}
			if !tt.acceptSecond {
				if got := <-b.errs; !errors.Is(got, ErrUpstreamUnauthorized) {
					t.Errorf("error = %v, want ErrUpstreamUnauthorized", got)
				}
				if got := res.Header.Get("WWW-Authenticate"); got != "" {
					t.Errorf("upstream challenge leaked: %q", got)
				}
			}
		})
	}
}

func TestRelayAuthorizerErrorReachesErrorHandler(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) { t.Error("upstream reached") })
	errStore := errors.New("token store down")
	b := newBridge(t, Upstream{URL: u.base()}, Options{}, &staticAuth{err: errStore})
	if _, _, err := b.do(t, "GET", "/odata/s/People", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := <-b.errs; !errors.Is(got, errStore) {
		t.Errorf("error = %v, want the Authorizer's", got)
	}
}

func TestRelayUpstreamUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	b := newBridge(t, Upstream{URL: "http://" + addr + "/svc/", Version: "3.0"}, Options{}, nil)
	res, body, err := b.do(t, "GET", "/odata/s/People", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("status = %d, want 502", res.StatusCode)
	}
	if want := `{"odata.error":{"code":"UpstreamUnreachable","message":{"lang":"en-US","value":"The upstream service could not be reached."}}}`; string(body) != want {
		t.Errorf("body = %s, want %s", body, want)
	}
	if got := <-b.errs; !errors.Is(got, ErrUpstreamUnreachable) {
		t.Errorf("error = %v, want ErrUpstreamUnreachable", got)
	}
}

func TestRelayHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	b := newBridge(t, Upstream{URL: u.base(), HeaderTimeout: 50 * time.Millisecond}, Options{}, nil)
	res, _, err := b.do(t, "GET", "/odata/s/Slow", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("status = %d, want 504", res.StatusCode)
	}
	if got := <-b.errs; !errors.Is(got, ErrUpstreamTimeout) {
		t.Errorf("error = %v, want ErrUpstreamTimeout", got)
	}
}

func TestRelaySlowBodyIsNotATimeout(t *testing.T) {
	// The header timeout bounds the wait for headers only: a body may stream for longer.
	// The upstream finishes its body only after the client holds the headers and the
	// timeout has passed once more, so the body outlives the timer whatever the load.
	const timeout = time.Second
	gotHeaders := make(chan struct{})
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"value":[`)
		w.(http.Flusher).Flush()
		select {
		case <-gotHeaders:
		case <-r.Context().Done():
			return
		}
		time.Sleep(timeout + timeout/5)
		io.WriteString(w, `]}`)
	})
	b := newBridge(t, Upstream{URL: u.base(), HeaderTimeout: timeout}, Options{}, nil)
	res, err := b.client.Get(b.URL + "/odata/s/Slow")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	close(gotHeaders)
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 || string(body) != `{"value":[]}` {
		t.Errorf("got %d %s %v, want 200 {\"value\":[]}", res.StatusCode, body, err)
	}
}

func TestRelayUpstreamDropMidBodyAborts(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", "100000")
				io.WriteString(w, `{"value":[{"ID":1},`)
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler) // the upstream dies mid-body
			})
			reg := prometheus.NewRegistry()
			b := newBridge(t, Upstream{URL: u.base()}, Options{Registerer: reg}, nil)
			hdr := http.Header{}
			if gz {
				hdr.Set("Accept-Encoding", "gzip")
			}
			res, body, err := b.do(t, "GET", "/odata/s/People", hdr, nil)
			if err == nil {
				t.Fatalf("read the whole body without error (%d %q); want a truncated stream", res.StatusCode, body)
			}
			if bytes.HasSuffix(body, []byte("]}")) {
				t.Errorf("body ends cleanly: %q", body)
			}
			if got := counterValue(t, b.rl.metrics.aborts.WithLabelValues("s")); got != 1 {
				t.Errorf("aborted metric = %v, want 1", got)
			}
		})
	}
}

func TestRelayBatch(t *testing.T) {
	const payload = "--batch_1\r\nContent-Type: application/http\r\n\r\nGET People HTTP/1.1\r\n\r\n--batch_1--\r\n"
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		if r.Method != "POST" || string(got) != payload || r.Header.Get("Content-Type") != "multipart/mixed;boundary=batch_1" {
			http.Error(w, "bad batch", 400)
			return
		}
		if r.Header.Get("Authorization") != "Bearer upstream-token-2" {
			http.Error(w, "expired", http.StatusUnauthorized) // the retry must replay the body
			return
		}
		w.Header().Set("Content-Type", "multipart/mixed;boundary=b2")
		fmt.Fprintf(w, "--b2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{\"@odata.context\":\"%s$metadata#People\"}\r\n--b2--\r\n", u.base())
	})
	b := newBridge(t, Upstream{URL: u.base(), Batch: true}, Options{}, &staticAuth{})
	res, body, err := b.do(t, "POST", "/odata/s/$batch", http.Header{"Content-Type": {"multipart/mixed;boundary=batch_1"}}, strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("status = %d, want 200; body %s", res.StatusCode, body)
	}
	if !bytes.Contains(body, []byte(publicBase+"$metadata#People")) {
		t.Errorf("batch response not rewritten: %s", body)
	}
}

func TestRelayMetadataCachePerUser(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.Header()["OData-Version"] = []string{"4.0"}
		fmt.Fprintf(w, `<edmx:Edmx><edmx:Reference Uri="%sVocab.xml"/><!-- for %s --></edmx:Edmx>`, u.base(), r.Header.Get("Authorization"))
	})
	reg := prometheus.NewRegistry()
	b := newBridge(t, Upstream{URL: u.base(), CacheMetadata: time.Hour}, Options{Registerer: reg}, authPerUser{})
	get := func(user string, gz bool) string {
		hdr := http.Header{"X-Test-User": {user}}
		if gz {
			hdr.Set("Accept-Encoding", "gzip")
		}
		res, body, err := b.do(t, "GET", "/odata/s/$metadata", hdr, nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("GET $metadata as %q: %v %v", user, err, res)
		}
		if got := res.Header.Values("OData-Version"); len(got) != 1 {
			t.Errorf("OData-Version = %q, want one value", got)
		}
		if gz {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(zr)
		}
		return string(body)
	}
	alice1 := get("alice", false)
	alice2 := get("alice", true)
	bob := get("bob", false)
	if want := `<edmx:Edmx><edmx:Reference Uri="` + publicBase + `Vocab.xml"/><!-- for Bearer alice --></edmx:Edmx>`; alice1 != want {
		t.Errorf("alice = %s, want %s", alice1, want)
	}
	if alice2 != alice1 {
		t.Errorf("cached alice = %s, want %s", alice2, alice1)
	}
	if !strings.Contains(bob, "Bearer bob") {
		t.Errorf("bob got %s", bob)
	}
	if got := u.hits.Load(); got != 2 {
		t.Errorf("upstream hits = %d, want 2 (one per user)", got)
	}
	if got := counterValue(t, b.rl.metrics.cacheOps.WithLabelValues("s", "hit")); got != 1 {
		t.Errorf("cache hits = %v, want 1", got)
	}
	get("", false) // no user: never cached
	get("", false)
	if got := u.hits.Load(); got != 4 {
		t.Errorf("upstream hits = %d, want 4", got)
	}
}

type testUserKey struct{}

// authPerUser sends the test user as the upstream credential, like a per-user token.
type authPerUser struct{}

func (authPerUser) Authorize(ctx context.Context, out *http.Request, _ bool) error {
	out.Header.Set("Authorization", "Bearer "+ctx.Value(testUserKey{}).(string))
	return nil
}

func TestNewRelayValidates(t *testing.T) {
	good := Upstream{Name: "k2", URL: "https://k2.example/api/odata/v3/", PublicBase: "https://bridge.example/odata/k2/"}
	tests := []struct {
		name string
		mod  func(s *Upstream)
	}{
		{"bad name", func(s *Upstream) { s.Name = "K2 Feed" }},
		{"relative url", func(s *Upstream) { s.URL = "/api/" }},
		{"no trailing slash", func(s *Upstream) { s.URL = "https://k2.example/api" }},
		{"query", func(s *Upstream) { s.URL = "https://k2.example/api/?a=1" }},
		{"alias without slash", func(s *Upstream) { s.Aliases = []string{"http://k2-internal"} }},
		{"bad public base", func(s *Upstream) { s.PublicBase = "bridge/odata/k2" }},
		{"bad version", func(s *Upstream) { s.Version = "5.0" }},
		{"negative timeout", func(s *Upstream) { s.HeaderTimeout = -1 }},
	}
	if _, err := NewRelay([]Upstream{good}, Options{}); err != nil {
		t.Fatalf("NewRelay(good) = %v", err)
	}
	if _, err := NewRelay([]Upstream{good, good}, Options{}); !errors.Is(err, ErrConfig) {
		t.Errorf("duplicate names: err = %v, want ErrConfig", err)
	}
	for _, tt := range tests {
		s := good
		tt.mod(&s)
		if _, err := NewRelay([]Upstream{s}, Options{}); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", tt.name, err)
		}
	}
}

func TestRelayLearnsVersion(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("DataServiceVersion", "3.0;NetFx")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	})
	b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
	f, _ := b.rl.Feed("s")
	if v := f.Version(); v != "" {
		t.Errorf("version before any response = %q, want empty", v)
	}
	if _, _, err := b.do(t, "GET", "/odata/s/People", nil, nil); err != nil {
		t.Fatal(err)
	}
	if v := f.Version(); v != Version3 {
		t.Errorf("learned version = %q, want 3.0", v)
	}
}

func TestWriteErrorShapes(t *testing.T) {
	tests := []struct {
		version, want, header string
	}{
		{"", `{"error":{"code":"E","message":"m"}}`, "OData-Version"},
		{"4.0", `{"error":{"code":"E","message":"m"}}`, "OData-Version"},
		{"3.0", `{"odata.error":{"code":"E","message":{"lang":"en-US","value":"m"}}}`, "DataServiceVersion"},
		{"2.0", `{"error":{"code":"E","message":{"lang":"en-US","value":"m"}}}`, "DataServiceVersion"},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		w.Header().Set("OData-Version", "4.0") // a canonical twin set earlier must not survive
		WriteError(w, tt.version, 418, "E", "m")
		if got := w.Body.String(); got != tt.want {
			t.Errorf("version %q: body = %s, want %s", tt.version, got, tt.want)
		}
		if w.Code != 418 {
			t.Errorf("version %q: status = %d", tt.version, w.Code)
		}
		//lint:ignore SA1008 the non-canonical spellings are looked up on purpose: none may appear
		n := len(w.Header()["Odata-Version"]) + len(w.Header()["OData-Version"]) + len(w.Header()["DataServiceVersion"])
		if n != 1 || len(w.Header()[tt.header]) != 1 {
			t.Errorf("version %q: headers %v, want one %s", tt.version, w.Header(), tt.header)
		}
	}
}

// counterValue reads one counter series.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestRelayConcurrent(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "$metadata") {
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprintf(w, `<x base="%s"/>`, u.base())
			return
		}
		writeJSON(w, fmt.Sprintf(`{"@odata.context":"%s$metadata#P","q":%q}`, u.base(), r.URL.RawQuery))
	})
	b := newBridge(t, Upstream{URL: u.base(), CacheMetadata: time.Hour}, Options{Registerer: prometheus.NewRegistry()}, &staticAuth{})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 10 {
				target := fmt.Sprintf("/odata/s/P?i=%d&j=%d", i, j)
				want := fmt.Sprintf(`{"@odata.context":"%s$metadata#P","q":"i=%d&j=%d"}`, publicBase, i, j)
				hdr := http.Header{"X-Test-User": {fmt.Sprint("u", i%3)}}
				if j%3 == 0 {
					target, want = "/odata/s/$metadata", `<x base="`+publicBase+`"/>`
				}
				res, body, err := b.do(t, "GET", target, hdr, nil)
				if err != nil || res.StatusCode != 200 || string(body) != want {
					t.Errorf("GET %s: %v %v %s, want %s", target, err, res.StatusCode, body, want)
				}
			}
		})
	}
	wg.Wait()
}

func TestRelayHeadAndVersionTwin(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
		writeJSON(w, "")
	})
	b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
	// A middleware before the relay set the canonical spelling.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("OData-Version", "4.0")
		b.Config.Handler.ServeHTTP(w, r)
	}))
	defer front.Close()
	req, _ := http.NewRequest("HEAD", front.URL+"/odata/s/People", nil)
	res, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("status = %d, want 200", res.StatusCode)
	}
	if got := res.Header.Values("OData-Version"); len(got) != 1 {
		t.Errorf("OData-Version = %q, want one value", got)
	}
	if res.Header.Get("Content-Length") == "1234" {
		t.Errorf("HEAD kept the upstream Content-Length of a body the relay would rewrite")
	}
}

func TestRelayXForwardedOnlyAsConfigured(t *testing.T) {
	for _, on := range []bool{false, true} {
		u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) { writeJSON(w, `{}`) })
		b := newBridge(t, Upstream{URL: u.base()}, Options{XForwarded: on}, nil)
		hdr := http.Header{"X-Forwarded-For": {"203.0.113.9"}, "Forwarded": {"for=203.0.113.9"}}
		if _, _, err := b.do(t, "GET", "/odata/s/People", hdr, nil); err != nil {
			t.Fatal(err)
		}
		got := u.last().Header
		if got.Get("Forwarded") != "" || strings.Contains(got.Get("X-Forwarded-For"), "203.0.113.9") {
			t.Errorf("XForwarded=%v: the caller's forwarding headers went upstream: %v", on, got)
		}
		if has := got.Get("X-Forwarded-For") != "" && got.Get("X-Forwarded-Host") != ""; has != on {
			t.Errorf("XForwarded=%v: X-Forwarded-For %q, X-Forwarded-Host %q", on, got.Get("X-Forwarded-For"), got.Get("X-Forwarded-Host"))
		}
	}
}

func TestRelayODataVersionSpelling(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("OData-Version", "4.0") // canonicalized to Odata-Version by Go
		w.Header().Add("OData-Version", "4.0") // and sent twice
		writeJSON(w, `{}`)
	})
	b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
	conn, err := net.Dial("tcp", b.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /odata/s/People HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	if n := strings.Count(strings.ToLower(head), "\r\nodata-version:"); n != 1 {
		t.Errorf("%d OData-Version lines, want 1:\n%s", n, head)
	}
	if !strings.Contains(head, "\r\nOData-Version: 4.0\r\n") {
		t.Errorf("no OData-Version line in the spec's spelling:\n%s", head)
	}
}

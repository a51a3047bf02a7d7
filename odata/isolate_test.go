package odata

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// isolated reports what is missing from a response under /odata that must never
// act on the bridge's origin.
func isolated(t *testing.T, h http.Header) {
	t.Helper()
	if got := h.Values("Content-Security-Policy"); len(got) != 1 || got[0] != ContentSecurityPolicy {
		t.Errorf("Content-Security-Policy = %q, want %q", got, ContentSecurityPolicy)
	}
	if got := h.Values("X-Content-Type-Options"); len(got) != 1 || got[0] != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
}

func TestRelayIsolatesBodies(t *testing.T) {
	const script = `<html><script>document.title="ran"</script></html>`
	tests := []struct {
		name        string
		path        string
		contentType []string // nil: none sent
		status      int
		wantType    string // an attachment is always application/octet-stream
		wantAttach  bool
	}{
		{"OData JSON", "People", []string{"application/json;odata.metadata=minimal;charset=utf-8"}, 200, "application/json;odata.metadata=minimal;charset=utf-8", false},
		{"CSDL", "$metadata", []string{"application/xml"}, 200, "application/xml", false},
		{"Atom", "People", []string{"application/atom+xml;type=feed"}, 200, "application/atom+xml;type=feed", false},
		{"service document", "", []string{"application/atomsvc+xml"}, 200, "application/atomsvc+xml", false},
		{"text/xml", "People", []string{"TEXT/XML"}, 200, "TEXT/XML", false},
		{"$count", "People/$count", []string{"text/plain;charset=utf-8"}, 200, "text/plain;charset=utf-8", false},
		{"$batch", "$batch", []string{"multipart/mixed; boundary=b"}, 200, "multipart/mixed; boundary=b", false},
		{"HTML", "Docs(1)", []string{"text/html"}, 200, "application/octet-stream", true},
		{"HTML as $value", "Docs(1)/$value", []string{"text/html; charset=utf-8"}, 200, "application/octet-stream", true},
		{"HTML error page", "People", []string{"text/html"}, 500, "application/octet-stream", true},
		{"SVG as $value", "Docs(1)/$value", []string{"image/svg+xml"}, 200, "application/octet-stream", true},
		{"XHTML as $value", "Docs(1)/%24value", []string{"application/xhtml+xml"}, 200, "application/octet-stream", true},
		{"XSLT as $value", "Docs(1)/$value", []string{"text/xsl"}, 200, "application/octet-stream", true},
		{"RSS as $value", "Docs(1)/$value", []string{"application/rss+xml"}, 200, "application/octet-stream", true},
		{"JavaScript as $value", "Docs(1)/$value", []string{"text/javascript"}, 200, "application/octet-stream", true},
		{"CSS as $value", "Docs(1)/$value", []string{"text/css"}, 200, "application/octet-stream", true},
		{"image as $value", "Photos(1)/$value", []string{"image/png"}, 200, "image/png", false},
		{"PDF as $value", "Docs(1)/$value", []string{"application/pdf"}, 200, "application/pdf", false},
		{"image elsewhere", "Photos(1)", []string{"image/png"}, 200, "application/octet-stream", true},
		{"no type", "Docs(1)", nil, 200, "application/octet-stream", true},
		{"no type as $value", "Docs(1)/$value", nil, 200, "application/octet-stream", false},
		{"a list of types", "People", []string{"application/json, text/html"}, 200, "application/octet-stream", true},
		{"a list hidden in a parameter", "People", []string{"application/json;x=,text/html"}, 200, "application/octet-stream", true},
		{"two types", "People", []string{"application/json", "text/html"}, 200, "application/octet-stream", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
				if tt.contentType == nil {
					w.Header()["Content-Type"] = nil // keeps net/http from sniffing
				} else {
					w.Header()["Content-Type"] = tt.contentType
				}
				w.Header().Set("Content-Disposition", "inline")
				w.WriteHeader(tt.status)
				io.WriteString(w, script)
			})
			b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
			res, body, err := b.do(t, "GET", "/odata/s/"+tt.path, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			isolated(t, res.Header)
			if got := res.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantType)
			}
			want := ""
			if tt.wantAttach {
				want = "attachment"
			}
			if got := res.Header.Values("Content-Disposition"); len(got) > 1 || res.Header.Get("Content-Disposition") != want {
				t.Errorf("Content-Disposition = %q, want %q", got, want)
			}
		})
	}
}

func TestRelayIsolatesErrors(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/svc/Secret":
			w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
			w.WriteHeader(http.StatusUnauthorized)
		case "/svc/Away":
			w.Header().Set("Location", "https://evil.example/")
			w.WriteHeader(http.StatusFound)
		default:
			writeJSON(w, `{}`)
		}
	})
	b := newBridge(t, Upstream{URL: u.base()}, Options{}, &staticAuth{})
	for _, tt := range []struct {
		target string
		status int
	}{
		{"/odata/s/..;x/admin", http.StatusBadRequest},
		{"/odata/nope/People", http.StatusNotFound},
		{"/odata/s/Secret", http.StatusUnauthorized},
		{"/odata/s/Away", http.StatusBadGateway},
	} {
		t.Run(tt.target, func(t *testing.T) {
			res, body, err := b.do(t, "GET", tt.target, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", res.StatusCode, tt.status, body)
			}
			isolated(t, res.Header)
			if got := res.Header.Get("Content-Disposition"); got != "" {
				t.Errorf("Content-Disposition = %q on the bridge's own error", got)
			}
			if got := res.Header.Values("WWW-Authenticate"); len(got) != 0 {
				t.Errorf("WWW-Authenticate = %q: the upstream's challenge reached the client", got)
			}
		})
	}
}

func TestWriteErrorIsolates(t *testing.T) {
	for _, version := range []string{"2.0", "3.0", "4.0"} {
		w := httptest.NewRecorder()
		w.Header().Set("Content-Disposition", "inline")
		WriteError(w, version, http.StatusBadRequest, "", "no")
		isolated(t, w.Result().Header)
		if got := w.Result().Header.Get("Content-Disposition"); got != "" {
			t.Errorf("version %s: Content-Disposition = %q, want none", version, got)
		}
	}
}

func TestRelayResponseHeaderAllowList(t *testing.T) {
	sent := map[string]string{
		"Content-Language":                 "en",
		"Etag":                             `W/"1"`,
		"Last-Modified":                    "Mon, 02 Jan 2006 15:04:05 GMT",
		"Cache-Control":                    "private",
		"Expires":                          "Mon, 02 Jan 2006 15:04:05 GMT",
		"Age":                              "3",
		"Retry-After":                      "5",
		"Preference-Applied":               "odata.maxpagesize=10",
		"Allow":                            "GET, HEAD",
		"Set-Cookie":                       "upstream=1; Path=/",
		"Refresh":                          "0; url=https://evil.example/",
		"Access-Control-Allow-Origin":      "*",
		"Access-Control-Allow-Credentials": "true",
		"Clear-Site-Data":                  `"*"`,
		"Www-Authenticate":                 `Basic realm="upstream"`,
		"Content-Security-Policy":          "script-src *",
		"X-Content-Type-Options":           "sniff",
		"Strict-Transport-Security":        "max-age=0",
		"Content-Disposition":              "inline",
		"Link":                             "<https://evil.example/x.css>; rel=stylesheet",
		"X-Powered-By":                     "upstream",
		"Server":                           "upstream",
		"Service-Worker-Allowed":           "/",
		"Permissions-Policy":               "camera=*",
		"Cross-Origin-Resource-Policy":     "cross-origin",
	}
	kept := map[string]bool{"Content-Language": true, "Etag": true, "Last-Modified": true, "Cache-Control": true,
		"Expires": true, "Age": true, "Retry-After": true, "Preference-Applied": true, "Allow": true, "Link": true}
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		for k, v := range sent {
			w.Header()[k] = []string{v}
		}
		w.Header()["DataServiceVersion"] = []string{"3.0"}
		writeJSON(w, `{}`)
	})
	b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
	res, body, err := b.do(t, "GET", "/odata/s/People", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", res.StatusCode, body)
	}
	for k, v := range sent {
		got := res.Header.Values(k)
		switch {
		case kept[k] && (len(got) != 1 || got[0] != v):
			t.Errorf("%s = %q, want %q", k, got, v)
		case !kept[k] && k != "Content-Security-Policy" && k != "X-Content-Type-Options" && len(got) != 0:
			t.Errorf("%s = %q reached the client", k, got)
		}
	}
	isolated(t, res.Header)
	for k, want := range map[string]string{"OData-Version": "4.0", "DataServiceVersion": "3.0"} {
		if got := res.Header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want [%s]", k, got, want)
		}
	}
}

func TestRelayLocation(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		location string // "BASE" stands for the upstream's base, "PUBLIC" for the public base
		want     string // "" = no Location
		wantCode int    // what the client gets
	}{
		{"on the base", http.StatusFound, "BASE" + "People(2)", publicBase + "People(2)", http.StatusFound},
		{"relative", http.StatusMovedPermanently, "People(2)", publicBase + "People(2)", http.StatusMovedPermanently},
		{"absolute path on the base", http.StatusSeeOther, "/svc/People(2)?$top=1", publicBase + "People(2)?$top=1", http.StatusSeeOther},
		{"on the public base", http.StatusTemporaryRedirect, "PUBLIC" + "People(2)", publicBase + "People(2)", http.StatusTemporaryRedirect},
		{"another host", http.StatusFound, "https://evil.example/", "", http.StatusBadGateway},
		{"scheme-relative", http.StatusFound, "//evil.example/svc/", "", http.StatusBadGateway},
		{"the upstream's root", http.StatusPermanentRedirect, "/admin", "", http.StatusBadGateway},
		{"climbing out", http.StatusFound, "../admin", "", http.StatusBadGateway},
		{"climbing out of the public base", http.StatusFound, "PUBLIC" + "%2e%2e/%2e%2e/api/keys", "", http.StatusBadGateway},
		{"encoded climb", http.StatusFound, "BASE" + "..;/admin", "", http.StatusBadGateway},
		{"javascript", http.StatusFound, "javascript:alert(1)", "", http.StatusBadGateway},
		{"off-site on a 200", http.StatusOK, "https://evil.example/", "", http.StatusOK},
		{"on a 201", http.StatusCreated, "BASE" + "People(3)", publicBase + "People(3)", http.StatusCreated},
		{"300 without one", http.StatusMultipleChoices, "", "", http.StatusMultipleChoices},
		{"304", http.StatusNotModified, "", "", http.StatusNotModified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
				loc := tt.location
				if rest, ok := cutPrefix(loc, "BASE"); ok {
					loc = u.base() + rest
				} else if rest, ok := cutPrefix(loc, "PUBLIC"); ok {
					loc = publicBase + rest
				}
				if loc != "" {
					w.Header().Set("Location", loc)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
			})
			b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
			b.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			res, body, err := b.do(t, "GET", "/odata/s/People(1)", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.wantCode {
				t.Fatalf("status = %d, want %d; body %s", res.StatusCode, tt.wantCode, body)
			}
			if got := res.Header.Values("Location"); tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || got[0] != tt.want) {
				t.Errorf("Location = %q, want %q", got, tt.want)
			}
			isolated(t, res.Header)
			if tt.wantCode == http.StatusBadGateway {
				select {
				case err := <-b.errs:
					if !errors.Is(err, ErrUpstreamUnreachable) {
						t.Errorf("error = %v, want ErrUpstreamUnreachable", err)
					}
				default:
					t.Errorf("the relay reported no error")
				}
			}
		})
	}
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// TestRelayKeepsResponsesPrivate: every relayed answer is one caller's, so
// no shared cache in front of the bridge may keep it for another.
func TestRelayKeepsResponsesPrivate(t *testing.T) {
	for _, tc := range []struct{ upstream, want string }{
		{"", "private"},
		{"public, max-age=60, s-maxage=600", "max-age=60, private"},
		{"max-age=60, proxy-revalidate", "max-age=60, private"},
		{"private, max-age=5", "private, max-age=5"},
		{"no-store", "no-store"},
		{"no-cache, Public", "no-cache, private"},
	} {
		u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
			if tc.upstream != "" {
				w.Header().Set("Cache-Control", tc.upstream)
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"value":[]}`)
		})
		b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
		res, _, err := b.do(t, "GET", "/odata/s/People", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Header.Values("Cache-Control"); len(got) != 1 || got[0] != tc.want {
			t.Errorf("upstream Cache-Control %q: relayed %q, want %q", tc.upstream, got, tc.want)
		}
	}
}

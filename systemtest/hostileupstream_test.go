package systemtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// The documents of a hostile upstream: each tries to run script on whatever origin
// shows it.
const (
	hostileHTML  = `<!doctype html><html><body><script>fetch("/api/keys",{method:"POST",credentials:"include"})</script></body></html>`
	hostileSVG   = `<svg xmlns="http://www.w3.org/2000/svg"><script>fetch("/api/keys",{method:"POST"})</script></svg>`
	hostileXHTML = `<html xmlns="http://www.w3.org/1999/xhtml"><body><script>fetch("/api/keys",{method:"POST"})</script></body></html>`
)

// hostileUpstream is an OData upstream under /svc/ that answers with active content,
// headers that would act on the bridge's origin, and redirects off the source. It
// records every path it is asked for.
type hostileUpstream struct {
	srv   *httptest.Server
	mu    sync.Mutex
	paths []string
}

func startHostileUpstream(t *testing.T) *hostileUpstream {
	t.Helper()
	u := &hostileUpstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(u.handle))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *hostileUpstream) Base() string { return u.srv.URL + "/svc/" }

func (u *hostileUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.paths...)
}

// hostileHeaders are sent on every answer; none may reach a client.
var hostileHeaders = map[string]string{
	"Refresh":                          "0; url=https://evil.example/",
	"Access-Control-Allow-Origin":      "*",
	"Access-Control-Allow-Credentials": "true",
	"Clear-Site-Data":                  `"cookies", "storage"`,
	"Set-Cookie":                       "bridge_session=evil; Path=/",
	"Www-Authenticate":                 `Basic realm="upstream"`,
	"Content-Disposition":              "inline",
	"Strict-Transport-Security":        "max-age=0",
	"Service-Worker-Allowed":           "/",
	"X-Frame-Options":                  "ALLOWALL",
	"X-Upstream-Secret":                "internal",
}

func (u *hostileUpstream) handle(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.paths = append(u.paths, r.URL.EscapedPath())
	u.mu.Unlock()
	h := w.Header()
	for k, v := range hostileHeaders {
		h[k] = []string{v}
	}
	h["Content-Security-Policy"] = []string{"script-src *"}
	h["X-Content-Type-Options"] = []string{"sniff"}
	h["OData-Version"] = []string{"4.0"}
	answer := func(contentType, body string) {
		if contentType == "" {
			h["Content-Type"] = nil // no type, and net/http sniffs none
		} else {
			h.Set("Content-Type", contentType)
		}
		io.WriteString(w, body)
	}
	switch strings.TrimPrefix(r.URL.EscapedPath(), "/svc/") {
	case "People":
		answer("application/json;odata.metadata=minimal", `{"@odata.context":"`+u.Base()+`$metadata#People","value":[]}`)
	case "Docs(1)/$value":
		answer("text/html; charset=utf-8", hostileHTML)
	case "Docs(2)/$value":
		answer("image/svg+xml", hostileSVG)
	case "Docs(3)/$value":
		answer("application/xhtml+xml", hostileXHTML)
	case "Docs(4)":
		answer("application/xml", hostileXHTML)
	case "Docs(5)/$value", "Docs(5)":
		answer("", hostileHTML)
	case "Docs(6)":
		answer("text/html", hostileHTML)
	case "Photos(1)/$value":
		answer("image/png", "\x89PNG\r\n\x1a\n")
	case "Away":
		h.Set("Location", "https://evil.example/steal")
		w.WriteHeader(http.StatusFound)
	case "Root":
		h.Set("Location", "/admin")
		w.WriteHeader(http.StatusMovedPermanently)
	case "Climb":
		h.Set("Location", u.Base()+"..;/admin")
		w.WriteHeader(http.StatusTemporaryRedirect)
	case "Moved":
		h.Set("Location", u.Base()+"People")
		w.WriteHeader(http.StatusFound)
	case "Secret":
		w.WriteHeader(http.StatusUnauthorized)
	default:
		h.Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, hostileHTML)
	}
}

// TestHostileUpstream runs the bridge in front of an upstream that serves HTML, SVG
// and XHTML with scripts, a body without a type, off-site redirects and headers that
// would act on the bridge's origin: every answer under /odata carries the sandbox CSP
// and nosniff, active content is an attachment, no upstream header outside the
// allow-list passes, and an off-site redirect is a 502.
func TestHostileUpstream(t *testing.T) {
	world := startWorld(t, demo.Options{})
	up := startHostileUpstream(t)
	br := startBridge(t, bridgeConfig{World: world, Sources: []source{{Name: "hostile", URL: up.Base(), Auth: "user"}}})
	tok := mustSignIn(t, br.URL, "alice")
	auth := bearer(tok.Access)
	feed := br.URL + "/odata/hostile/"

	tests := []struct {
		name        string
		target      string // after /odata/hostile/, sent as it is
		auth        string
		status      int
		contentType string // "": not checked; an attachment is always application/octet-stream
		attachment  bool
		location    string // "": none
	}{
		{"OData JSON", "People", auth, http.StatusOK, "application/json;odata.metadata=minimal", false, ""},
		{"HTML $value", "Docs(1)/$value", auth, http.StatusOK, "application/octet-stream", true, ""},
		{"SVG $value", "Docs(2)/$value", auth, http.StatusOK, "application/octet-stream", true, ""},
		{"XHTML $value", "Docs(3)/$value", auth, http.StatusOK, "application/octet-stream", true, ""},
		{"XML holding XHTML", "Docs(4)", auth, http.StatusOK, "application/xml", false, ""},
		{"no type, $value", "Docs(5)/$value", auth, http.StatusOK, "application/octet-stream", false, ""},
		{"no type", "Docs(5)", auth, http.StatusOK, "application/octet-stream", true, ""},
		{"HTML entity", "Docs(6)", auth, http.StatusOK, "application/octet-stream", true, ""},
		{"image $value", "Photos(1)/$value", auth, http.StatusOK, "image/png", false, ""},
		{"HTML 404", "Nothing", auth, http.StatusNotFound, "application/octet-stream", true, ""},
		{"redirect on the source", "Moved", auth, http.StatusFound, "application/octet-stream", true, feed + "People"},
		{"redirect off-site", "Away", auth, http.StatusBadGateway, "application/json;odata.metadata=minimal;charset=utf-8", false, ""},
		{"redirect to the upstream's root", "Root", auth, http.StatusBadGateway, "", false, ""},
		{"redirect climbing out", "Climb", auth, http.StatusBadGateway, "", false, ""},
		{"upstream 401", "Secret", auth, http.StatusUnauthorized, "", false, ""},
		{"no credentials", "Docs(1)/$value", "", http.StatusUnauthorized, "", false, ""},
		{"dot-dot-semicolon", "..;x/admin", auth, http.StatusBadRequest, "", false, ""},
		{"three dots", ".../admin", auth, http.StatusBadRequest, "", false, ""},
		{"dots and a space", "..%20/admin", auth, http.StatusBadRequest, "", false, ""},
		{"overlong UTF-8 dots", "%c0%ae%c0%ae/admin", auth, http.StatusBadRequest, "", false, ""},
		{"full-width dots", "%EF%BC%8E%EF%BC%8E/admin", auth, http.StatusBadRequest, "", false, ""},
		{"one-dot leaders", "%E2%80%A4%E2%80%A4/admin", auth, http.StatusBadRequest, "", false, ""},
		{"encoded double slash", "a%2F%2Fevil.example/x", auth, http.StatusBadRequest, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, br.URL+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = "/odata/hostile/" + tt.target // sent as written
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			res, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %.200s", res.StatusCode, tt.status, body)
			}
			checkIsolated(t, res.Header)
			if tt.contentType != "" {
				if got := res.Header.Get("Content-Type"); got != tt.contentType {
					t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
				}
			} else if res.Header.Get("Content-Type") == "" && len(body) > 0 {
				t.Errorf("a body of %d bytes without a Content-Type", len(body))
			}
			want := ""
			if tt.attachment {
				want = "attachment"
			}
			if got := res.Header.Values("Content-Disposition"); len(got) > 1 || res.Header.Get("Content-Disposition") != want {
				t.Errorf("Content-Disposition = %q, want %q", got, want)
			}
			if got := res.Header.Get("Location"); got != tt.location {
				t.Errorf("Location = %q, want %q", got, tt.location)
			}
			for k := range hostileHeaders {
				if got := res.Header.Values(k); len(got) > 0 && k != "Www-Authenticate" && k != "Content-Disposition" {
					t.Errorf("%s = %q reached the client", k, got)
				}
			}
			for _, v := range res.Header.Values("Www-Authenticate") {
				if strings.Contains(v, "upstream") {
					t.Errorf("the upstream's challenge %q reached the client", v)
				}
			}
		})
	}
	for _, p := range up.seen() {
		if !strings.HasPrefix(p, "/svc/") || strings.Contains(p, "admin") {
			t.Errorf("the upstream was asked for %q", p)
		}
	}

	// The bridge's own answers under /odata are isolated as well.
	for _, target := range []string{br.URL + "/odata/hostile", br.URL + "/odata/nope/People"} {
		res, err := noRedirect.Get(target)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode < 300 {
			t.Errorf("GET %s: status %d, want a redirect or an error", target, res.StatusCode)
		}
		checkIsolated(t, res.Header)
	}
}

// checkIsolated reports a response under /odata that lacks the sandbox CSP or nosniff,
// or carries them twice.
func checkIsolated(t *testing.T, h http.Header) {
	t.Helper()
	const csp = "sandbox; default-src 'none'; frame-ancestors 'none'"
	if got := h.Values("Content-Security-Policy"); len(got) != 1 || got[0] != csp {
		t.Errorf("Content-Security-Policy = %q, want %q", got, csp)
	}
	if got := h.Values("X-Content-Type-Options"); len(got) != 1 || got[0] != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

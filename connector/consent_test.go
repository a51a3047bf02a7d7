package connector

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/idp/idptest"
	"github.com/odata-bridge/bridge/tokencache"
)

// checkPageHeaders fails unless a page has the sign-in page's security headers.
func checkPageHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"X-Frame-Options":        "DENY",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
		"Cache-Control":          "no-store",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
}

func TestAdminConsentRoundTrip(t *testing.T) {
	b := newEntraBridge(t, nil)
	// Before consent, tenant B's users cannot be exchanged on-behalf-of.
	tokB := b.idp.Token(t, tenantB, "carol", b.url, nil)
	if resp, _ := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(tokB)); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("before consent: status = %d, want 403", resp.StatusCode)
	}

	browser := newBrowser(t)
	resp, _ := browse(t, browser, b.url+"/admin/consent?tenant="+tenantB)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/admin/consent: status = %d, want 302", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	want, err := b.opts.AdminConsentURL(b.url, tenantB)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(loc)
	q := u.Query()
	if !strings.HasPrefix(loc, want+"&state=") {
		t.Errorf("Location = %q, want %q with a state", loc, want)
	}
	if u.Path != "/"+tenantB+"/v2.0/adminconsent" || q.Get("client_id") != entraClientID || q.Get("redirect_uri") != b.url+"/oauth/callback" || q.Get("scope") == "" || len(q.Get("state")) < 43 {
		t.Errorf("admin-consent URL = %s", loc)
	}

	// The administrator accepts at Entra, which redirects to the bridge's callback.
	resp, err = noRedirects.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back := resp.Header.Get("Location")
	if !strings.HasPrefix(back, b.url+"/oauth/callback?") {
		t.Fatalf("Entra redirected to %q, want the bridge's callback", back)
	}
	// Another browser (an attacker's link opened by someone else) gets no result page.
	if resp, body := browse(t, newBrowser(t), back); resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "Admin consent granted") {
		t.Errorf("callback in another browser: status = %d, body %s; want 400", resp.StatusCode, body)
	}
	resp, body := browse(t, browser, back)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Admin consent granted") || !strings.Contains(body, tenantB) {
		t.Errorf("callback: status = %d, body %s; want 200 naming the tenant", resp.StatusCode, body)
	}
	checkPageHeaders(t, resp)

	if resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(tokB)); resp.StatusCode != http.StatusOK || !strings.Contains(body, "obo_carol_") {
		t.Errorf("after consent: status = %d, body %s; want 200 with carol's token", resp.StatusCode, body)
	}
}

func TestAdminConsentErrorPages(t *testing.T) {
	b := newEntraBridge(t, nil)
	b.idp.Set(func(p *idptest.Entra) { p.NotAdmin = true })

	// Through the test provider: a user who is no administrator.
	browser := newBrowser(t)
	resp, _ := browse(t, browser, b.url+"/admin/consent?tenant="+tenantADomain)
	resp, err := noRedirects.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	aadsts90094 := strings.TrimPrefix(resp.Header.Get("Location"), b.url)

	for _, tc := range []struct {
		name  string
		path  string
		wants []string
	}{
		{"AADSTS90094", aadsts90094, []string{"administrator", "Global Administrator", "AADSTS90094: The grant requires admin permission.", "/admin/consent?tenant= followed by your tenant ID"}},
		{"AADSTS65001", "/oauth/callback?error=invalid_grant&error_description=" + url.QueryEscape("AADSTS65001: The user or administrator has not consented to use the application.") + "&tenant=" + tenantA,
			[]string{"Nobody has consented", "https://api.k2.com", "multi-factor", "/admin/consent?tenant=" + tenantA + `">Start admin consent again`}},
		{"declined", "/oauth/callback?error=access_denied&error_description=AADSTS65004%3A+User+declined", []string{"declined"}},
		{"script in the description", "/oauth/callback?error=x&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E", []string{"&lt;script&gt;"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if !strings.Contains(path, "state=") {
				// Entra's answer to a consent this browser started.
				path += "&state=" + url.QueryEscape(startConsent(t, b.url, browser))
			}
			resp, body := browse(t, browser, b.url+path)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", resp.StatusCode)
			}
			checkPageHeaders(t, resp)
			for _, w := range tc.wants {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q:\n%s", w, body)
				}
			}
			if strings.Contains(body, "<script>") || strings.Contains(body, "Trace ID") {
				t.Errorf("page shows a script or Entra's trace lines:\n%s", body)
			}
		})
	}
}

// browse sends a GET with client (a browser) and returns the response and body.
func browse(t *testing.T, client *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// startConsent starts admin consent in browser and returns the state the
// bridge sent along to Entra.
func startConsent(t *testing.T, base string, browser *http.Client) string {
	t.Helper()
	resp, _ := browse(t, browser, base+"/admin/consent?tenant="+tenantA)
	u, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || u.Query().Get("state") == "" {
		t.Fatalf("/admin/consent: status %d, Location %q; want a redirect with a state", resp.StatusCode, resp.Header.Get("Location"))
	}
	return u.Query().Get("state")
}

// TestAdminConsentResultForged: the result page appears only for a
// consent the bridge started in this browser, once.
func TestAdminConsentResultForged(t *testing.T) {
	b := newEntraBridge(t, nil)
	browser := newBrowser(t)
	granted := "/oauth/callback?admin_consent=True&tenant=" + tenantA
	used := startConsent(t, b.url, browser)
	if resp, body := browse(t, browser, b.url+granted+"&state="+url.QueryEscape(used)); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Admin consent granted") {
		t.Fatalf("genuine answer: status = %d, body %s; want 200 granted", resp.StatusCode, body)
	}
	other := startConsent(t, b.url, newBrowser(t))
	for _, tc := range []struct{ name, path string }{
		{"no state", granted},
		{"an error without state", "/oauth/callback?error=access_denied"},
		{"a state never issued", granted + "&state=" + strings.Repeat("A", 43)},
		{"a state of another browser", granted + "&state=" + url.QueryEscape(other)},
		{"a used state", granted + "&state=" + url.QueryEscape(used)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := browse(t, browser, b.url+tc.path)
			if resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "Admin consent granted") || strings.Contains(body, tenantA) {
				t.Errorf("status = %d, body %s; want 400 and no result", resp.StatusCode, body)
			}
			checkPageHeaders(t, resp)
		})
	}
}

func TestAdminConsentCallbackLeavesSignInAlone(t *testing.T) {
	b := newEntraBridge(t, nil)
	// A sign-in answer carries state: it is not taken for a consent answer.
	resp, body := b.do(t, http.MethodGet, "/oauth/callback?state=abc&error=access_denied", nil)
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "consent") {
		t.Errorf("status = %d, body %s; want the sign-in error page", resp.StatusCode, body)
	}
}

func TestAdminConsentTenant(t *testing.T) {
	for _, tc := range []struct {
		pinned string
		query  string
		want   int
	}{
		{"", "?tenant=" + tenantA, http.StatusFound},
		{"", "?tenant=" + strings.ToUpper(tenantA), http.StatusFound},
		{"", "?tenant=" + tenantADomain, http.StatusFound},
		{"", "?tenant=fabrikam.com", http.StatusFound},
		{tenantA, "", http.StatusFound},
		{tenantA, "?tenant=" + tenantA, http.StatusFound},
		{"", "", http.StatusBadRequest},
		{"", "?tenant=", http.StatusBadRequest},
		{"", "?tenant=common", http.StatusBadRequest},
		{"", "?tenant=..%2Fevil", http.StatusBadRequest},
		{"", "?tenant=evil.com%2Fx", http.StatusBadRequest},
		{"", "?tenant=a+b.com", http.StatusBadRequest},
		{"", "?tenant=10.0.0.1", http.StatusBadRequest},
		{"", "?tenant=-bad.com", http.StatusBadRequest},
		{"", "?tenant=evil.com%3Fx%3D1", http.StatusBadRequest},
		{"", "?tenant=" + tenantA + "&tenant=" + tenantB, http.StatusBadRequest},
		{tenantA, "?tenant=" + tenantB, http.StatusBadRequest},
	} {
		t.Run(tc.pinned+tc.query, func(t *testing.T) {
			b := newEntraBridge(t, func(o *idp.EntraConfig, _ *Source) { o.Tenant = tc.pinned })
			resp, body := b.do(t, http.MethodGet, "/admin/consent"+tc.query, nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == http.StatusBadRequest {
				checkPageHeaders(t, resp)
				return
			}
			u, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || u.Host != strings.TrimPrefix(b.idp.URL, "http://") || strings.Count(u.EscapedPath(), "/") != 3 {
				t.Errorf("Location = %q", resp.Header.Get("Location"))
			}
		})
	}
}

func TestAdminConsentOff(t *testing.T) {
	store, err := tokencache.New(tokencache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s, err := New(Options{PublicURL: "https://bridge.example.com", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/admin/consent?tenant="+tenantA, nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("status = %d, want 404 without an Entra client ID", rec.Code)
	}
}

// FuzzConsentResult checks that any answer at the callback without state
// gives a page that shows no markup from the query.
func FuzzConsentResult(f *testing.F) {
	for _, s := range []string{
		"admin_consent=True&tenant=" + tenantA,
		"admin_consent=False",
		"error=access_denied&error_description=AADSTS90094%3A+The+grant+requires+admin+permission.",
		"error=invalid_grant&error_description=AADSTS65001%3A+x%0D%0ATrace+ID%3A+1",
		"error=%3Cb%3E&tenant=%3Ci%3E.com",
	} {
		f.Add(s)
	}
	store, err := tokencache.New(tokencache.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	s, err := New(Options{PublicURL: "https://bridge.example.com", Store: store, Entra: idp.EntraConfig{ClientID: entraClientID}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, err := url.ParseQuery(rawQuery)
		if err != nil || q.Has("state") || !adminConsentResponse(q) {
			return
		}
		// A consent started here, so the answer gets the result page.
		start := httptest.NewRecorder()
		s.ServeHTTP(start, httptest.NewRequest(http.MethodGet, "/admin/consent?tenant="+tenantA, nil))
		loc, _ := url.Parse(start.Header().Get("Location"))
		q.Set("state", loc.Query().Get("state"))
		req := httptest.NewRequest(http.MethodGet, "/oauth/callback", nil)
		req.URL.RawQuery = q.Encode()
		for _, c := range start.Result().Cookies() {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("status = %d", rec.Code)
		}
		body := rec.Body.String()
		for _, v := range q {
			for _, s := range v {
				// The page's own markup holds short runs such as "<p>".
				if strings.ContainsAny(s, "<>") && strings.Contains(body, s) && !strings.Contains(consentHTML, s) {
					t.Fatalf("page shows %q unescaped", s)
				}
			}
		}
	})
}

// refreshUpstream is a K2 host whose OData service refresh records its callers.
type refreshUpstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []string // "METHOD path Authorization"
	status int
}

func newRefreshUpstream(t *testing.T) *refreshUpstream {
	u := &refreshUpstream{status: http.StatusOK}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.calls = append(u.calls, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		status := u.status
		u.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *refreshUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.calls...)
}

func TestRefreshSource(t *testing.T) {
	up := newRefreshUpstream(t)
	b := newEntraBridge(t, func(_ *idp.EntraConfig, src *Source) { src.RefreshURL = up.srv.URL + "/api/odata/op/refresh" })
	ctx := context.Background()
	sid, err := b.store.CreateSession(ctx, tokencache.Session{Subject: "dave", AccessToken: "provider-token-of-dave", Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := b.store.Issue(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}

	resp, body := b.do(t, http.MethodPost, "/admin/sources/k2/refresh", nil)
	if resp.StatusCode != http.StatusUnauthorized || len(up.seen()) != 0 {
		t.Fatalf("anonymous: status = %d, upstream calls %d; want 401 and none (%s)", resp.StatusCode, len(up.seen()), body)
	}
	resp, body = b.do(t, http.MethodPost, "/admin/sources/k2/refresh", bearer(string(toks.AccessToken)))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"refreshed":true`) {
		t.Fatalf("signed in: status = %d, body %s", resp.StatusCode, body)
	}
	resp, body = b.do(t, http.MethodPost, "/admin/sources/k2/refresh", bearer(b.idp.Token(t, tenantA, "alice", b.url, nil)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("organizational account: status = %d, body %s", resp.StatusCode, body)
	}
	seen := up.seen()
	if len(seen) != 2 || seen[0] != "GET /api/odata/op/refresh Bearer provider-token-of-dave" || !strings.HasPrefix(seen[1], "GET /api/odata/op/refresh Bearer obo_alice_") {
		t.Errorf("upstream saw %q; want each caller's own token at the refresh endpoint", seen)
	}

	up.mu.Lock()
	up.status = http.StatusForbidden
	up.mu.Unlock()
	if resp, body := b.do(t, http.MethodPost, "/admin/sources/k2/refresh", bearer(string(toks.AccessToken))); resp.StatusCode != http.StatusForbidden {
		t.Errorf("upstream 403: status = %d, body %s; want 403", resp.StatusCode, body)
	}
	if resp, _ := b.do(t, http.MethodPost, "/admin/sources/nope/refresh", bearer(string(toks.AccessToken))); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown source: status = %d, want 404", resp.StatusCode)
	}
	if resp, _ := b.do(t, http.MethodGet, "/admin/sources/k2/refresh", bearer(string(toks.AccessToken))); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status = %d, want 405", resp.StatusCode)
	}
}

func TestRefreshSourceWithoutRefresh(t *testing.T) {
	b := newEntraBridge(t, nil)
	resp, body := b.do(t, http.MethodPost, "/admin/sources/k2/refresh", bearer(b.idp.Token(t, tenantA, "alice", b.url, nil)))
	var e struct{ Error struct{ Code string } }
	json.Unmarshal([]byte(body), &e)
	if resp.StatusCode != http.StatusNotFound || e.Error.Code != "NotFound" {
		t.Errorf("status = %d, body %s; want 404 NotFound", resp.StatusCode, body)
	}
}

package connector

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/redis/go-redis/v9"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// providerStep follows the bridge's redirect to the identity provider (a
// mockoidc that signs the next queued user in without asking) and returns
// the callback URL the provider sends the browser to.
func (b *bridge) providerStep(t *testing.T, resp *http.Response) string {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want 302 to the identity provider", resp.StatusCode)
	}
	idpResp, err := noRedirects.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	idpResp.Body.Close()
	cb := idpResp.Header.Get("Location")
	if !strings.HasPrefix(cb, b.url+"/oauth/callback?") {
		t.Fatalf("provider redirected to %q, want the bridge's callback", redact(cb))
	}
	return cb
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// pageSignIn signs browser in on the page and returns its page cookie and
// the page's CSRF token.
func (b *bridge) pageSignIn(t *testing.T, browser *http.Client) (*http.Cookie, string) {
	t.Helper()
	resp, _ := browse(t, browser, b.url+"/signin")
	resp, _ = browse(t, browser, b.providerStep(t, resp))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: status %d, want 303 to the page", resp.StatusCode)
	}
	cookie := jarCookie(browser, b.url, cookieName)
	if cookie == nil {
		t.Fatal("no page cookie after the sign-in")
	}
	_, body := browse(t, browser, b.url+"/")
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("signed-in page has no CSRF token:\n%s", body)
	}
	return cookie, m[1]
}

// jarCookie is the cookie name that browser holds for base, or nil.
func jarCookie(browser *http.Client, base, name string) *http.Cookie {
	u, _ := url.Parse(base)
	for _, c := range browser.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// call sends one request with the given cookie and headers and returns
// the status and body.
func (b *bridge) call(t *testing.T, method, path string, cookie *http.Cookie, header http.Header, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, b.url+path, strings.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// TestLoginCSRF: a callback URL prepared in the attacker's browser (with
// the attacker's code) signs nobody in when a victim opens it, for the
// page's sign-in and for a connector's authorize alike.
func TestLoginCSRF(t *testing.T) {
	_, challenge := pkce()
	for _, start := range []string{"/signin", "/oauth/authorize?" + connectorQuery(challenge).Encode()} {
		t.Run(strings.SplitN(start, "?", 2)[0], func(t *testing.T) {
			b := newBridge(t, nil)
			attacker := newBrowser(t)
			resp, _ := browse(t, attacker, b.url+start)
			cb := b.providerStep(t, resp)

			victim := newBrowser(t)
			before := b.idp.tokenCalls.Load()
			resp, body := browse(t, victim, cb)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("victim's callback: status %d, Location %q; want 400 and no redirect", resp.StatusCode, redact(resp.Header.Get("Location")))
			}
			if !strings.Contains(body, "another browser") {
				t.Errorf("error page does not say why:\n%s", body)
			}
			checkPageHeaders(t, resp)
			if n := b.idp.tokenCalls.Load() - before; n != 0 {
				t.Errorf("provider code redeemed %d times for the victim, want 0 (no session)", n)
			}
			if c := jarCookie(victim, b.url, cookieName); c != nil {
				t.Errorf("victim got a page cookie")
			}
			for _, c := range resp.Cookies() {
				if c.Name == cookieName && c.MaxAge >= 0 {
					t.Errorf("callback set a page cookie for the victim")
				}
			}

			// The browser that started it finishes it, once; a copy of its
			// cookie replayed afterwards is refused.
			sent := attacker.Jar.Cookies(&url.URL{Scheme: "http", Host: strings.TrimPrefix(b.url, "http://")})
			resp, _ = browse(t, attacker, cb)
			if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("starting browser's callback: status %d, want a redirect", resp.StatusCode)
			}
			req, _ := http.NewRequest(http.MethodGet, cb, nil)
			for _, c := range sent {
				req.AddCookie(c)
			}
			resp, err := noRedirects.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("replay with a copied sign-in cookie: status %d, want 400", resp.StatusCode)
			}
		})
	}
}

// TestSignInCookieHasNoServerState: many anonymous sign-in starts from one
// client store nothing and keep no memory; the pending state travels in
// the browser's cookie.
func TestSignInCookieHasNoServerState(t *testing.T) {
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rc.Close() })
	store, err := tokencache.New(tokencache.Options{Redis: rc, Keys: []tokencache.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	idp := newTestIdP(t)
	s, err := New(Options{
		PublicURL: "https://bridge.example.com",
		Store:     store,
		Provider:  newProvider(providerConfig{Issuer: idp.m.Issuer(), ClientID: idp.m.ClientID, ClientSecret: idp.m.ClientSecret, RedirectURL: "https://bridge.example.com/oauth/callback"}),
		Clients:   []Client{{ID: "powerbi", RedirectURIs: []string{powerBIRedirect}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	start := func() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/signin", nil)
		req.RemoteAddr = "203.0.113.7:4711"
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusFound {
			t.Fatalf("GET /signin: status %d, want 302", rec.Code)
		}
	}
	start() // the provider's discovery document is read once
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 20000
	for range n {
		start()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if keys := mr.Keys(); len(keys) != 0 {
		t.Errorf("%d sign-in starts left %d keys in the store, want 0", n+1, len(keys))
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 2<<20 {
		t.Errorf("%d sign-in starts grew the heap by %d bytes, want at most 2 MiB", n, grew)
	}
}

// TestSignOutEndsCopiedCookie: after sign-out, a copy of the page cookie
// taken before it opens nothing.
func TestSignOutEndsCopiedCookie(t *testing.T) {
	b := newBridge(t, nil)
	browser := newBrowser(t)
	cookie, csrf := b.pageSignIn(t, browser)
	csrfHeader := http.Header{"X-CSRF-Token": {csrf}, "Content-Type": {"application/json"}}
	if st, body := b.call(t, http.MethodPost, "/api/keys", cookie, csrfHeader, `{"name":"before"}`); st != http.StatusCreated {
		t.Fatalf("POST /api/keys before sign-out: status %d %s", st, body)
	}

	resp, err := browser.PostForm(b.url+"/signout", url.Values{"csrf": {csrf}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: status %d, want 303", resp.StatusCode)
	}
	if jarCookie(browser, b.url, cookieName) != nil {
		t.Error("the browser kept the page cookie after sign-out")
	}

	for _, tc := range []struct {
		method, path, body string
		header             http.Header
		want               int
	}{
		{http.MethodGet, "/api/keys", "", nil, http.StatusUnauthorized},
		{http.MethodPost, "/api/keys", `{"name":"after"}`, csrfHeader, http.StatusUnauthorized},
		{http.MethodDelete, "/api/keys/AAAAAAAAAAAAAAAA", "", csrfHeader, http.StatusUnauthorized},
	} {
		if st, body := b.call(t, tc.method, tc.path, cookie, tc.header, tc.body); st != tc.want {
			t.Errorf("%s %s with the copied cookie: status %d %s, want %d", tc.method, tc.path, st, body, tc.want)
		}
	}
	st, body := b.call(t, http.MethodGet, "/", cookie, nil, "")
	if st != http.StatusOK || strings.Contains(body, csrf) || strings.Contains(body, `id="sign-out"`) {
		t.Errorf("GET / with the copied cookie: status %d, want the signed-out page:\n%s", st, body)
	}
}

// bearerJSON is a bearer header for a JSON body.
func bearerJSON(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {"application/json"}}
}

func TestFeedKeyLimit(t *testing.T) {
	b := newBridge(t, nil, func(o *Options) { o.MaxKeysPerUser = 2 })
	access, _ := b.signIn(t)
	var ids []string
	for i := range 2 {
		st, body := b.call(t, http.MethodPost, "/api/keys", nil, bearerJSON(access), fmt.Sprintf(`{"name":"k%d"}`, i))
		if st != http.StatusCreated {
			t.Fatalf("key %d: status %d %s, want 201", i, st, body)
		}
		var k struct{ ID string }
		json.Unmarshal([]byte(body), &k)
		ids = append(ids, k.ID)
	}
	// The limit is per user, across the user's sessions.
	other, _ := b.signIn(t)
	st, body := b.call(t, http.MethodPost, "/api/keys", nil, bearerJSON(other), `{"name":"third"}`)
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &e); st != http.StatusConflict || err != nil || e.Error.Code == "" || !strings.Contains(e.Error.Message, "2") {
		t.Errorf("key beyond the limit: status %d %s, want 409 with a JSON error", st, body)
	}
	if st, _ := b.call(t, http.MethodDelete, "/api/keys/"+ids[0], nil, bearer(access), ""); st != http.StatusNoContent {
		t.Fatalf("revoke: status %d", st)
	}
	if st, body := b.call(t, http.MethodPost, "/api/keys", nil, bearerJSON(access), `{"name":"again"}`); st != http.StatusCreated {
		t.Errorf("key after revoking one: status %d %s, want 201", st, body)
	}
}

func TestDeleteKeyNotFound(t *testing.T) {
	b := newBridge(t, nil)
	alice, _ := b.signIn(t)
	st, body := b.call(t, http.MethodPost, "/api/keys", nil, bearerJSON(alice), `{"name":"alice's"}`)
	if st != http.StatusCreated {
		t.Fatalf("POST /api/keys: %d %s", st, body)
	}
	var k struct{ ID, Key string }
	json.Unmarshal([]byte(body), &k)

	b.idp.m.QueueUser(&mockoidc.MockUser{Subject: "mallory", Email: "mallory@example.com", PreferredUsername: "mallory"})
	mallory, _ := b.signIn(t)
	for name, id := range map[string]string{
		"someone else's key": k.ID,
		"unknown key":        "AAAAAAAAAAAAAAAA",
		"malformed ID":       "..",
	} {
		st, body := b.call(t, http.MethodDelete, "/api/keys/"+id, nil, bearer(mallory), "")
		var e struct {
			Error struct{ Code string }
		}
		if err := json.Unmarshal([]byte(body), &e); st != http.StatusNotFound || err != nil || e.Error.Code != "NotFound" {
			t.Errorf("%s: status %d %s, want 404 with a JSON NotFound error", name, st, body)
		}
	}
	if st, _ := b.call(t, http.MethodDelete, "/api/keys/"+k.ID, nil, nil, ""); st != http.StatusUnauthorized {
		t.Errorf("DELETE without credentials: status %d, want 401", st)
	}
	basic := http.Header{"Authorization": {"Basic " + basicValue("x", k.Key)}}
	if resp, _ := b.get(t, "/odata/test/People", basic); resp.StatusCode != http.StatusOK {
		t.Errorf("alice's key after mallory's attempts: status %d, want 200", resp.StatusCode)
	}
}

// TestSlowBodyIsCut: a body sent a byte at a time is cut after
// BodyTimeout, on the page API and on the relay alike.
func TestSlowBodyIsCut(t *testing.T) {
	batchFeed := feedFunc(func(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Query().Has("slow") {
			// A long answer after a body that came in time: the read
			// deadline must not cancel it.
			time.Sleep(1200 * time.Millisecond)
			if err := r.Context().Err(); err != nil {
				http.Error(w, "cancelled: "+err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	b := newBridge(t, func(*idp.Provider) []Source {
		return []Source{{Name: "test", Kind: "odata", Auth: "user", Feed: batchFeed}}
	}, func(o *Options) { o.BodyTimeout = 500 * time.Millisecond })
	access, _ := b.signIn(t)
	t.Run("a body in time, then a long answer", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, b.url+"/odata/test/$batch?slow=1", strings.NewReader(strings.Repeat("x", 1000)))
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d %s, want 200", resp.StatusCode, body)
		}
	})
	for _, path := range []string{"/api/keys", "/odata/test/$batch"} {
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(b.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: bridge\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", path, access)
			start := time.Now()
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for range 1000 {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}()
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("the slow body held the connection for %v, want it cut after about 500ms", took)
			}
			if err == nil && resp.StatusCode < 400 {
				t.Errorf("status %d for a body that never arrived, want an error or a closed connection", resp.StatusCode)
			}
		})
	}
}

// TestAuthorizationResponseIss: every authorization response to the
// connector names the bridge as iss (RFC 9207), and the metadata says so.
func TestAuthorizationResponseIss(t *testing.T) {
	b := newBridge(t, nil)
	_, challenge := pkce()
	if got := b.login(t, challenge).Query().Get("iss"); got != b.url {
		t.Errorf("success response: iss = %q, want %q", got, b.url)
	}

	u, _ := url.Parse(b.providerCallback(t, challenge))
	q := u.Query()
	q.Del("code")
	q.Set("error", "access_denied")
	u.RawQuery = q.Encode()
	resp, _ := browse(t, b.browser, u.String())
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if got := loc.Query().Get("iss"); got != b.url || loc.Query().Get("error") == "" {
		t.Errorf("error response %v: iss = %q, want %q", loc.Query(), got, b.url)
	}

	bad := connectorQuery(challenge)
	bad.Set("code_challenge_method", "plain")
	resp, _ = browse(t, b.browser, authorizeURL(b.url, bad))
	loc, _ = url.Parse(resp.Header.Get("Location"))
	if got := loc.Query().Get("iss"); got != b.url {
		t.Errorf("authorize error response %v: iss = %q, want %q", loc.Query(), got, b.url)
	}

	_, body := b.get(t, "/.well-known/oauth-authorization-server", nil)
	var md map[string]any
	json.Unmarshal([]byte(body), &md)
	if md["authorization_response_iss_parameter_supported"] != true || md["issuer"] != b.url {
		t.Errorf("metadata: authorization_response_iss_parameter_supported = %v, issuer = %v", md["authorization_response_iss_parameter_supported"], md["issuer"])
	}
}

// TestHTTPSCookiesAndHSTS: on an https public URL, cookies carry the
// __Host- prefix and every response has HSTS; on http neither.
func TestHTTPSCookiesAndHSTS(t *testing.T) {
	idp := newTestIdP(t)
	for _, public := range []string{"https://bridge.example.com", "http://127.0.0.1:1"} {
		t.Run(public, func(t *testing.T) {
			store, err := tokencache.New(tokencache.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			s, err := New(Options{
				PublicURL: public,
				Store:     store,
				Provider:  newProvider(providerConfig{Issuer: idp.m.Issuer(), ClientID: idp.m.ClientID, ClientSecret: idp.m.ClientSecret, RedirectURL: public + "/oauth/callback", Scopes: []string{"openid", "profile", "email"}}),
			})
			if err != nil {
				t.Fatal(err)
			}
			https := strings.HasPrefix(public, "https:")
			serve := func(req *http.Request) *http.Response {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, req)
				return rec.Result()
			}
			for _, path := range []string{"/healthz", "/", "/oauth/authorize?client_id=nobody", "/nowhere"} {
				resp := serve(httptest.NewRequest(http.MethodGet, path, nil))
				if got := resp.Header.Get("Strict-Transport-Security"); (got == "max-age=31536000") != https {
					t.Errorf("GET %s: Strict-Transport-Security = %q", path, got)
				}
				if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
					t.Errorf("GET %s: X-Content-Type-Options = %q, want nosniff", path, got)
				}
			}

			// The sign-in cookie, then the page cookie, through a real sign-in.
			resp := serve(httptest.NewRequest(http.MethodGet, "/signin", nil))
			signin := resp.Cookies()
			if len(signin) != 1 || strings.HasPrefix(signin[0].Name, "__Host-") != https || signin[0].Secure != https ||
				!signin[0].HttpOnly || signin[0].Path != "/" || signin[0].SameSite != http.SameSiteLaxMode || signin[0].Domain != "" {
				t.Fatalf("sign-in cookies %+v", signin)
			}
			idpResp, err := noRedirects.Get(resp.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			idpResp.Body.Close()
			cb, _ := url.Parse(idpResp.Header.Get("Location"))
			req := httptest.NewRequest(http.MethodGet, cb.RequestURI(), nil)
			req.AddCookie(signin[0])
			resp = serve(req)
			if resp.StatusCode != http.StatusSeeOther {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("callback %s: status %d, want 303: %s", cb.Path, resp.StatusCode, b)
			}
			var page *http.Cookie
			for _, c := range resp.Cookies() {
				if strings.HasSuffix(c.Name, cookieName) {
					page = c
				}
			}
			want := cookieName
			if https {
				want = "__Host-" + cookieName
			}
			if page == nil || page.Name != want || page.Secure != https || page.Path != "/" || !page.HttpOnly {
				t.Errorf("page cookie %+v, want %s", page, want)
			}
		})
	}
}

// TestErrorPagesHaveSecurityHeaders: error pages carry the page's headers.
func TestErrorPagesHaveSecurityHeaders(t *testing.T) {
	b := newBridge(t, nil)
	for _, path := range []string{
		"/oauth/authorize?client_id=nobody",
		"/oauth/callback",
		"/oauth/callback?state=" + strings.Repeat("A", 43) + "&code=x",
	} {
		resp, _ := b.get(t, path, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: status %d, want 400", path, resp.StatusCode)
		}
		checkPageHeaders(t, resp)
	}
}

func basicValue(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// TestSignInCookieFitsABrowser: the longest client state the bridge takes
// still gives a cookie that browsers keep (4 KiB with its name); a longer
// one is refused at the client's redirect URI.
func TestSignInCookieFitsABrowser(t *testing.T) {
	b := newBridge(t, nil)
	_, challenge := pkce()
	for _, tc := range []struct {
		n    int
		fits bool
	}{{maxClientState, true}, {maxClientState + 1, false}} {
		q := connectorQuery(challenge)
		q.Set("state", strings.Repeat("<", tc.n)) // JSON's HTML escaping would make each six bytes
		resp, _ := browse(t, newBrowser(t), authorizeURL(b.url, q))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if !tc.fits {
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), powerBIRedirect) || loc.Query().Get("error") != "invalid_request" {
				t.Errorf("state of %d: status %d to %q, want invalid_request at the client", tc.n, resp.StatusCode, redact(loc.String()))
			}
			continue
		}
		cookies := resp.Cookies()
		if resp.StatusCode != http.StatusFound || len(cookies) != 1 {
			t.Fatalf("state of %d: status %d, %d cookies; want 302 and one sign-in cookie", tc.n, resp.StatusCode, len(cookies))
		}
		if size := len(cookies[0].Name) + len(cookies[0].Value); size > 4000 {
			t.Errorf("state of %d: sign-in cookie of %d bytes, want at most 4000", tc.n, size)
		}
	}
}

// TestFeedKeyCannotManageKeys: a feed key reads feeds, but the key API
// refuses it, so a leaked key can neither mint others nor list them.
func TestFeedKeyCannotManageKeys(t *testing.T) {
	b := newBridge(t, nil)
	access, _ := b.signIn(t)
	st, body := b.call(t, http.MethodPost, "/api/keys", nil, bearerJSON(access), `{"name":"excel"}`)
	if st != http.StatusCreated {
		t.Fatalf("create: status %d %s", st, body)
	}
	var k struct{ ID, Key string }
	json.Unmarshal([]byte(body), &k)
	basic := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+k.Key))}, "Content-Type": {"application/json"}}
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/api/keys"},
		{http.MethodPost, "/api/keys"},
		{http.MethodDelete, "/api/keys/" + k.ID},
		{http.MethodGet, "/api/keys?api_key=" + k.Key},
	} {
		h := basic
		if strings.Contains(tc.path, "api_key=") {
			h = nil
		}
		if st, body := b.call(t, tc.method, tc.path, nil, h, `{"name":"minted"}`); st != http.StatusUnauthorized {
			t.Errorf("%s %s with a feed key: status %d %s, want 401", tc.method, tc.path, st, body)
		}
	}
	// The key itself still reads feeds.
	if resp, body := b.get(t, "/odata/test/People", http.Header{"Authorization": basic["Authorization"]}); resp.StatusCode != http.StatusOK {
		t.Errorf("feed with the key: status %d %s", resp.StatusCode, body)
	}
}

// TestSignInCookiesAreBounded: a page that starts sign-ins over and over in
// one browser does not grow its cookies without end.
func TestSignInCookiesAreBounded(t *testing.T) {
	b := newBridge(t, nil)
	browser := newBrowser(t)
	for range 40 {
		resp, _ := browse(t, browser, b.url+"/signin")
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("/signin: status %d", resp.StatusCode)
		}
	}
	u, _ := url.Parse(b.url)
	n := 0
	for _, ck := range browser.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, signinCookieName) {
			n++
		}
	}
	if n == 0 || n > maxPendingSignIns {
		t.Errorf("%d sign-in cookies after 40 starts, want 1 to %d", n, maxPendingSignIns)
	}
}

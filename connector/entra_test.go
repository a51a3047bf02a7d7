package connector

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/idp/idptest"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
	"golang.org/x/oauth2"
)

// upstreamLog records what reached the upstream of a test source.
type upstreamLog struct {
	calls atomic.Int64
	mu    sync.Mutex
	auth  []string
}

func (u *upstreamLog) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auth...)
}

// feed is a test Feed: it counts its calls, has the Authorizer set the
// upstream credentials, and echoes them.
func (u *upstreamLog) feed(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) {
	u.calls.Add(1)
	out, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://upstream.invalid/"+path, nil)
	if auth != nil {
		if err := auth.Authorize(r.Context(), out, false); err != nil {
			WriteError(w, "4.0", err)
			return
		}
	}
	u.mu.Lock()
	u.auth = append(u.auth, out.Header.Get("Authorization"))
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"path": path, "upstream_authorization": out.Header.Get("Authorization"), "user": user})
}

// entraBridge is a connector with organizational accounts on, in front of
// the test Entra identity provider.
type entraBridge struct {
	url      string
	idp      *idptest.Entra
	store    *tokencache.Store
	upstream *upstreamLog
	opts     idp.EntraConfig
	serve    feedFunc // the source's feed; zero: upstream.feed
}

// setServe replaces the source's feed; call it before the first request.
func (b *entraBridge) setServe(f feedFunc) { b.serve = f }

func newEntraBridge(t testing.TB, tweak func(o *idp.EntraConfig, src *Source)) *entraBridge {
	t.Helper()
	p := idptest.NewEntra(t)
	store, err := tokencache.New(tokencache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv := httptest.NewUnstartedServer(nil)
	public := "http://" + srv.Listener.Addr().String()
	up := &upstreamLog{}
	opts := idp.EntraConfig{
		Authority:      p.URL,
		AllowedTenants: []string{tenantA, tenantB},
		ClientID:       entraClientID,
		ClientSecret:   entraSecret,
		OrgAccount:     true,
	}
	b := &entraBridge{idp: p, store: store, upstream: up}
	src := Source{Name: "k2", Kind: "odata", Auth: "user", Resource: "https://api.k2.com",
		Feed: feedFunc(func(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) {
			if b.serve != nil {
				b.serve(w, r, path, user, auth)
				return
			}
			up.feed(w, r, path, user, auth)
		})}
	if tweak != nil {
		tweak(&opts, &src)
	}
	s, err := New(Options{PublicURL: public, Store: store, Sources: []Source{src}, Entra: opts})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = s
	srv.Start()
	t.Cleanup(srv.Close)
	b.url, b.opts = public, opts
	return b
}

func (b *entraBridge) do(t *testing.T, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, b.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// bearerChallenge is the Bearer challenge of a 401, or "".
func bearerChallenge(resp *http.Response) string {
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		if strings.HasPrefix(v, "Bearer ") {
			return v
		}
	}
	return ""
}

func hasBasic(resp *http.Response) bool {
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		if strings.HasPrefix(v, "Basic ") {
			return true
		}
	}
	return false
}

func TestOrgAccountChallenge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tenant string
		header http.Header
		want   string // the tenant in authorization_uri
	}{
		{"no credentials, any tenant", "", nil, "common"},
		{"empty bearer, any tenant", "", http.Header{"Authorization": {"Bearer "}}, "common"},
		{"empty bearer, pinned tenant", tenantA, http.Header{"Authorization": {"Bearer"}}, tenantA},
		{"no credentials, pinned domain", tenantADomain, nil, tenantADomain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newEntraBridge(t, func(o *idp.EntraConfig, _ *Source) { o.Tenant = tc.tenant })
			resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", tc.header)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401; body %s", resp.StatusCode, body)
			}
			want := `Bearer authorization_uri="` + b.idp.URL + "/" + tc.want + `/oauth2/authorize", realm="OData Bridge"`
			if got := bearerChallenge(resp); got != want {
				t.Errorf("Bearer challenge = %q, want %q", got, want)
			}
			if !hasBasic(resp) {
				t.Errorf("WWW-Authenticate = %q, want a Basic challenge too", resp.Header.Values("WWW-Authenticate"))
			}
			if n := b.upstream.calls.Load(); n != 0 {
				t.Errorf("upstream calls = %d, want 0", n)
			}
		})
	}
}

func TestOrgAccountChallengeOffWithoutOrgAccount(t *testing.T) {
	b := newEntraBridge(t, func(o *idp.EntraConfig, _ *Source) { o.OrgAccount = false })
	resp, _ := b.do(t, http.MethodGet, "/odata/k2/Items", http.Header{"Authorization": {"Bearer "}})
	if got, want := bearerChallenge(resp), `Bearer realm="OData Bridge"`; got != want {
		t.Errorf("Bearer challenge = %q, want %q (no authorization_uri while org_account is off)", got, want)
	}
	// A valid Entra token is not a bridge token when organizational accounts are off.
	tok := b.idp.Token(t, tenantA, "alice", b.url, nil)
	resp, _ = b.do(t, http.MethodGet, "/odata/k2/Items", bearer(tok))
	if resp.StatusCode != http.StatusUnauthorized || b.idp.OBOCalls.Load() != 0 {
		t.Errorf("status = %d, OBO calls = %d; want 401 and 0", resp.StatusCode, b.idp.OBOCalls.Load())
	}
}

func TestOrgAccountReplay(t *testing.T) {
	b := newEntraBridge(t, nil)
	alice := b.idp.Token(t, tenantA, "alice", b.url, nil)

	// Power Query first discovers the challenge, then signs in and sends the token.
	resp, _ := b.do(t, http.MethodGet, "/odata/k2/Items", http.Header{"Authorization": {"Bearer "}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("empty bearer: status = %d, want 401", resp.StatusCode)
	}
	var first map[string]string
	for i, path := range []string{"/odata/k2/Items", "/odata/k2/Items?$skiptoken=1000", "/odata/k2/Items?$skiptoken=2000"} {
		resp, body := b.do(t, http.MethodGet, path, bearer(alice))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d: status = %d, want 200; body %s", i, resp.StatusCode, body)
		}
		var got map[string]string
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = got
			if !strings.HasPrefix(got["upstream_authorization"], "Bearer obo_alice_") {
				t.Errorf("upstream Authorization = %q, want alice's on-behalf-of token", got["upstream_authorization"])
			}
		} else if got["upstream_authorization"] != first["upstream_authorization"] || got["user"] != first["user"] {
			t.Errorf("page %d: upstream Authorization, user = %q, %q; want the first page's %q, %q",
				i, got["upstream_authorization"], got["user"], first["upstream_authorization"], first["user"])
		}
	}
	if got := b.idp.OBOCalls.Load(); got != 1 {
		t.Errorf("OBO calls after three pages = %d, want 1", got)
	}
	if b.idp.LastScope != "https://api.k2.com/.default" || b.idp.LastClient != entraClientID {
		t.Errorf("OBO scope, client = %q, %q; want https://api.k2.com/.default, %s", b.idp.LastScope, b.idp.LastClient, entraClientID)
	}

	// A new token of the same person reuses the result; another person gets their own.
	again := b.idp.Token(t, tenantA, "alice", b.url, map[string]any{"iat": time.Now().Unix() + 1})
	if resp, _ := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(again)); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's second token: status = %d", resp.StatusCode)
	}
	bob := b.idp.Token(t, tenantA, "bob", b.url, map[string]any{"iss": idptest.V1Issuer(tenantA), "ver": "1.0"})
	resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(bob))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "obo_bob_") {
		t.Fatalf("bob (a v1 token): status = %d, body %s; want 200 with bob's token", resp.StatusCode, body)
	}
	if got := b.idp.OBOCalls.Load(); got != 2 {
		t.Errorf("OBO calls after alice again and bob = %d, want 2", got)
	}
	seen := b.upstream.seen()
	if len(seen) != 5 || seen[4] == seen[0] {
		t.Errorf("upstream saw %d calls, bob's = alice's: %v", len(seen), len(seen) == 5 && seen[4] == seen[0])
	}
}

func TestOrgAccountRefusals(t *testing.T) {
	b := newEntraBridge(t, func(o *idp.EntraConfig, _ *Source) { o.Tenant, o.AllowedTenants = tenantA, nil })
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := b.idp.Claims(tenantA, "alice", b.url)
	with := func(k string, v any) map[string]any {
		c := b.idp.Claims(tenantA, "alice", b.url)
		c[k] = v
		return c
	}
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"wrong audience", b.idp.Sign(t, with("aud", "https://other.example.com"), "RS256", nil)},
		{"audience is the client ID", b.idp.Sign(t, with("aud", entraClientID), "RS256", nil)},
		{"wrong tenant where pinned", b.idp.Token(t, tenantB, "mallory", b.url, nil)},
		{"issuer of another tenant", b.idp.Sign(t, with("iss", b.idp.V2Issuer(tenantB)), "RS256", nil)},
		{"expired", b.idp.Sign(t, with("exp", time.Now().Add(-time.Hour).Unix()), "RS256", nil)},
		{"bad signature", b.idp.Sign(t, valid, "RS256", other)},
		{"alg none", idptest.Unsigned(valid)},
		{"HS256 with the public key", b.idp.Sign(t, valid, "HS256", b.idp.PublicKeyDER(t))},
		{"no oid", b.idp.Sign(t, with("oid", ""), "RS256", nil)},
		// An application's own token (client credentials, /.default) has
		// roles and no scp: no user is behind it.
		{"app-only token: no scp", b.idp.Sign(t, func() map[string]any {
			c := with("roles", []string{"Feeds.Read"})
			delete(c, "scp")
			return c
		}(), "RS256", nil)},
		{"app-only token: idtyp app", b.idp.Sign(t, with("idtyp", "app"), "RS256", nil)},
		{"three dots of garbage", "a.b.c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(tc.token))
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401; body %s", resp.StatusCode, body)
			}
			want := `Bearer authorization_uri="` + b.idp.URL + "/" + tenantA + `/oauth2/authorize", realm="OData Bridge", error="invalid_token"`
			if got := bearerChallenge(resp); got != want {
				t.Errorf("Bearer challenge = %q, want %q", got, want)
			}
			if strings.Contains(body, tc.token) {
				t.Errorf("the body repeats the token: %s", body)
			}
		})
	}
	if n := b.upstream.calls.Load(); n != 0 {
		t.Errorf("upstream calls = %d, want 0", n)
	}
	if n := b.idp.OBOCalls.Load(); n != 0 {
		t.Errorf("OBO calls = %d, want 0", n)
	}
	// The same bridge accepts the valid token, so the refusals above are the claims' doing.
	if resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(b.idp.Sign(t, valid, "RS256", nil))); resp.StatusCode != http.StatusOK {
		t.Errorf("valid token: status = %d, want 200; body %s", resp.StatusCode, body)
	}
}

func TestOrgAccountExchangeFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      func(p *idptest.Entra)
		tenant     string
		wantStatus int
		wantCode   string
		wantText   string
	}{
		{"consent missing", func(*idptest.Entra) {}, tenantB, http.StatusForbidden, "ConsentRequired",
			"/" + tenantB + "/v2.0/adminconsent?client_id=" + entraClientID},
		{"interaction required", func(p *idptest.Entra) { p.Refuse = "AADSTS65001: consent" }, tenantA, http.StatusForbidden, "ConsentRequired", "adminconsent"},
		{"token refused", func(p *idptest.Entra) { p.Refuse = "AADSTS50013: Assertion is not within its valid time range." }, tenantA, http.StatusUnauthorized, "InvalidToken", ""},
		{"provider down", func(p *idptest.Entra) { p.Down = true }, tenantA, http.StatusServiceUnavailable, "ProviderUnavailable", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newEntraBridge(t, nil)
			b.idp.Set(tc.setup)
			resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(b.idp.Token(t, tc.tenant, "alice", b.url, nil)))
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tc.wantStatus, body)
			}
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if e.Error.Code != tc.wantCode || !strings.Contains(e.Error.Message, tc.wantText) {
				t.Errorf("error = %+v, want code %s with %q", e.Error, tc.wantCode, tc.wantText)
			}
			if tc.wantStatus == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if n := b.upstream.calls.Load(); n != 0 {
				t.Errorf("upstream calls = %d, want 0", n)
			}
		})
	}
}

func TestIsJWT(t *testing.T) {
	store, err := tokencache.New(tokencache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sid, err := store.CreateSession(context.Background(), tokencache.Session{Subject: "s", AccessToken: "a", Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	toks, err := store.Issue(context.Background(), sid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tok  string
		want bool
	}{
		{string(toks.AccessToken), false},
		{string(toks.RefreshToken), false},
		{"eyJhbGciOiJSUzI1NiJ9.eyJ9.sig", true},
		{"a.b", false},
		{"a.b.c.d", false},
	} {
		if got := isJWT(tc.tok); got != tc.want {
			t.Errorf("isJWT(%.12q…) = %v, want %v", tc.tok, got, tc.want)
		}
	}
}

// TestOrgAccountThroughRelay runs organizational accounts through the real
// relay: paging reuses the on-behalf-of token, and an upstream 401 makes
// one fresh exchange and one retry.
func TestOrgAccountThroughRelay(t *testing.T) {
	var (
		mu      sync.Mutex
		seen    []string
		reject  = map[string]bool{}
		rejects int
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		mu.Lock()
		seen = append(seen, a)
		bad := reject[a]
		if strings.Contains(r.URL.RawQuery, "expire") && !bad && rejects == 0 {
			// The upstream stops accepting the current token once.
			reject[a], bad = true, true
			rejects++
		}
		mu.Unlock()
		if bad {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
		w.Header().Set("OData-Version", "4.0")
		fmt.Fprintf(w, `{"@odata.context":"%s/$metadata#Items","value":[{"Id":1}]}`, "http://"+r.Host+"/api/odatav4/v4")
	}))
	defer up.Close()

	b := newEntraBridge(t, nil)
	relay, err := odata.NewRelay([]odata.Upstream{{Name: "k2", URL: up.URL + "/api/odatav4/v4/", PublicBase: b.url + "/odata/k2/"}},
		odata.Options{ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ string, err error) { WriteError(w, "4.0", err) }})
	if err != nil {
		t.Fatal(err)
	}
	b.setServe(func(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) {
		relay.Serve(w, r, "k2", path, user, auth)
	})

	tok := bearer(b.idp.Token(t, tenantA, "alice", b.url, nil))
	for i, q := range []string{"", "?$skiptoken=1000", "?$skiptoken=2000"} {
		resp, body := b.do(t, http.MethodGet, "/odata/k2/Items"+q, tok)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, b.url+"/odata/k2/$metadata") {
			t.Fatalf("page %d: status %d, body %s; want 200 with the bridge's links", i, resp.StatusCode, body)
		}
	}
	if n := b.idp.OBOCalls.Load(); n != 1 {
		t.Errorf("OBO calls after three pages = %d, want 1", n)
	}
	resp, body := b.do(t, http.MethodGet, "/odata/k2/Items?expire=1", tok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after an upstream 401: status %d, body %s; want the retry's 200", resp.StatusCode, body)
	}
	if n := b.idp.OBOCalls.Load(); n != 2 {
		t.Errorf("OBO calls after the upstream 401 = %d, want 2 (one fresh exchange)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 5 || seen[3] != seen[0] || seen[4] == seen[3] || !strings.HasPrefix(seen[4], "Bearer obo_alice_") {
		t.Errorf("upstream saw %q; want the first token three times, then a new one", seen)
	}
}

// BenchmarkOrgAccountCachedPage measures a page of an organizational
// account once the on-behalf-of token is cached: token verification, the
// cache read and the feed.
func BenchmarkOrgAccountCachedPage(b *testing.B) {
	eb := newEntraBridge(b, nil)
	tok := bearer(eb.idp.Token(b, tenantA, "alice", eb.url, nil))
	req, _ := http.NewRequest(http.MethodGet, eb.url+"/odata/k2/Items", nil)
	req.Header = tok
	for b.Loop() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	if n := eb.idp.OBOCalls.Load(); n != 1 {
		b.Errorf("OBO calls = %d, want 1", n)
	}
}

// TestOrgAccountTenants: on sources that need no on-behalf-of exchange, a
// valid token of a tenant the bridge does not accept is still refused with
// 401, and one of an allowed tenant (named by domain) is served.
func TestOrgAccountTenants(t *testing.T) {
	for _, auth := range []AuthMode{AuthNone, AuthClientCredentials} {
		t.Run(string(auth), func(t *testing.T) {
			b := newEntraBridge(t, func(o *idp.EntraConfig, src *Source) {
				o.AllowedTenants = []string{tenantADomain}
				src.Auth, src.Resource = auth, ""
				src.Service = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "service-token"})
			})
			for _, tok := range []string{
				b.idp.Token(t, tenantB, "mallory", b.url, nil),
				b.idp.Token(t, tenantB, "mallory", b.url, map[string]any{"iss": idptest.V1Issuer(tenantB), "ver": "1.0"}),
			} {
				resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(tok))
				if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "InvalidToken") {
					t.Errorf("token of a foreign tenant: status %d, body %s; want 401 InvalidToken", resp.StatusCode, body)
				}
			}
			if n := b.upstream.calls.Load(); n != 0 {
				t.Errorf("upstream calls after foreign tokens = %d, want 0", n)
			}
			resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(b.idp.Token(t, tenantA, "alice", b.url, nil)))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("token of the allowed tenant: status %d, body %s; want 200", resp.StatusCode, body)
			}
			want := ""
			if auth == "client-credentials" {
				want = "Bearer service-token"
			}
			if got := upstreamAuth(t, body); got != want {
				t.Errorf("upstream Authorization = %q, want %q", got, want)
			}
			if n := b.idp.OBOCalls.Load(); n != 0 {
				t.Errorf("OBO calls = %d, want 0 for auth %s", n, auth)
			}
		})
	}
}

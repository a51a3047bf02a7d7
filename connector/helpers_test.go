package connector

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/internal/signin"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/powerbi"
	"github.com/odata-bridge/bridge/tokencache"
)

// powerBIRedirect is the redirect URI of Power BI's custom connectors.
const powerBIRedirect = powerbi.RedirectURI

// testIdP is a real OIDC provider (mockoidc) with a token endpoint that
// counts its calls and can be made to fail.
type testIdP struct {
	m          *mockoidc.MockOIDC
	tokenCalls atomic.Int64
	ccCalls    atomic.Int64
	mu         sync.Mutex
	fail       func(w http.ResponseWriter, r *http.Request) bool
}

func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mockoidc.NewServer(key)
	if err != nil {
		t.Fatal(err)
	}
	idp := &testIdP{m: m}
	m.AccessTTL = 10 * time.Minute
	if err := m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/token") {
				next.ServeHTTP(w, r)
				return
			}
			idp.tokenCalls.Add(1)
			idp.mu.Lock()
			fail := idp.fail
			idp.mu.Unlock()
			if fail != nil && fail(w, r) {
				return
			}
			if r.ParseForm() == nil && r.PostForm.Get("grant_type") == "client_credentials" {
				idp.clientCredentials(w, r)
				return
			}
			// mockoidc writes expires_in in nanoseconds; RFC 6749 §5.1 says seconds.
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			var tr map[string]any
			if rec.Code == http.StatusOK && json.Unmarshal(body, &tr) == nil {
				if v, ok := tr["expires_in"].(float64); ok {
					tr["expires_in"] = int64(v / 1e9)
					body, _ = json.Marshal(tr)
				}
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return idp
}

// clientCredentials adds RFC 6749 §4.4 to mockoidc, which lacks it: a
// signed service token for the bridge's own client.
func (p *testIdP) clientCredentials(w http.ResponseWriter, r *http.Request) {
	p.ccCalls.Add(1)
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	w.Header().Set("Content-Type", "application/json")
	if id != p.m.ClientID || secret != p.m.ClientSecret {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"invalid_client"}`)
		return
	}
	now := time.Now()
	tok, err := p.m.Keypair.SignJWT(jwt.RegisteredClaims{
		Issuer: p.m.Issuer(), Subject: id, Audience: jwt.ClaimStrings{"upstream"},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	})
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
}

func (p *testIdP) setFail(f func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.fail = f
	p.mu.Unlock()
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// bridge is a connector under test, with its store, provider and logs.
type bridge struct {
	srv   *httptest.Server
	idp   *testIdP
	store *tokencache.Store
	prov  *idp.Provider
	clock *clock
	logs  *syncBuffer
	url   string
	// browser is one browser: it keeps cookies and stops at every redirect.
	browser *http.Client
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newBridge starts a connector with a memory store in front of a test IdP.
// sourcesFor may be nil for one source, test, whose feed echoes the
// upstream Authorization it would send.
func newBridge(t *testing.T, sourcesFor func(*idp.Provider) []Source, tweaks ...func(*Options)) *bridge {
	t.Helper()
	idp := newTestIdP(t)
	clk := &clock{now: time.Now()}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewUnstartedServer(nil)
	public := "http://" + srv.Listener.Addr().String()
	prov := newProvider(providerConfig{
		Issuer:       idp.m.Issuer(),
		ClientID:     idp.m.ClientID,
		ClientSecret: idp.m.ClientSecret,
		// mockoidc refuses offline_access; it issues refresh tokens regardless.
		Scopes:      []string{"openid", "profile", "email"},
		RedirectURL: public + "/oauth/callback",
	})
	store, err := tokencache.New(tokencache.Options{Refresher: prov, Now: clk.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sources := []Source{{Name: "test", Kind: "odata", Auth: "user", Feed: feedFunc(echoFeed)}}
	if sourcesFor != nil {
		sources = sourcesFor(prov)
	}
	opts := Options{
		PublicURL: public,
		Store:     store,
		Provider:  prov,
		Clients:   []Client{{ID: powerbi.DefaultClientID, RedirectURIs: []string{powerBIRedirect}}, {ID: "other", RedirectURIs: []string{powerBIRedirect}}},
		Sources:   sources,
		Logger:    log,
		Now:       clk.Now,
	}
	for _, tw := range tweaks {
		tw(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = s
	srv.Start()
	t.Cleanup(srv.Close)
	return &bridge{srv: srv, idp: idp, store: store, prov: prov, clock: clk, logs: logs, url: public, browser: newBrowser(t)}
}

// echoFeed answers with what the relay would send upstream as credentials.
func echoFeed(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) {
	out, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://upstream.invalid/"+path, nil)
	if auth != nil {
		if err := auth.Authorize(r.Context(), out, false); err != nil {
			WriteError(w, odata.Version4, err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"path": path, "upstream_authorization": out.Header.Get("Authorization"), "user": user})
}

// noRedirects is a client that stops at every redirect and keeps no cookies.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// newBrowser is a client with a fresh cookie jar that stops at every
// redirect: one browser.
func newBrowser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: noRedirects.CheckRedirect}
}

func pkce() (verifier, challenge string) {
	b := make([]byte, 32)
	rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func authorizeURL(base string, q url.Values) string {
	return base + "/oauth/authorize?" + q.Encode()
}

func connectorQuery(challenge string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {powerbi.DefaultClientID},
		"redirect_uri":          {powerBIRedirect},
		"state":                 {"S"},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
}

// login runs authorize → provider → callback and returns the final
// redirect to the connector's redirect URI.
func (b *bridge) login(t *testing.T, challenge string) *url.URL {
	t.Helper()
	u, err := (&signin.Client{BaseURL: b.url}).Follow(context.Background(), authorizeURL(b.url, connectorQuery(challenge)))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func redact(u string) string {
	if i := strings.Index(u, "?"); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

type tokenReply struct {
	status int
	header http.Header
	body   map[string]any
}

func (b *bridge) postForm(t *testing.T, path string, form url.Values) tokenReply {
	t.Helper()
	resp, err := http.PostForm(b.url+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return tokenReply{status: resp.StatusCode, header: resp.Header, body: body}
}

func (b *bridge) redeem(t *testing.T, code, verifier string) tokenReply {
	return b.postForm(t, "/oauth/token", url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {powerBIRedirect},
		"client_id":     {powerbi.DefaultClientID},
		"code_verifier": {verifier},
	})
}

// signIn returns a bridge access and refresh token.
func (b *bridge) signIn(t *testing.T) (access, refresh string) {
	t.Helper()
	tok, err := (&signin.Client{BaseURL: b.url}).SignIn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken, tok.RefreshToken
}

func (b *bridge) get(t *testing.T, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, b.url+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// feedFunc is a Feed made of a function, whose OData version is unknown.
type feedFunc func(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer)

func (f feedFunc) ServeFeed(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) odata.Served {
	f(w, r, path, user, auth)
	return odata.Served{}
}

func (feedFunc) Version() string { return "" }

package tokencache

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
)

// provider is a real OpenID provider in process: zitadel/oidc's OP over its example
// storage, which rotates refresh tokens and refuses a used one with invalid_grant, so a
// double refresh cannot pass unnoticed. A thin wrapper counts refresh grants and can
// slow them down or make them fail.
type provider struct {
	url      string
	storage  *storage.Storage
	config   *oauth2.Config
	refreshs atomic.Int64 // refresh_token grants that reached the OP
	delay    atomic.Int64 // nanoseconds to sleep before each refresh grant
	status   atomic.Int64 // answer refresh grants with this status instead (0: don't)
}

func startProvider(t testing.TB) *provider {
	t.Helper()
	p := &provider{}
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/oauth/token" && r.ParseForm() == nil &&
			r.PostForm.Get("grant_type") == "refresh_token" {
			if d := p.delay.Load(); d > 0 {
				time.Sleep(time.Duration(d))
			}
			if code := p.status.Load(); code != 0 {
				http.Error(w, `{"error":"temporarily_unavailable"}`, int(code))
				return
			}
			p.refreshs.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	const redirect = "http://127.0.0.1/callback"
	p.storage = storage.NewStorageWithClients(storage.NewUserStore(srv.URL),
		map[string]*storage.Client{"bridge": storage.WebClient("bridge", "secret", redirect)})
	openid, err := op.NewProvider(&op.Config{
		CryptoKey:             sha256.Sum256([]byte("test")),
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
	}, p.storage, op.StaticIssuer(srv.URL), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	handler = openid
	p.config = &oauth2.Config{
		ClientID: "bridge", ClientSecret: "secret", RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: srv.URL + "/authorize", TokenURL: srv.URL + "/oauth/token"},
		Scopes:   []string{"openid", "offline_access", "profile", "email"},
	}
	return p
}

// signIn walks the authorization-code flow as the user and returns the provider's tokens.
func (p *provider) signIn(t testing.TB) *oauth2.Token {
	t.Helper()
	ctx := context.Background()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	follow := func(u string) *url.URL {
		t.Helper()
		resp, err := noRedirect.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("GET %s: %s, no redirect", u, resp.Status)
		}
		return loc
	}
	login := follow(p.config.AuthCodeURL("state"))
	id := login.Query().Get("authRequestID")
	if id == "" {
		t.Fatalf("no auth request in %s", login)
	}
	if err := p.storage.CheckUsernamePassword("test-user@127.0.0.1", "verysecure", id); err != nil {
		t.Fatal(err)
	}
	back := follow(p.url + "/authorize/callback?id=" + url.QueryEscape(id))
	code := back.Query().Get("code")
	if code == "" || !strings.HasPrefix(back.String(), p.config.RedirectURL) {
		t.Fatalf("callback went to %s", back.Redacted())
	}
	tok, err := p.config.Exchange(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("the provider issued no refresh token")
	}
	return tok
}

func (p *provider) refresher() Refresher { return ConfigRefresher{Config: p.config} }

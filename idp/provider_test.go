package idp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/idp/idptest"
	"golang.org/x/oauth2"
)

// TestMultiTenantIDToken checks sign-in through Entra's shared "common"
// issuer: the discovery document names a "{tenantid}" issuer, so the ID
// token's iss is checked against its own tid instead of failing outright.
func TestMultiTenantIDToken(t *testing.T) {
	p := idptest.NewEntra(t)
	const client = "bridge-client-id"
	prov := NewProvider(ProviderConfig{Issuer: p.URL + "/common/v2.0", ClientID: client, RedirectURL: "http://bridge.test/oauth/callback"})
	ctx := context.Background()
	if _, err := prov.config(ctx); err != nil {
		t.Fatalf("discovery of the common issuer: %v", err)
	}
	idToken := func(override map[string]any) *oauth2.Token {
		c := p.Claims(idptest.TenantA, "oid-1", client)
		c["nonce"] = "n1"
		c["name"] = "Ada Lovelace"
		for k, v := range override {
			c[k] = v
		}
		return (&oauth2.Token{AccessToken: "a"}).WithExtra(map[string]any{"id_token": p.Sign(t, c, "RS256", nil)})
	}

	id, err := prov.identity(ctx, idToken(nil), "n1")
	if err != nil {
		t.Fatalf("a valid ID token of tenant A: %v", err)
	}
	if id.Subject != idptest.TenantA+":oid-1" || id.Tenant != idptest.TenantA || id.Name != "Ada Lovelace" {
		t.Errorf("identity = %+v, want subject tid:oid, tenant A and the name", id)
	}

	for name, override := range map[string]map[string]any{
		"issuer of another tenant": {"iss": p.V2Issuer(idptest.TenantB)},
		"no tenant":                {"tid": ""},
		"wrong audience":           {"aud": "someone-else"},
		"wrong nonce":              {"nonce": "n2"},
		"expired":                  {"exp": 1},
	} {
		if _, err := prov.identity(ctx, idToken(override), "n1"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestResourceParameter checks Azure AD v1 sign-in, which names the API by
// resource= (K2: https://api.k2.com) instead of scopes.
func TestResourceParameter(t *testing.T) {
	p := NewProvider(ProviderConfig{
		Issuer: idptest.NewEntra(t).URL + "/" + idptest.TenantA + "/v2.0", ClientID: "c", Resource: "https://api.k2.com",
		RedirectURL: "http://bridge.test/oauth/callback",
	})
	raw, err := p.AuthCodeURL(context.Background(), "st", "nonce", strings.Repeat("v", 43))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	q := u.Query()
	if q.Get("resource") != "https://api.k2.com" || q.Get("code_challenge_method") != "S256" || q.Get("nonce") != "nonce" || q.Get("state") != "st" {
		t.Errorf("authorize URL query %v, want resource, S256, nonce and state", q)
	}
}

// explicitOP is a provider with explicit endpoints and no discovery: a
// token endpoint that answers with the ID token the test sets, and the
// test Entra provider's key set. discoveries counts requests for a
// discovery document.
type explicitOP struct {
	keys        *idptest.Entra
	srv         *httptest.Server
	idToken     atomic.Value // string
	discoveries atomic.Int64
}

func newExplicitOP(t *testing.T) *explicitOP {
	op := &explicitOP{keys: idptest.NewEntra(t)}
	op.idToken.Store("")
	op.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
			op.discoveries.Add(1)
			http.NotFound(w, r)
		case r.URL.Path == "/token" && r.Method == http.MethodPost:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{
				"access_token": "at", "token_type": "Bearer", "expires_in": 3600,
				"refresh_token": "rt", "id_token": op.idToken.Load(),
			})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(op.srv.Close)
	return op
}

func (op *explicitOP) provider() *Provider {
	return NewProvider(ProviderConfig{
		Issuer:      op.srv.URL,
		AuthURL:     op.srv.URL + "/authorize",
		TokenURL:    op.srv.URL + "/token",
		JWKSURL:     op.keys.URL + "/common/discovery/v2.0/keys",
		ClientID:    "bridge",
		RedirectURL: "http://bridge.test/oauth/callback",
	})
}

// TestExplicitEndpointsVerifyIDToken: with auth_url, token_url and
// jwks_url, discovery is skipped and the ID token is still verified:
// signature against the key set, iss, aud, exp, nbf and nonce.
func TestExplicitEndpointsVerifyIDToken(t *testing.T) {
	op := newExplicitOP(t)
	now := time.Now()
	claims := func(override map[string]any) map[string]any {
		c := map[string]any{
			"iss": op.srv.URL, "aud": "bridge", "sub": "ada", "nonce": "n1", "name": "Ada Lovelace",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
		maps.Copy(c, override)
		return c
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := op.provider()
	ctx := context.Background()

	op.idToken.Store(op.keys.Sign(t, claims(nil), "RS256", nil))
	id, tok, err := p.Exchange(ctx, "code", strings.Repeat("v", 43), "n1")
	if err != nil {
		t.Fatalf("a valid ID token: %v", err)
	}
	if id.Subject != "ada" || id.Name != "Ada Lovelace" || tok.AccessToken != "at" {
		t.Errorf("identity %+v, access token %q; want ada and at", id, tok.AccessToken)
	}

	for _, tc := range []struct {
		name  string
		token string
	}{
		{"alg none", idptest.Unsigned(claims(nil))},
		{"alg none, exp 1, foreign issuer and audience", idptest.Unsigned(claims(map[string]any{"iss": "https://evil.example", "aud": "evil", "exp": 1}))},
		{"foreign issuer", op.keys.Sign(t, claims(map[string]any{"iss": "https://evil.example"}), "RS256", nil)},
		{"foreign audience", op.keys.Sign(t, claims(map[string]any{"aud": "someone-else"}), "RS256", nil)},
		{"expired", op.keys.Sign(t, claims(map[string]any{"exp": now.Add(-time.Hour).Unix()}), "RS256", nil)},
		{"exp 1", op.keys.Sign(t, claims(map[string]any{"exp": 1}), "RS256", nil)},
		{"not yet valid", op.keys.Sign(t, claims(map[string]any{"nbf": now.Add(time.Hour).Unix()}), "RS256", nil)},
		{"wrong nonce", op.keys.Sign(t, claims(map[string]any{"nonce": "n2"}), "RS256", nil)},
		{"foreign key", op.keys.Sign(t, claims(nil), "RS256", other)},
		{"HS256 with the public key", op.keys.Sign(t, claims(nil), "HS256", op.keys.PublicKeyDER(t))},
		{"not a JWT", "a.b.c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op.idToken.Store(tc.token)
			if id, _, err := p.Exchange(ctx, "code", strings.Repeat("v", 43), "n1"); !errors.Is(err, ErrIDToken) {
				t.Errorf("Exchange = %+v, %v; want ErrIDToken", id, err)
			}
		})
	}
	if n := op.discoveries.Load(); n != 0 {
		t.Errorf("discovery requested %d times, want 0 with every endpoint configured", n)
	}
}

// TestExplicitEndpointsNeedIssuer: without an issuer there is nothing to
// check iss against, so no sign-in starts.
func TestExplicitEndpointsNeedIssuer(t *testing.T) {
	op := newExplicitOP(t)
	p := NewProvider(ProviderConfig{AuthURL: op.srv.URL + "/authorize", TokenURL: op.srv.URL + "/token", ClientID: "bridge"})
	if _, err := p.AuthCodeURL(context.Background(), "st", "n", strings.Repeat("v", 43)); err == nil {
		t.Error("AuthCodeURL without an issuer: no error")
	}
}

// TestExplicitEndpointsPing: readiness asks the key set, not a discovery
// document that need not exist.
func TestExplicitEndpointsPing(t *testing.T) {
	op := newExplicitOP(t)
	p := op.provider()
	if err := p.Ping(context.Background()); err != nil {
		t.Errorf("Ping with the key set up: %v", err)
	}
	op.keys.Set(func(k *idptest.Entra) { k.KeysDown = true })
	if err := p.Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping with the key set down: %v, want ErrUnavailable", err)
	}
}

// TestMultiTenantSignInTenants: on a multi-tenant issuer with configured
// tenants, only their users sign in; a domain name is resolved to its ID.
func TestMultiTenantSignInTenants(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tenants []string
		from    string
		want    error
	}{
		{"any tenant without a list", nil, idptest.TenantB, nil},
		{"listed ID", []string{idptest.TenantA}, idptest.TenantA, nil},
		{"unlisted", []string{idptest.TenantA}, idptest.TenantB, ErrBadTenant},
		{"listed domain", []string{idptest.TenantADomain}, idptest.TenantA, nil},
		{"unlisted, domain list", []string{idptest.TenantADomain}, idptest.TenantB, ErrBadTenant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := idptest.NewEntra(t)
			const client = "bridge-client-id"
			prov := NewProvider(ProviderConfig{Issuer: p.URL + "/common/v2.0", ClientID: client, Tenants: tc.tenants})
			ctx := context.Background()
			if _, err := prov.config(ctx); err != nil {
				t.Fatal(err)
			}
			c := p.Claims(tc.from, "oid-1", client)
			c["nonce"] = "n1"
			tok := (&oauth2.Token{AccessToken: "a"}).WithExtra(map[string]any{"id_token": p.Sign(t, c, "RS256", nil)})
			_, err := prov.identity(ctx, tok, "n1")
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("identity of a user of %s: %v, want %v", tc.from, err, tc.want)
			}
		})
	}
}

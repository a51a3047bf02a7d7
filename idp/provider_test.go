package idp

import (
	"context"
	"net/url"
	"strings"
	"testing"

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

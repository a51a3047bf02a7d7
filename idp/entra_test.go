package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/idp/idptest"
	"github.com/odata-bridge/bridge/tokencache"
)

const (
	testPublicURL = "https://bridge.example.com"
	testResource  = "https://api.k2.com"
)

// newTestEntra is organizational accounts in front of the test provider,
// accepting tenants A and B unless tweak says otherwise.
func newTestEntra(t *testing.T, tweak func(c *EntraConfig)) (*Entra, *idptest.Entra, *tokencache.Store) {
	t.Helper()
	p := idptest.NewEntra(t)
	store, err := tokencache.New(tokencache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := EntraConfig{
		Authority:      p.URL,
		AllowedTenants: []string{idptest.TenantA, idptest.TenantB},
		ClientID:       idptest.ClientID,
		ClientSecret:   idptest.ClientSecret,
		OrgAccount:     true,
		PublicURL:      testPublicURL,
		Cache:          store,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	e, err := NewEntra(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, p, store
}

func TestNewEntra(t *testing.T) {
	cache := &tokencache.Store{}
	for _, tc := range []struct {
		name    string
		cfg     EntraConfig
		wantErr error // nil: any error
		wantOn  bool
	}{
		{"off", EntraConfig{}, nil, false},
		{"admin consent only, any tenant", EntraConfig{ClientID: idptest.ClientID}, nil, true},
		{"org account, pinned tenant", EntraConfig{ClientID: idptest.ClientID, OrgAccount: true, Tenant: idptest.TenantA, Cache: cache}, nil, true},
		{"org account, allowed tenants", EntraConfig{ClientID: idptest.ClientID, OrgAccount: true, AllowedTenants: []string{idptest.TenantADomain}, Cache: cache}, nil, true},
		{"org account without client ID", EntraConfig{OrgAccount: true, Tenant: idptest.TenantA, Cache: cache}, errAny, false},
		{"org account without a cache", EntraConfig{ClientID: idptest.ClientID, OrgAccount: true, Tenant: idptest.TenantA}, errAny, false},
		{"org account of any tenant", EntraConfig{ClientID: idptest.ClientID, OrgAccount: true, Cache: cache}, ErrBadTenant, false},
		{"malformed tenant", EntraConfig{ClientID: idptest.ClientID, Tenant: "not a tenant"}, ErrBadTenant, false},
		{"malformed allowed tenant", EntraConfig{ClientID: idptest.ClientID, AllowedTenants: []string{"common"}}, ErrBadTenant, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewEntra(tc.cfg)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("NewEntra: %v, want no error", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("NewEntra: %v, want %v", err, tc.wantErr)
			}
			if got := e != nil; got != tc.wantOn {
				t.Errorf("NewEntra on = %v, want %v", got, tc.wantOn)
			}
		})
	}
}

// errAny stands for any error in tables.
var errAny = errors.New("any error")

// TestEntraTenants: an organizational-account token is accepted only from
// the pinned tenant or an allowed one, named by ID or by domain name.
func TestEntraTenants(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tenant  string
		allowed []string
		from    string
		v1      bool
		wantOK  bool
	}{
		{"pinned, its own", idptest.TenantA, nil, idptest.TenantA, false, true},
		{"pinned, another", idptest.TenantA, nil, idptest.TenantB, false, false},
		{"pinned domain, its own", idptest.TenantADomain, nil, idptest.TenantA, false, true},
		{"pinned domain, another", idptest.TenantADomain, nil, idptest.TenantB, false, false},
		{"allowed ID", "", []string{idptest.TenantA}, idptest.TenantA, false, true},
		{"allowed ID, v1 token", "", []string{idptest.TenantA}, idptest.TenantA, true, true},
		{"not allowed", "", []string{idptest.TenantA}, idptest.TenantB, false, false},
		{"not allowed, v1 token", "", []string{idptest.TenantA}, idptest.TenantB, true, false},
		{"allowed domain", "", []string{idptest.TenantADomain}, idptest.TenantA, false, true},
		{"allowed domain, another", "", []string{idptest.TenantADomain}, idptest.TenantB, false, false},
		{"pinned and allowed, the pinned", idptest.TenantA, []string{idptest.TenantB}, idptest.TenantA, false, true},
		{"pinned and allowed, the allowed", idptest.TenantA, []string{idptest.TenantB}, idptest.TenantB, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, p, _ := newTestEntra(t, func(c *EntraConfig) { c.Tenant, c.AllowedTenants = tc.tenant, tc.allowed })
			var override map[string]any
			if tc.v1 {
				override = map[string]any{"iss": idptest.V1Issuer(tc.from), "ver": "1.0"}
			}
			c, err := e.Verify(context.Background(), p.Token(t, tc.from, "alice", testPublicURL, override))
			if tc.wantOK {
				if err != nil || c.TenantID != tc.from || c.ObjectID != "alice" {
					t.Errorf("Verify = %+v, %v; want tenant %s's alice", c, err, tc.from)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("Verify of a token from %s: %v, want ErrInvalidToken", tc.from, err)
			}
		})
	}
}

// TestEntraUnknownDomain: an allowed domain name that Entra does not know
// leaves the verifier unavailable, never open to every tenant.
func TestEntraUnknownDomain(t *testing.T) {
	e, p, _ := newTestEntra(t, func(c *EntraConfig) { c.AllowedTenants = []string{"unknown.example.com"} })
	_, err := e.Verify(context.Background(), p.Token(t, idptest.TenantA, "alice", testPublicURL, nil))
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Verify with an unknown allowed domain: %v, want ErrUnavailable", err)
	}
}

func TestOBOCacheExpiresWithToken(t *testing.T) {
	e, p, store := newTestEntra(t, nil)
	ctx := context.Background()
	tok := p.Token(t, idptest.TenantA, "alice", testPublicURL, nil)
	c, err := e.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	key := c.Key(testResource)
	// A cached result that is about to expire is not handed out.
	raw, _ := json.Marshal(oboCached{AccessToken: "stale", Expiry: time.Now().Add(30 * time.Second)})
	if err := store.PutValue(ctx, kindOBO, key, raw, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := e.OnBehalfOf(ctx, tok, c, testResource, false)
	if err != nil || got == "stale" || p.OBOCalls.Load() != 1 {
		t.Errorf("OnBehalfOf = %q, %v, OBO calls %d; want a fresh exchange", got, err, p.OBOCalls.Load())
	}
	// The fresh result is cached for about its lifetime, less the margin.
	cached, err := store.Value(ctx, kindOBO, key)
	if err != nil {
		t.Fatal(err)
	}
	var r oboCached
	if err := json.Unmarshal(cached, &r); err != nil || !strings.HasPrefix(r.AccessToken, "obo_alice_") {
		t.Errorf("cached %q (%v), want alice's token", cached, err)
	}
	if d := time.Until(r.Expiry); d < 50*time.Minute || d > time.Hour {
		t.Errorf("cached expiry in %v, want the token's hour", d)
	}
	if again, err := e.OnBehalfOf(ctx, tok, c, testResource, false); err != nil || again != got || p.OBOCalls.Load() != 1 {
		t.Errorf("second OnBehalfOf = %v, OBO calls %d; want the cached token and no exchange", err, p.OBOCalls.Load())
	}
	if k2 := (Caller{TenantID: idptest.TenantB, ObjectID: "alice"}).Key(testResource); k2 == key {
		t.Error("the cache key ignores the tenant")
	}
	if k2 := c.Key("https://other"); k2 == key {
		t.Error("the cache key ignores the resource")
	}
}

// TestOBOErrors: Entra's answers to the on-behalf-of request become the
// package's sentinels.
func TestOBOErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(p *idptest.Entra)
		from  string
		want  error
	}{
		{"consent missing", func(*idptest.Entra) {}, idptest.TenantB, ErrConsentRequired},
		{"interaction required", func(p *idptest.Entra) { p.Refuse = "AADSTS65001: consent" }, idptest.TenantA, ErrConsentRequired},
		{"token refused", func(p *idptest.Entra) { p.Refuse = "AADSTS50013: expired" }, idptest.TenantA, ErrInvalidToken},
		{"provider down", func(p *idptest.Entra) { p.Down = true }, idptest.TenantA, ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, p, _ := newTestEntra(t, nil)
			ctx := context.Background()
			tok := p.Token(t, tc.from, "alice", testPublicURL, nil)
			c, err := e.Verify(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			p.Set(tc.setup)
			if _, err := e.OnBehalfOf(ctx, tok, c, testResource, false); !errors.Is(err, tc.want) {
				t.Errorf("OnBehalfOf: %v, want %v", err, tc.want)
			}
		})
	}
}

func ExampleEntraConfig_AdminConsentURL() {
	o := EntraConfig{ClientID: "b1d2f3a4-3333-4c5d-8e9f-23456789abcd"}
	u, err := o.AdminConsentURL("https://bridge.example.com", "contoso.onmicrosoft.com")
	if err != nil {
		panic(err)
	}
	fmt.Println(u)
	// Output:
	// https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0/adminconsent?client_id=b1d2f3a4-3333-4c5d-8e9f-23456789abcd&redirect_uri=https%3A%2F%2Fbridge.example.com%2Foauth%2Fcallback&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default
}

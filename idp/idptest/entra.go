// Package idptest is an in-process identity provider with Entra ID's
// shapes, for the tests of the packages that talk to Entra.
package idptest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Tenants and the bridge's client of the test identity provider.
const (
	TenantA       = "6f1c2a3b-1111-4a5b-8c9d-0123456789ab"
	TenantB       = "7e2d3c4b-2222-4b6c-9d0e-123456789abc"
	TenantADomain = "contoso.onmicrosoft.com"
	ClientID      = "b1d2f3a4-3333-4c5d-8e9f-23456789abcd"
	ClientSecret  = "entra-test-secret"
)

// Entra is a test identity provider with Entra ID's shapes, in process:
// v2 and v1 discovery with "{tenantid}" issuers under common, a JWKS, RS256
// access tokens with aud, tid and oid, the on-behalf-of grant on each
// tenant's token endpoint, and the admin-consent endpoint.
type Entra struct {
	URL      string           // the provider's base: the authority of Entra's endpoints
	Server   *httptest.Server // serves URL; closed by the test's cleanup
	OBOCalls atomic.Int64     // requests to the token endpoints
	KeyReads atomic.Int64     // requests for the key set

	mu         sync.Mutex
	Key        *rsa.PrivateKey // signs tokens; change it through Set
	KID        string          // the key ID of Key; change it through Set
	Consented  map[string]bool // tenant ID → admin consent granted; tenant A by default
	NotAdmin   bool            // the consent endpoint answers AADSTS90094
	Down       bool            // the token endpoint answers 503
	KeysDown   bool            // the key set answers 503
	Refuse     string          // the token endpoint answers invalid_grant with this AADSTS text
	LastScope  string          // the scope of the last on-behalf-of request
	LastClient string          // the client ID of the last on-behalf-of request
}

// NewEntra starts the provider; it stops when the test ends.
func NewEntra(t testing.TB) *Entra {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &Entra{Key: key, KID: "test-key-1", Consented: map[string]bool{TenantA: true}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", p.discovery(true))
	mux.HandleFunc("GET /{tenant}/.well-known/openid-configuration", p.discovery(false))
	mux.HandleFunc("GET /common/discovery/v2.0/keys", p.keys)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", p.tokenEndpoint)
	mux.HandleFunc("GET /{tenant}/v2.0/adminconsent", p.adminConsent)
	p.Server = httptest.NewServer(mux)
	p.URL = p.Server.URL
	t.Cleanup(p.Server.Close)
	return p
}

// Set changes the provider under its lock.
func (p *Entra) Set(f func(p *Entra)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// tenantID resolves a tenant path segment as Entra does; shared segments
// give the "{tenantid}" template.
func tenantID(seg string) (string, bool) {
	switch strings.ToLower(seg) {
	case "common", "organizations":
		return "{tenantid}", true
	case TenantA, TenantADomain:
		return TenantA, true
	case TenantB:
		return TenantB, true
	}
	return "", false
}

// V2Issuer is the issuer of tid's v2 tokens.
func (p *Entra) V2Issuer(tid string) string { return p.URL + "/" + tid + "/v2.0" }

// V1Issuer is the issuer of tid's v1 tokens.
func V1Issuer(tid string) string { return "https://sts.windows.net/" + tid + "/" }

func (p *Entra) discovery(v2 bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		seg := r.PathValue("tenant")
		tid, ok := tenantID(seg)
		if !ok {
			http.Error(w, `{"error":"invalid_tenant"}`, http.StatusBadRequest)
			return
		}
		doc := map[string]any{
			"authorization_endpoint":                p.URL + "/" + seg + "/oauth2/authorize",
			"token_endpoint":                        p.URL + "/" + seg + "/oauth2/token",
			"jwks_uri":                              p.URL + "/common/discovery/keys",
			"issuer":                                V1Issuer(tid),
			"response_types_supported":              []string{"code", "id_token"},
			"subject_types_supported":               []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		}
		if v2 {
			doc["authorization_endpoint"] = p.URL + "/" + seg + "/oauth2/v2.0/authorize"
			doc["token_endpoint"] = p.URL + "/" + seg + "/oauth2/v2.0/token"
			doc["jwks_uri"] = p.URL + "/common/discovery/v2.0/keys"
			doc["issuer"] = p.V2Issuer(tid)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(doc)
	}
}

func (p *Entra) keys(w http.ResponseWriter, _ *http.Request) {
	p.KeyReads.Add(1)
	p.mu.Lock()
	down := p.KeysDown
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.Key.PublicKey, KeyID: p.KID, Algorithm: "RS256", Use: "sig"}}}
	p.mu.Unlock()
	if down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(set)
}

// Claims are the default claims of a v2 access token to the bridge.
func (p *Entra) Claims(tid, oid, aud string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": p.V2Issuer(tid), "aud": aud, "tid": tid, "oid": oid, "sub": "sub-" + oid,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"ver": "2.0", "scp": "user_impersonation", "azp": "power-bi",
	}
}

// Sign signs claims with alg and key (RS256 with the provider's key by
// default), with the provider's key ID.
func (p *Entra) Sign(t testing.TB, claims map[string]any, alg string, key any) string {
	t.Helper()
	if key == nil {
		key = p.Key
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", p.KID))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Token is a valid access token of tid's user oid to aud.
func (p *Entra) Token(t testing.TB, tid, oid, aud string, override map[string]any) string {
	t.Helper()
	c := p.Claims(tid, oid, aud)
	maps.Copy(c, override)
	return p.Sign(t, c, "RS256", nil)
}

// Unsigned is an "alg: none" token: it carries no signature at all.
func Unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	b, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

// PublicKeyDER is what an HMAC key-confusion attack signs with.
func (p *Entra) PublicKeyDER(t testing.TB) []byte {
	der, err := x509.MarshalPKIXPublicKey(&p.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func oauthFailure(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// tokenEndpoint is the on-behalf-of grant of the Microsoft identity platform v2.
func (p *Entra) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	p.OBOCalls.Add(1)
	p.mu.Lock()
	down, refuse := p.Down, p.Refuse
	p.mu.Unlock()
	if down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthFailure(w, 400, map[string]any{"error": "invalid_request"})
		return
	}
	f := r.PostForm
	if f.Get("client_id") != ClientID || f.Get("client_secret") != ClientSecret {
		oauthFailure(w, 401, map[string]any{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
		return
	}
	if f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || f.Get("requested_token_use") != "on_behalf_of" ||
		!strings.HasSuffix(f.Get("scope"), "/.default") {
		oauthFailure(w, 400, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	tok, err := jwt.ParseSigned(f.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256})
	var c struct {
		TenantID string `json:"tid"`
		ObjectID string `json:"oid"`
	}
	if err != nil || tok.Claims(&p.Key.PublicKey, &c) != nil || c.TenantID != r.PathValue("tenant") {
		oauthFailure(w, 400, map[string]any{"error": "invalid_grant", "error_description": "AADSTS50013: Assertion failed signature validation.", "error_codes": []int{50013}})
		return
	}
	if refuse != "" {
		oauthFailure(w, 400, map[string]any{"error": "invalid_grant", "error_description": refuse})
		return
	}
	p.mu.Lock()
	Consented := p.Consented[c.TenantID]
	p.LastScope, p.LastClient = f.Get("scope"), f.Get("client_id")
	p.mu.Unlock()
	if !Consented {
		oauthFailure(w, 400, map[string]any{
			"error":             "invalid_grant",
			"error_description": "AADSTS65001: The user or administrator has not Consented to use the application with ID '" + ClientID + "'.\r\nTrace ID: 1",
			"error_codes":       []int{65001},
			"suberror":          "consent_required",
		})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token_type": "Bearer", "scope": f.Get("scope"), "expires_in": 3600, "ext_expires_in": 3600,
		"access_token": fmt.Sprintf("obo_%s_%d", c.ObjectID, p.OBOCalls.Load()),
	})
}

// adminConsent grants the tenant's consent and redirects back, as Entra's
// v2 admin-consent endpoint does once the administrator accepts.
func (p *Entra) adminConsent(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tid, ok := tenantID(r.PathValue("tenant"))
	if !ok || tid == "{tenantid}" || q.Get("client_id") != ClientID || q.Get("scope") == "" {
		http.Error(w, "AADSTS90002: Tenant not found.", http.StatusBadRequest)
		return
	}
	back, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || back.Scheme == "" {
		http.Error(w, "AADSTS50011: The redirect URI does not match.", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	NotAdmin := p.NotAdmin
	if !NotAdmin {
		p.Consented[tid] = true
	}
	p.mu.Unlock()
	bq := url.Values{}
	if NotAdmin {
		bq.Set("error", "access_denied")
		bq.Set("error_description", "AADSTS90094: The grant requires admin permission.\r\nTrace ID: 2\r\nCorrelation ID: 3")
	} else {
		bq.Set("admin_consent", "True")
		bq.Set("tenant", tid)
		bq.Set("scope", q.Get("scope"))
	}
	if st := q.Get("state"); st != "" {
		bq.Set("state", st) // Entra returns the request's state, on success and on error
	}
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

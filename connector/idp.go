package connector

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ProviderConfig configures the bridge as an OAuth client of the identity provider.
type ProviderConfig struct {
	Issuer       string       // OIDC issuer for discovery; empty: AuthURL and TokenURL are used as they are
	AuthURL      string       // explicit authorization endpoint (overrides discovery)
	TokenURL     string       // explicit token endpoint (overrides discovery)
	ClientID     string       // the bridge's client ID at the provider
	ClientSecret string       // kept on the server; never sent to the connector
	Scopes       []string     // zero: openid, offline_access, profile, email
	Resource     string       // Azure AD v1 'resource' parameter; empty: none
	RedirectURL  string       // the bridge's own callback, {public_url}/oauth/callback
	HTTPClient   *http.Client // zero: a client with a 30 s timeout
}

// Identity is who the provider says signed in, from the verified ID token.
type Identity struct {
	Subject string
	Name    string
	Email   string
	Tenant  string // Entra 'tid', when present
}

// Provider is the identity provider as the bridge uses it: authorization
// URLs, code exchange with ID-token verification, and token refresh. It
// discovers lazily, so the bridge starts while the provider is down and
// recovers when it answers.
type Provider struct {
	cfg    ProviderConfig
	client *http.Client

	mu       sync.Mutex
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
	issuer   string // the discovery document's issuer; may hold "{tenantid}"
}

// ErrProviderDown means the identity provider could not be reached or
// answered with a server error.
var ErrProviderDown = errors.New("identity provider unavailable")

// errIDToken means the provider's ID token failed verification.
var errIDToken = errors.New("identity provider returned an invalid ID token")

// NewProvider returns a Provider; nothing is fetched until first use.
func NewProvider(cfg ProviderConfig) *Provider {
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, oidc.ScopeOfflineAccess, "profile", "email"}
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	return &Provider{cfg: cfg, client: client}
}

func (p *Provider) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, p.client), p.client)
}

// multiTenant reports whether the issuer is one of Entra's shared issuers,
// whose discovery document names a "{tenantid}" issuer template.
func multiTenant(issuer string) bool {
	for _, t := range []string{"/common/", "/organizations/", "/consumers/"} {
		if strings.Contains(issuer+"/", t) {
			return true
		}
	}
	return false
}

// config returns the OAuth configuration, running discovery once it succeeds.
func (p *Provider) config(ctx context.Context) (*oauth2.Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.oauth != nil {
		return p.oauth, nil
	}
	oc := &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.cfg.ClientSecret,
		RedirectURL:  p.cfg.RedirectURL,
		Scopes:       p.cfg.Scopes,
		Endpoint:     oauth2.Endpoint{AuthURL: p.cfg.AuthURL, TokenURL: p.cfg.TokenURL},
	}
	if p.cfg.Issuer != "" {
		dctx := p.ctx(ctx)
		if multiTenant(p.cfg.Issuer) {
			// Entra's shared issuers publish "https://…/{tenantid}/v2.0" as
			// their issuer; the tenant is checked per token instead.
			dctx = oidc.InsecureIssuerURLContext(dctx, p.cfg.Issuer)
		}
		prov, err := oidc.NewProvider(dctx, p.cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("%w: discovery: %v", ErrProviderDown, err)
		}
		var meta struct {
			Issuer string `json:"issuer"`
		}
		_ = prov.Claims(&meta)
		p.issuer = meta.Issuer
		ep := prov.Endpoint()
		if oc.Endpoint.AuthURL == "" {
			oc.Endpoint.AuthURL = ep.AuthURL
		}
		if oc.Endpoint.TokenURL == "" {
			oc.Endpoint.TokenURL = ep.TokenURL
		}
		p.verifier = prov.Verifier(&oidc.Config{
			ClientID:        p.cfg.ClientID,
			SkipIssuerCheck: multiTenant(p.cfg.Issuer),
		})
	}
	p.oauth = oc
	return oc, nil
}

// Ping checks that the provider's discovery document answers.
func (p *Provider) Ping(ctx context.Context) error {
	if p.cfg.Issuer == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		strings.TrimSuffix(p.cfg.Issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProviderDown, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: discovery answered %d", ErrProviderDown, resp.StatusCode)
	}
	_, err = p.config(ctx)
	return err
}

// AuthCodeURL returns the provider's authorization URL with the bridge's
// own state, nonce and PKCE S256 challenge of verifier.
func (p *Provider) AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error) {
	oc, err := p.config(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if p.cfg.Resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", p.cfg.Resource))
	}
	return oc.AuthCodeURL(state, opts...), nil
}

// Exchange redeems a provider code and verifies the ID token against nonce.
func (p *Provider) Exchange(ctx context.Context, code, verifier, nonce string) (Identity, *oauth2.Token, error) {
	oc, err := p.config(ctx)
	if err != nil {
		return Identity{}, nil, err
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if p.cfg.Resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", p.cfg.Resource))
	}
	tok, err := oc.Exchange(p.ctx(ctx), code, opts...)
	if err != nil {
		return Identity{}, nil, classifyProviderError("exchange code", err)
	}
	id, err := p.identity(ctx, tok, nonce)
	if err != nil {
		return Identity{}, nil, err
	}
	return id, tok, nil
}

// Refresh redeems a provider refresh token. It implements the token cache's
// Refresher: provider answers come back as *oauth2.RetrieveError.
func (p *Provider) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	oc, err := p.config(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := oc.TokenSource(p.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return nil, err
	}
	return tok, nil
}

// RefreshFor redeems a provider refresh token for an access token of
// another audience: a refresh grant with the given scopes (none: the sign-in
// scopes) and, for Azure AD v1, resource. It implements the token cache's
// AudienceRefresher; provider answers come back as *oauth2.RetrieveError.
func (p *Provider) RefreshFor(ctx context.Context, refreshToken string, scopes []string, resource string) (*oauth2.Token, error) {
	oc, err := p.config(ctx)
	if err != nil {
		return nil, err
	}
	if len(scopes) == 0 {
		scopes = oc.Scopes
	}
	// oauth2.Config's refresh sends no scope; the client-credentials client
	// sends scope and extra parameters, and lets grant_type be replaced
	// (RFC 6749 §6: a refresh grant may name a narrower scope).
	params := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	if resource != "" {
		params.Set("resource", resource)
	}
	cc := &clientcredentials.Config{
		ClientID:       oc.ClientID,
		ClientSecret:   oc.ClientSecret,
		TokenURL:       oc.Endpoint.TokenURL,
		Scopes:         scopes,
		EndpointParams: params,
		AuthStyle:      oc.Endpoint.AuthStyle,
	}
	return cc.Token(p.ctx(ctx))
}

type idClaims struct {
	Issuer            string `json:"iss"`
	Subject           string `json:"sub"`
	Name              string `json:"name"`
	PreferredUsername string `json:"preferred_username"`
	Email             string `json:"email"`
	UPN               string `json:"upn"`
	TenantID          string `json:"tid"`
	ObjectID          string `json:"oid"`
	Nonce             string `json:"nonce"`
}

func (p *Provider) identity(ctx context.Context, tok *oauth2.Token, nonce string) (Identity, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: none in the token response (is the openid scope configured?)", errIDToken)
	}
	var c idClaims
	if p.verifier != nil {
		idt, err := p.verifier.Verify(p.ctx(ctx), raw)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: %v", errIDToken, err)
		}
		if err := idt.Claims(&c); err != nil {
			return Identity{}, fmt.Errorf("%w: %v", errIDToken, err)
		}
		if multiTenant(p.cfg.Issuer) {
			// Multi-tenant: the issuer must be the template with this token's tenant.
			want := strings.ReplaceAll(p.issuer, "{tenantid}", c.TenantID)
			if c.TenantID == "" || c.Issuer != want {
				return Identity{}, fmt.Errorf("%w: issuer does not match the token's tenant", errIDToken)
			}
		}
	} else {
		// Explicit endpoints without discovery have no key set; OIDC Core
		// §3.1.3.7 lets the TLS-protected token endpoint vouch for the token.
		parts := strings.Split(raw, ".")
		if len(parts) != 3 {
			return Identity{}, fmt.Errorf("%w: not a JWT", errIDToken)
		}
		body, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil || json.Unmarshal(body, &c) != nil {
			return Identity{}, fmt.Errorf("%w: unreadable claims", errIDToken)
		}
	}
	if c.Nonce != nonce {
		return Identity{}, fmt.Errorf("%w: nonce mismatch", errIDToken)
	}
	if c.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no subject", errIDToken)
	}
	id := Identity{Subject: c.Subject, Name: c.Name, Email: c.Email, Tenant: c.TenantID}
	if c.TenantID != "" && c.ObjectID != "" {
		// Entra's 'sub' is per application; tid+oid names the person.
		id.Subject = c.TenantID + ":" + c.ObjectID
	}
	if id.Email == "" {
		id.Email = firstNonEmpty(c.PreferredUsername, c.UPN)
	}
	if id.Name == "" {
		id.Name = firstNonEmpty(c.PreferredUsername, c.Email, c.Subject)
	}
	return id, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// errProviderRefused means the provider refused a code or grant (a 4xx answer).
var errProviderRefused = errors.New("identity provider refused the grant")

// classifyProviderError separates a provider's refusal (4xx) from its being
// unavailable (5xx, timeouts, refused connections).
func classifyProviderError(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
		code := re.ErrorCode
		if code == "" {
			code = "invalid_grant"
		}
		return fmt.Errorf("%s: %w (%s)", op, errProviderRefused, code)
	}
	return fmt.Errorf("%s: %w", op, ErrProviderDown)
}

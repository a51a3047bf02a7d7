package idp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/internal/tracing"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ProviderConfig configures the bridge as an OAuth client of the identity provider.
type ProviderConfig struct {
	Issuer       string       // required: the expected iss of ID tokens, and the base of OIDC discovery
	AuthURL      string       // explicit authorization endpoint (overrides discovery); zero: discovery's
	TokenURL     string       // explicit token endpoint (overrides discovery); zero: discovery's
	JWKSURL      string       // explicit key set of ID tokens (overrides discovery); zero: discovery's
	ClientID     string       // the bridge's client ID at the provider; the audience of ID tokens
	ClientSecret string       // kept on the server; never sent to the connector
	Scopes       []string     // zero: openid, offline_access, profile, email
	Resource     string       // Azure AD v1 'resource' parameter; zero: none
	RedirectURL  string       // the bridge's own callback, {public_url}/oauth/callback
	Tenants      []string     // with an Entra multi-tenant issuer, the tenants (IDs or domain names) that may sign in; zero: any
	HTTPClient   *http.Client // zero: a client with a 30 s timeout
}

// Identity is who the provider says signed in, from the verified ID token.
type Identity struct {
	Subject string
	Name    string
	Email   string
	Tenant  string // Entra 'tid', when present

	PreferredUsername, ObjectID string // the 'preferred_username' and Entra 'oid' claims, when present
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
	issuer   string          // the discovery document's issuer; may hold "{tenantid}"
	tenants  map[string]bool // lower-case tenant IDs that may sign in; nil: any
}

// signingAlgs are the ID-token algorithms accepted without discovery: the
// asymmetric ones of RFC 7518 §3.1, never "none" nor HMAC, whose key a
// client would share.
var signingAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA,
}

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

// MultiTenant reports whether the issuer is one of Entra's shared issuers
// (common, organizations, consumers), whose discovery document names a
// "{tenantid}" issuer template: users of many tenants sign in there.
func MultiTenant(issuer string) bool {
	return sharedSegment(issuer) != ""
}

// sharedSegment is the shared tenant segment of an Entra issuer, or "".
func sharedSegment(issuer string) string {
	for _, t := range sharedTenants {
		if seg := "/" + t + "/"; strings.Contains(issuer+"/", seg) {
			return seg
		}
	}
	return ""
}

// explicit reports whether every endpoint is configured, so discovery is
// skipped. Entra's shared issuers always need discovery for their issuer
// template.
func (p *Provider) explicit() bool {
	c := p.cfg
	return c.AuthURL != "" && c.TokenURL != "" && c.JWKSURL != "" && !MultiTenant(c.Issuer)
}

// config returns the OAuth configuration, running discovery once it succeeds.
func (p *Provider) config(ctx context.Context) (*oauth2.Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.oauth != nil {
		return p.oauth, nil
	}
	if p.cfg.Issuer == "" {
		// Without an issuer no ID token can be verified, and none is trusted unverified.
		return nil, fmt.Errorf("%w: no issuer is configured", ErrIDToken)
	}
	oc := &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.cfg.ClientSecret,
		RedirectURL:  p.cfg.RedirectURL,
		Scopes:       p.cfg.Scopes,
		Endpoint:     oauth2.Endpoint{AuthURL: p.cfg.AuthURL, TokenURL: p.cfg.TokenURL},
	}
	vc := &oidc.Config{ClientID: p.cfg.ClientID, SupportedSigningAlgs: signingAlgs}
	// The key set's fetches outlive this request.
	keysCtx := oidc.ClientContext(context.Background(), p.client)
	if p.explicit() {
		p.issuer = p.cfg.Issuer
		p.verifier = oidc.NewVerifier(p.cfg.Issuer, oidc.NewRemoteKeySet(keysCtx, p.cfg.JWKSURL), vc)
		p.oauth = oc
		return oc, nil
	}
	dctx := p.ctx(ctx)
	if MultiTenant(p.cfg.Issuer) {
		// Entra's shared issuers publish "https://…/{tenantid}/v2.0" as
		// their issuer; the tenant is checked per token instead.
		dctx = oidc.InsecureIssuerURLContext(dctx, p.cfg.Issuer)
	}
	prov, err := oidc.NewProvider(dctx, p.cfg.Issuer)
	if err != nil {
		return nil, fault.Because(ErrUnavailable, fmt.Errorf("discovery: %w", err))
	}
	var meta struct {
		Issuer string `json:"issuer"`
	}
	_ = prov.Claims(&meta)
	tenants, err := p.resolveTenants(ctx)
	if err != nil {
		return nil, err
	}
	ep := prov.Endpoint()
	if oc.Endpoint.AuthURL == "" {
		oc.Endpoint.AuthURL = ep.AuthURL
	}
	if oc.Endpoint.TokenURL == "" {
		oc.Endpoint.TokenURL = ep.TokenURL
	}
	vc.SkipIssuerCheck = MultiTenant(p.cfg.Issuer)
	if p.cfg.JWKSURL != "" {
		p.verifier = oidc.NewVerifier(meta.Issuer, oidc.NewRemoteKeySet(keysCtx, p.cfg.JWKSURL), vc)
	} else {
		// The algorithms the discovery document lists; go-oidc drops "none".
		vc.SupportedSigningAlgs = nil
		p.verifier = prov.Verifier(vc)
	}
	p.issuer, p.tenants = meta.Issuer, tenants
	p.oauth = oc
	return oc, nil
}

// resolveTenants turns the configured tenants of a multi-tenant issuer into
// tenant IDs; a domain name is looked up in its own discovery document.
func (p *Provider) resolveTenants(ctx context.Context) (map[string]bool, error) {
	seg := sharedSegment(p.cfg.Issuer)
	if seg == "" || len(p.cfg.Tenants) == 0 {
		return nil, nil
	}
	base := strings.TrimSuffix(p.cfg.Issuer, "/")
	return resolveTenants(ctx, p.client, p.cfg.Tenants, func(domain string) string {
		return strings.Replace(base+"/", seg, "/"+domain+"/", 1) + ".well-known/openid-configuration"
	})
}

// Ping checks that the provider's discovery document answers, or its key
// set where every endpoint is configured.
func (p *Provider) Ping(ctx context.Context) error {
	if p.cfg.Issuer == "" {
		return nil
	}
	u := strings.TrimSuffix(p.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	if p.explicit() {
		u = p.cfg.JWKSURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fault.Because(ErrUnavailable, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fault.Because(ErrUnavailable, fmt.Errorf("discovery answered %d", resp.StatusCode))
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
		return Identity{}, nil, classify("exchange code", err)
	}
	id, err := p.identity(ctx, tok, nonce)
	if err != nil {
		return Identity{}, nil, err
	}
	return id, tok, nil
}

// Refresh redeems a provider refresh token. It implements the token cache's
// Refresher: provider answers come back as *oauth2.RetrieveError.
func (p *Provider) Refresh(ctx context.Context, refreshToken string) (_ *oauth2.Token, err error) {
	ctx, span := startSpan(ctx, "idp.refresh")
	defer func() { tracing.End(span, err) }()
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
func (p *Provider) RefreshFor(ctx context.Context, refreshToken string, scopes []string, resource string) (_ *oauth2.Token, err error) {
	ctx, span := startSpan(ctx, "idp.refresh")
	defer func() { tracing.End(span, err) }()
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

// identity verifies the ID token of tok: its signature against the
// provider's key set, iss, aud, exp, nbf and nonce (OIDC Core §3.1.3.7).
// Whatever the endpoints, an ID token is never trusted unverified.
func (p *Provider) identity(ctx context.Context, tok *oauth2.Token, nonce string) (Identity, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: none in the token response (is the openid scope configured?)", ErrIDToken)
	}
	p.mu.Lock()
	verifier, issuer, tenants := p.verifier, p.issuer, p.tenants
	p.mu.Unlock()
	if verifier == nil {
		return Identity{}, fmt.Errorf("%w: no key set", ErrIDToken)
	}
	idt, err := verifier.Verify(p.ctx(ctx), raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrIDToken, err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrIDToken, err)
	}
	if MultiTenant(p.cfg.Issuer) {
		// Multi-tenant: the issuer must be the template with this token's tenant.
		want := strings.ReplaceAll(issuer, "{tenantid}", c.TenantID)
		if c.TenantID == "" || c.Issuer != want {
			return Identity{}, fmt.Errorf("%w: issuer does not match the token's tenant", ErrIDToken)
		}
		if tenants != nil && !tenants[strings.ToLower(c.TenantID)] {
			return Identity{}, fault.Withf(ErrBadTenant, "the tenant %s is not accepted", c.TenantID)
		}
	}
	if c.Nonce != nonce {
		return Identity{}, fmt.Errorf("%w: nonce mismatch", ErrIDToken)
	}
	if c.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no subject", ErrIDToken)
	}
	id := Identity{Subject: c.Subject, Name: c.Name, Email: c.Email, Tenant: c.TenantID}
	id.PreferredUsername, id.ObjectID = c.PreferredUsername, c.ObjectID
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

// classify separates a provider's refusal (4xx) from its being unavailable
// (5xx, timeouts, refused connections).
func classify(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
		code := re.ErrorCode
		if code == "" {
			code = "invalid_grant"
		}
		return fmt.Errorf("%s: %w (%s)", op, ErrRefused, code)
	}
	return fault.Because(ErrUnavailable, errors.New(op))
}

package connector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// EntraOptions configures Entra ID (Azure AD) admin consent and the
// "Organizational account" sign-in on /odata. The zero value turns both off.
type EntraOptions struct {
	Authority    string       // Entra login host; zero: https://login.microsoftonline.com
	Tenant       string       // pins one tenant (ID or domain name); zero: any tenant ("common")
	ClientID     string       // the bridge's application (client) ID; zero: admin consent and on-behalf-of are off
	ClientSecret string       // the bridge's client secret, sent only to Entra's token endpoint
	ConsentScope string       // scope of the admin-consent request; zero: https://graph.microsoft.com/.default
	OrgAccount   bool         // accept Entra access tokens on /odata and exchange them on-behalf-of; zero: off
	AppIDURI     string       // audience of incoming Entra tokens; zero: the public URL
	HTTPClient   *http.Client // discovery, keys, token and K2 refresh requests; zero: a client with a 30 s timeout
}

// DefaultAuthority is Entra ID's global login host.
const DefaultAuthority = "https://login.microsoftonline.com"

// ErrBadTenant means a tenant is neither a tenant ID (GUID) nor a domain name.
var ErrBadTenant = fault.Sentinel(fault.BadRequest, "BadRequest", "Bad tenant.")

// Failures of admin consent and of the on-behalf-of exchange.
var (
	errEntraOff        = fault.Sentinel(fault.NotFound, "NotFound", "Entra ID is not configured.")
	errConsentRequired = fault.Sentinel(fault.Forbidden, "ConsentRequired", "Consent required.")
	errOBORefused      = errors.New("the identity provider refused the on-behalf-of exchange")
)

var (
	guidPattern  = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
	labelPattern = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// ValidTenant reports whether s names an Entra tenant: a tenant ID (GUID) or
// a domain name of at least two labels, such as contoso.onmicrosoft.com.
func ValidTenant(s string) bool {
	if guidPattern.MatchString(s) {
		return true
	}
	labels := strings.Split(s, ".")
	if len(s) > 253 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !labelPattern.MatchString(l) {
			return false
		}
	}
	// RFC 1123 §2.1: the top-level label is not all digits, so no IP address passes.
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

func (o EntraOptions) authority() string {
	if o.Authority == "" {
		return DefaultAuthority
	}
	return strings.TrimSuffix(o.Authority, "/")
}

// tenantSegment is the tenant path segment of Entra's endpoints: the pinned
// tenant, or "common" for any.
func (o EntraOptions) tenantSegment() string {
	if o.Tenant == "" {
		return "common"
	}
	return o.Tenant
}

// AuthorizationURI is the authorization_uri of the Bearer challenge that
// makes Power Query offer "Organizational account".
func (o EntraOptions) AuthorizationURI() string {
	return o.authority() + "/" + url.PathEscape(o.tenantSegment()) + "/oauth2/authorize"
}

// AdminConsentURL returns Entra's admin-consent URL for tenant (the pinned
// tenant when empty) with the bridge's own callback under publicURL as the
// redirect. It carries no state and is deterministic, so `bridge
// consent-url` prints exactly what GET /admin/consent redirects to.
func (o EntraOptions) AdminConsentURL(publicURL, tenant string) (string, error) {
	if o.ClientID == "" {
		return "", fault.With(errEntraOff, "set idp.client_id")
	}
	if tenant == "" {
		tenant = o.Tenant
	}
	if tenant == "" {
		return "", fault.With(ErrBadTenant, "name the tenant (tenant ID or domain name)")
	}
	if !ValidTenant(tenant) {
		return "", fault.With(ErrBadTenant, "the tenant must be a tenant ID (GUID) or a domain name")
	}
	if o.Tenant != "" && !strings.EqualFold(tenant, o.Tenant) {
		return "", fault.With(ErrBadTenant, "this bridge accepts only its configured tenant")
	}
	scope := o.ConsentScope
	if scope == "" {
		scope = "https://graph.microsoft.com/.default"
	}
	q := url.Values{
		"client_id":    {o.ClientID},
		"redirect_uri": {strings.TrimSuffix(publicURL, "/") + "/oauth/callback"},
		"scope":        {scope},
	}
	// url.Values.Encode sorts by key: the same inputs give the same URL.
	return o.authority() + "/" + url.PathEscape(tenant) + "/v2.0/adminconsent?" + q.Encode(), nil
}

// kindOBO is the token cache kind of on-behalf-of results.
const kindOBO = "obo"

// oboMargin is how long before its expiry a cached on-behalf-of token is
// no longer handed out, so it does not expire on its way upstream.
const oboMargin = time.Minute

// entra validates Entra access tokens and exchanges them on-behalf-of.
type entra struct {
	opts      EntraOptions
	publicURL string
	audience  string
	client    *http.Client
	now       func() time.Time
	store     Store
	log       *slog.Logger
	flight    singleflight.Group

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	keys     *keySet
	issuers  []string // issuer templates of v2 and v1 tokens; may hold "{tenantid}"
}

// newEntra returns nil when Entra ID is off.
func newEntra(opts Options, public string) (*entra, error) {
	o := opts.Entra
	if o.ClientID == "" && !o.OrgAccount {
		return nil, nil
	}
	if o.Tenant != "" && !ValidTenant(o.Tenant) {
		return nil, fmt.Errorf("connector: entra tenant: %w", ErrBadTenant)
	}
	e := &entra{opts: o, publicURL: public, audience: o.AppIDURI, client: o.HTTPClient, now: opts.Now, log: opts.Logger}
	if e.audience == "" {
		e.audience = public
	}
	if e.client == nil {
		e.client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.OrgAccount {
		if o.ClientID == "" {
			return nil, errors.New("connector: organizational accounts need the bridge's Entra client ID")
		}
		e.store = opts.Store
	}
	return e, nil
}

// discover reads the tenant's v2 and v1 discovery documents once they
// answer: the key set and the issuer templates of both token versions.
func (e *entra) discover(ctx context.Context) (*oidc.IDTokenVerifier, []string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.verifier != nil {
		return e.verifier, e.issuers, nil
	}
	base := e.opts.authority() + "/" + url.PathEscape(e.opts.tenantSegment())
	var v2, v1 struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, e.client, "entra discovery", base+"/v2.0/.well-known/openid-configuration", &v2); err != nil {
		return nil, nil, err
	}
	// Power BI asks for a token to the App ID URI, which Entra issues in
	// version 1 unless the app manifest asks for version 2.
	if err := getJSON(ctx, e.client, "entra discovery", base+"/.well-known/openid-configuration", &v1); err != nil {
		return nil, nil, err
	}
	if v2.Issuer == "" || v2.JWKSURI == "" || v1.Issuer == "" {
		return nil, nil, fmt.Errorf("entra discovery: %w: incomplete discovery document", ErrProviderDown)
	}
	e.keys = &keySet{uri: v2.JWKSURI, client: e.client, now: e.now}
	e.verifier = oidc.NewVerifier("", e.keys, &oidc.Config{
		ClientID: e.audience,
		// Checked below against the token's own tenant.
		SkipIssuerCheck: true,
		// Entra signs with RS256 only; "none" and HMAC never verify.
		SupportedSigningAlgs: []string{oidc.RS256},
		Now:                  e.now,
	})
	e.issuers = []string{v2.Issuer, v1.Issuer}
	return e.verifier, e.issuers, nil
}

// getJSON reads the JSON document at u into v; what names it in errors. A
// failure to get it is ErrProviderDown.
func getJSON(ctx context.Context, client *http.Client, what, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", what, ErrProviderDown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %w: answered %d", what, ErrProviderDown, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s: %w: %v", what, ErrProviderDown, err)
	}
	return nil
}

// entraClaims are the claims of an Entra access token that the bridge uses.
type entraClaims struct {
	Issuer   string `json:"iss"`
	TenantID string `json:"tid"`
	ObjectID string `json:"oid"`
}

// isJWT reports whether a bearer token is a JWT: bridge tokens are opaque
// and never hold a dot (tokencache's token formats).
func isJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// verify checks an Entra access token: signature through the tenant's key
// set, audience, expiry, and the issuer of the token's own tenant.
func (e *entra) verify(ctx context.Context, raw string) (entraClaims, error) {
	v, issuers, err := e.discover(ctx)
	if err != nil {
		return entraClaims{}, err
	}
	if err := e.keys.ensure(ctx, raw); err != nil {
		return entraClaims{}, err
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return entraClaims{}, fault.Because(errBadCredentials, errors.New("the Entra token has expired"))
		}
		return entraClaims{}, fault.Because(errBadCredentials, errors.New("the Entra token did not verify"))
	}
	var c entraClaims
	if err := tok.Claims(&c); err != nil || !guidPattern.MatchString(c.TenantID) || c.ObjectID == "" {
		return entraClaims{}, fault.Because(errBadCredentials, errors.New("the Entra token lacks tid or oid"))
	}
	if guidPattern.MatchString(e.opts.Tenant) && !strings.EqualFold(c.TenantID, e.opts.Tenant) {
		return entraClaims{}, fault.Because(errBadCredentials, errors.New("the Entra token is from another tenant"))
	}
	ok := false
	for _, tpl := range issuers {
		// A pinned tenant's issuer names its tenant ID; a shared one holds
		// the "{tenantid}" template, filled with this token's tenant.
		if c.Issuer == strings.ReplaceAll(tpl, "{tenantid}", c.TenantID) {
			ok = true
		}
	}
	if !ok {
		return entraClaims{}, fault.Because(errBadCredentials, errors.New("the Entra token's issuer is not its tenant's"))
	}
	return c, nil
}

// oboResult is an on-behalf-of token.
type oboResult struct {
	AccessToken tokencache.Secret
	Expiry      time.Time
}

// oboCached is an on-behalf-of token as the token cache holds it, encrypted.
type oboCached struct {
	AccessToken string    `json:"access_token"`
	Expiry      time.Time `json:"expiry"`
}

// oboKey names the cached result of one person and resource: a hash of the
// token's tid and oid and the resource, so the store never sees who it is.
func oboKey(c entraClaims, resource string) string {
	h := sha256.Sum256([]byte(c.TenantID + "\x00" + c.ObjectID + "\x00" + resource))
	return hex.EncodeToString(h[:])
}

// onBehalfOf returns a token to resource for the person of assertion: the
// cached one while it is valid, unless fresh, else a new exchange.
func (e *entra) onBehalfOf(ctx context.Context, assertion string, c entraClaims, resource string, fresh bool) (tokencache.Secret, error) {
	key := oboKey(c, resource)
	if !fresh {
		if raw, err := e.store.Value(ctx, kindOBO, key); err == nil {
			var r oboCached
			if json.Unmarshal(raw, &r) == nil && r.AccessToken != "" && e.now().Add(oboMargin).Before(r.Expiry) {
				return tokencache.Secret(r.AccessToken), nil
			}
		} else if !errors.Is(err, tokencache.ErrNotFound) {
			return "", err
		}
	}
	// One exchange per person and resource at a time in this process.
	v, err, _ := e.flight.Do(key, func() (any, error) {
		return e.exchange(context.WithoutCancel(ctx), assertion, c, resource)
	})
	if err != nil {
		return "", err
	}
	r := v.(oboResult)
	if ttl := r.Expiry.Sub(e.now()) - oboMargin; ttl > 0 {
		raw, _ := json.Marshal(oboCached{string(r.AccessToken), r.Expiry})
		if err := e.store.PutValue(ctx, kindOBO, key, raw, ttl); err != nil {
			// The token is good; only its reuse is lost.
			e.log.WarnContext(ctx, "cache on-behalf-of token", slog.Any("error", err))
		}
	}
	return r.AccessToken, nil
}

// exchange runs the on-behalf-of token request of the Microsoft identity
// platform v2 at the token's own tenant.
func (e *entra) exchange(ctx context.Context, assertion string, c entraClaims, resource string) (oboResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// clientcredentials lets grant_type be replaced; the rest is the
	// documented OBO request (grant jwt-bearer, requested_token_use).
	cc := clientcredentials.Config{
		ClientID:     e.opts.ClientID,
		ClientSecret: e.opts.ClientSecret,
		TokenURL:     e.opts.authority() + "/" + c.TenantID + "/oauth2/v2.0/token",
		Scopes:       []string{resource + "/.default"},
		AuthStyle:    oauth2.AuthStyleInParams,
		EndpointParams: url.Values{
			"grant_type":          {"urn:ietf:params:oauth:grant-type:jwt-bearer"},
			"requested_token_use": {"on_behalf_of"},
			"assertion":           {assertion},
		},
	}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, e.client))
	if err != nil {
		return oboResult{}, e.oboError(err, c)
	}
	exp := tok.Expiry
	if exp.IsZero() {
		exp = e.now().Add(time.Hour)
	}
	return oboResult{AccessToken: tokencache.Secret(tok.AccessToken), Expiry: exp}, nil
}

// oboError tells consent needed, an invalid token, a refusal of the bridge
// itself and an unavailable provider apart.
func (e *entra) oboError(err error, c entraClaims) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil || re.Response.StatusCode >= 500 {
		return fmt.Errorf("on-behalf-of: %w", ErrProviderDown)
	}
	var body struct {
		SubError   string `json:"suberror"`
		ErrorCodes []int  `json:"error_codes"`
	}
	_ = json.Unmarshal(re.Body, &body)
	consent := re.ErrorCode == "interaction_required" || body.SubError == "consent_required" ||
		strings.Contains(re.ErrorDescription, "AADSTS65001")
	for _, code := range body.ErrorCodes {
		consent = consent || code == 65001
	}
	switch {
	case consent:
		u, uerr := e.opts.AdminConsentURL(e.publicURL, c.TenantID)
		if uerr != nil {
			u = e.publicURL + "/admin/consent?tenant=" + url.QueryEscape(c.TenantID)
		}
		return fault.Withf(errConsentRequired, "The tenant has not consented to the bridge for this source; a tenant administrator grants it at %s", u)
	case re.ErrorCode == "invalid_grant":
		return fault.Because(errBadCredentials, errors.New("on-behalf-of: Entra refused the token"))
	}
	e.log.Error("on-behalf-of refused; check the bridge's Entra client ID, secret and API permissions",
		slog.String("error_code", re.ErrorCode), slog.Int("status", re.Response.StatusCode))
	return fmt.Errorf("on-behalf-of: %w (%s)", errOBORefused, re.ErrorCode)
}

// oboAuthorizer sends the on-behalf-of token of the caller upstream; after
// an upstream 401 it exchanges again instead of reusing the cached one.
type oboAuthorizer struct {
	e         *entra
	assertion string
	claims    entraClaims
	resource  string
	token     tokencache.Secret
}

func (a *oboAuthorizer) Authorize(ctx context.Context, out *http.Request, renew bool) error {
	if renew || a.token == "" {
		tok, err := a.e.onBehalfOf(ctx, a.assertion, a.claims, a.resource, renew)
		if err != nil {
			return err
		}
		a.token = tok
	}
	out.Header.Set("Authorization", "Bearer "+string(a.token))
	return nil
}

// feedCaller authenticates the caller of a source. An Entra access token
// is accepted where organizational accounts are on: it is verified and, for
// auth user, exchanged on-behalf-of before anything reaches the upstream,
// and the returned Authorizer sends the result. Otherwise auth is nil and
// user is the caller's bridge session.
func (s *Server) feedCaller(ctx context.Context, cr credential, src *Source) (user string, auth odata.Authorizer, err error) {
	if cr.kind != "bearer" || !isJWT(cr.value) || s.entra == nil || !s.entra.opts.OrgAccount {
		user, err = s.sessionOf(ctx, cr)
		return user, nil, err
	}
	c, err := s.entra.verify(ctx, cr.value)
	if err != nil {
		return "", nil, err
	}
	user = "entra:" + oboKey(c, "")
	if src.Auth != "user" {
		return user, nil, nil
	}
	if src.Resource == "" {
		return "", nil, fmt.Errorf("source %s: %w: no resource for on-behalf-of", src.Name, errOBORefused)
	}
	a := &oboAuthorizer{e: s.entra, assertion: cr.value, claims: c, resource: src.Resource}
	if a.token, err = s.entra.onBehalfOf(ctx, cr.value, c, src.Resource, false); err != nil {
		return "", nil, err
	}
	return user, a, nil
}

// authorizationURI is the Bearer challenge's authorization_uri where
// organizational accounts are on, else empty.
func (s *Server) authorizationURI() string {
	if s.entra == nil || !s.entra.opts.OrgAccount {
		return ""
	}
	return s.entra.opts.AuthorizationURI()
}

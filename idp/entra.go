package idp

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
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/internal/tracing"
	"github.com/odata-bridge/bridge/tokencache"
)

// Cache is what the on-behalf-of exchange needs of the token cache: values
// by kind and key, encrypted at rest, with a lifetime. Value answers
// tokencache.ErrNotFound for a missing or expired value.
type Cache interface {
	PutValue(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error
	Value(ctx context.Context, kind, key string) ([]byte, error)
}

var _ Cache = (*tokencache.Store)(nil)

// EntraConfig configures Entra ID (Azure AD) admin consent and the
// "Organizational account" sign-in on /odata. The zero value turns both off.
type EntraConfig struct {
	Authority      string           // Entra login host; zero: https://login.microsoftonline.com
	Tenant         string           // pins one tenant (ID or domain name); zero: the multi-tenant "common"
	AllowedTenants []string         // further tenants (IDs or domain names) whose tokens are accepted; zero: only Tenant
	ClientID       string           // the bridge's application (client) ID; zero: admin consent and on-behalf-of are off
	ClientSecret   string           // the bridge's client secret, sent only to Entra's token endpoint
	ConsentScope   string           // scope of the admin-consent request; zero: https://graph.microsoft.com/.default
	OrgAccount     bool             // accept Entra access tokens on /odata and exchange them on-behalf-of; zero: off
	AppIDURI       string           // audience of incoming Entra tokens; zero: PublicURL
	PublicURL      string           // the bridge's public URL: its callback and the default audience; required
	HTTPClient     *http.Client     // discovery, keys, token and K2 refresh requests; zero: a client with a 30 s timeout
	Cache          Cache            // on-behalf-of results; required with OrgAccount
	Logger         *slog.Logger     // zero: discard
	Now            func() time.Time // zero: time.Now
}

// DefaultAuthority is Entra ID's global login host.
const DefaultAuthority = "https://login.microsoftonline.com"

func (o EntraConfig) authority() string {
	if o.Authority == "" {
		return DefaultAuthority
	}
	return strings.TrimSuffix(o.Authority, "/")
}

// tenantSegment is the tenant path segment of Entra's endpoints: the pinned
// tenant, or "common" for any.
func (o EntraConfig) tenantSegment() string {
	if o.Tenant == "" {
		return "common"
	}
	return o.Tenant
}

// accepted are the tenants whose tokens are accepted: the pinned one and
// the allowed ones.
func (o EntraConfig) accepted() []string {
	var ts []string
	if !sharedTenant(o.Tenant) {
		ts = append(ts, o.Tenant)
	}
	return append(ts, o.AllowedTenants...)
}

// AuthorizationURI is the authorization_uri of the Bearer challenge that
// makes Power Query offer "Organizational account".
func (o EntraConfig) AuthorizationURI() string {
	return o.authority() + "/" + url.PathEscape(o.tenantSegment()) + "/oauth2/authorize"
}

// AdminConsentURL returns Entra's admin-consent URL for tenant (the pinned
// tenant when empty) with the bridge's own callback under publicURL as the
// redirect. It carries no state and is deterministic, so `bridge
// consent-url` prints exactly what GET /admin/consent redirects to.
func (o EntraConfig) AdminConsentURL(publicURL, tenant string) (string, error) {
	if o.ClientID == "" {
		return "", fault.With(ErrNotConfigured, "set idp.client_id")
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

// Entra validates Entra access tokens and exchanges them on-behalf-of.
type Entra struct {
	cfg      EntraConfig
	audience string
	client   *http.Client
	now      func() time.Time
	log      *slog.Logger
	flight   singleflight.Group

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	keys     *keySet
	issuers  []string        // issuer templates of v2 and v1 tokens; may hold "{tenantid}"
	tenants  map[string]bool // lower-case IDs of the accepted tenants
}

// NewEntra returns the Entra ID part of the bridge, or nil when cfg turns
// it off (no client ID and no organizational accounts).
func NewEntra(cfg EntraConfig) (*Entra, error) {
	if cfg.ClientID == "" && !cfg.OrgAccount {
		return nil, nil
	}
	if cfg.Tenant != "" && !ValidTenant(cfg.Tenant) {
		return nil, fmt.Errorf("idp: entra tenant: %w", ErrBadTenant)
	}
	for _, t := range cfg.AllowedTenants {
		if !ValidTenant(t) {
			return nil, fmt.Errorf("idp: entra allowed tenant %q: %w", t, ErrBadTenant)
		}
	}
	e := &Entra{cfg: cfg, audience: cfg.AppIDURI, client: cfg.HTTPClient, now: cfg.Now, log: cfg.Logger}
	if e.audience == "" {
		e.audience = strings.TrimSuffix(cfg.PublicURL, "/")
	}
	if e.client == nil {
		e.client = &http.Client{Timeout: 30 * time.Second}
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.OrgAccount {
		switch {
		case cfg.ClientID == "":
			return nil, errors.New("idp: organizational accounts need the bridge's Entra client ID")
		case cfg.Cache == nil:
			return nil, errors.New("idp: organizational accounts need a cache")
		case len(cfg.accepted()) == 0:
			// A multi-tenant issuer would take a token of any tenant in the world.
			return nil, fmt.Errorf("idp: organizational accounts: %w: pin the tenant or list the allowed tenants", ErrBadTenant)
		}
	}
	return e, nil
}

// discover reads the v2 and v1 discovery documents once they answer: the
// key set and the issuer templates of both token versions, and the IDs of
// the accepted tenants. With allowed tenants besides the pinned one, the
// documents are the multi-tenant ones, whose issuers are templates.
func (e *Entra) discover(ctx context.Context) (*oidc.IDTokenVerifier, []string, map[string]bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.verifier != nil {
		return e.verifier, e.issuers, e.tenants, nil
	}
	seg := e.cfg.tenantSegment()
	if len(e.cfg.AllowedTenants) > 0 {
		seg = "common"
	}
	base := e.cfg.authority() + "/" + url.PathEscape(seg)
	var v2, v1 struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, e.client, "entra discovery", base+"/v2.0/.well-known/openid-configuration", &v2); err != nil {
		return nil, nil, nil, err
	}
	// Power BI asks for a token to the App ID URI, which Entra issues in
	// version 1 unless the app manifest asks for version 2.
	if err := getJSON(ctx, e.client, "entra discovery", base+"/.well-known/openid-configuration", &v1); err != nil {
		return nil, nil, nil, err
	}
	if v2.Issuer == "" || v2.JWKSURI == "" || v1.Issuer == "" {
		return nil, nil, nil, fault.Because(ErrUnavailable, errors.New("entra discovery: incomplete discovery document"))
	}
	tenants, err := resolveTenants(ctx, e.client, e.cfg.accepted(), func(domain string) string {
		return e.cfg.authority() + "/" + domain + "/v2.0/.well-known/openid-configuration"
	})
	if err != nil {
		return nil, nil, nil, err
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
	e.tenants = tenants
	return e.verifier, e.issuers, e.tenants, nil
}

// Caller is who a verified Entra access token names.
type Caller struct {
	Issuer   string `json:"iss"`
	TenantID string `json:"tid"`
	ObjectID string `json:"oid"`
}

// Key names one person and resource: a hash of the tenant, the object ID
// and the resource, so a store never sees who it is.
func (c Caller) Key(resource string) string {
	h := sha256.Sum256([]byte(c.TenantID + "\x00" + c.ObjectID + "\x00" + resource))
	return hex.EncodeToString(h[:])
}

// Verify checks an Entra access token: signature through the tenant's key
// set, audience, expiry, an accepted tenant, and the issuer of the token's
// own tenant. A refusal is ErrInvalidToken; a key set or discovery that
// does not answer is ErrUnavailable.
func (e *Entra) Verify(ctx context.Context, raw string) (Caller, error) {
	v, issuers, tenants, err := e.discover(ctx)
	if err != nil {
		return Caller{}, err
	}
	if err := e.keys.ensure(ctx, raw); err != nil {
		return Caller{}, err
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return Caller{}, fault.Because(ErrInvalidToken, errors.New("the Entra token has expired"))
		}
		return Caller{}, fault.Because(ErrInvalidToken, errors.New("the Entra token did not verify"))
	}
	var c Caller
	if err := tok.Claims(&c); err != nil || !guidPattern.MatchString(c.TenantID) || c.ObjectID == "" {
		return Caller{}, fault.Because(ErrInvalidToken, errors.New("the Entra token lacks tid or oid"))
	}
	// Only a user's delegated token names a person: an application's own
	// token (client credentials, roles and no scp, idtyp "app") would let
	// any service principal of an accepted tenant read as nobody.
	var kind struct {
		Scope  string `json:"scp"`
		IDType string `json:"idtyp"`
	}
	if err := tok.Claims(&kind); err != nil || kind.Scope == "" || kind.IDType == "app" {
		return Caller{}, fault.Because(ErrInvalidToken, errors.New("the Entra token is not a user's delegated token"))
	}
	if !tenants[strings.ToLower(c.TenantID)] {
		return Caller{}, fault.Because(ErrInvalidToken, errors.New("the Entra token is from another tenant"))
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
		return Caller{}, fault.Because(ErrInvalidToken, errors.New("the Entra token's issuer is not its tenant's"))
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

// OnBehalfOf returns a token to resource for the caller of assertion: the
// cached one while it is valid, unless fresh, else a new exchange.
func (e *Entra) OnBehalfOf(ctx context.Context, assertion string, c Caller, resource string, fresh bool) (tokencache.Secret, error) {
	if e.cfg.Cache == nil {
		return "", fault.With(ErrNotConfigured, "organizational accounts are off")
	}
	key := c.Key(resource)
	if !fresh {
		if raw, err := e.cfg.Cache.Value(ctx, kindOBO, key); err == nil {
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
		if err := e.cfg.Cache.PutValue(ctx, kindOBO, key, raw, ttl); err != nil {
			// The token is good; only its reuse is lost.
			e.log.WarnContext(ctx, "cache on-behalf-of token", slog.Any("error", err))
		}
	}
	return r.AccessToken, nil
}

// exchange runs the on-behalf-of token request of the Microsoft identity
// platform v2 at the token's own tenant.
func (e *Entra) exchange(ctx context.Context, assertion string, c Caller, resource string) (_ oboResult, err error) {
	ctx, span := startSpan(ctx, "idp.on_behalf_of")
	defer func() { tracing.End(span, err) }()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// clientcredentials lets grant_type be replaced; the rest is the
	// documented OBO request (grant jwt-bearer, requested_token_use).
	cc := clientcredentials.Config{
		ClientID:     e.cfg.ClientID,
		ClientSecret: e.cfg.ClientSecret,
		TokenURL:     e.cfg.authority() + "/" + c.TenantID + "/oauth2/v2.0/token",
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
func (e *Entra) oboError(err error, c Caller) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil || re.Response.StatusCode >= 500 {
		return fault.Because(ErrUnavailable, errors.New("on-behalf-of"))
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
	public := strings.TrimSuffix(e.cfg.PublicURL, "/")
	switch {
	case consent:
		u, uerr := e.cfg.AdminConsentURL(public, c.TenantID)
		if uerr != nil {
			u = public + "/admin/consent?tenant=" + url.QueryEscape(c.TenantID)
		}
		return fault.Withf(ErrConsentRequired, "The tenant has not consented to the bridge for this source; a tenant administrator grants it at %s", u)
	case re.ErrorCode == "invalid_grant":
		return fault.Because(ErrInvalidToken, errors.New("on-behalf-of: Entra refused the token"))
	}
	e.log.Error("on-behalf-of refused; check the bridge's Entra client ID, secret and API permissions",
		slog.String("error_code", re.ErrorCode), slog.Int("status", re.Response.StatusCode))
	return fmt.Errorf("on-behalf-of: %w (%s)", ErrOBORefused, re.ErrorCode)
}

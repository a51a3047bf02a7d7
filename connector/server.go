// Package connector is the bridge's HTTP surface: the OAuth authorization
// server that Power BI's custom connector talks to, the authentication of
// feed calls, the relay routes, health, readiness and metrics.
package connector

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/odata/rest"
	"github.com/odata-bridge/bridge/tokencache"
)

// Store is what the connector needs from the token cache.
type Store interface {
	CreateSession(ctx context.Context, sess tokencache.Session) (string, error)
	Session(ctx context.Context, sessionID string) (tokencache.Session, error)
	Issue(ctx context.Context, sessionID string) (tokencache.Tokens, error)
	Authenticate(ctx context.Context, accessToken string) (string, error)
	Rotate(ctx context.Context, refreshToken string) (tokencache.Tokens, error)
	Token(ctx context.Context, sessionID string) (tokencache.Secret, error)
	Renew(ctx context.Context, sessionID string, stale tokencache.Secret) (tokencache.Secret, error)
	TokenFor(ctx context.Context, sessionID string, aud tokencache.Audience) (tokencache.Secret, error)
	RenewFor(ctx context.Context, sessionID string, aud tokencache.Audience, stale tokencache.Secret) (tokencache.Secret, error)
	Revoke(ctx context.Context, token string) error
	EndSession(ctx context.Context, sessionID string) error
	CreateFeedKey(ctx context.Context, sessionID, name string) (tokencache.KeyInfo, tokencache.Secret, error)
	FeedKey(ctx context.Context, key string) (string, error)
	FeedKeys(ctx context.Context, subject string) ([]tokencache.KeyInfo, error)
	RevokeFeedKey(ctx context.Context, subject, id string) error
	PutOnce(ctx context.Context, kind string, value []byte, ttl time.Duration) (tokencache.Secret, error)
	TakeOnce(ctx context.Context, kind, handle string) ([]byte, error)
	PutValue(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error
	Value(ctx context.Context, kind, key string) ([]byte, error)
	DeleteValue(ctx context.Context, kind, key string) error
	Claim(ctx context.Context, kind, key string, ttl time.Duration) error
	Allow(ctx context.Context, id string, perMinute int) (time.Duration, error)
	Ping(ctx context.Context) error
}

var _ Store = (*tokencache.Store)(nil)

// IdentityProvider is what the connector needs from the identity provider.
type IdentityProvider interface {
	AuthCodeURL(ctx context.Context, state, nonce, verifier string) (string, error)
	Exchange(ctx context.Context, code, verifier, nonce string) (idp.Identity, *oauth2.Token, error)
	Ping(ctx context.Context) error
}

var _ IdentityProvider = (*idp.Provider)(nil)

// Feed serves the OData requests of one source: the relay's source for kind
// odata, a REST service for kind rest.
type Feed interface {
	// ServeFeed answers r; path is the escaped remainder after
	// /odata/{source}/, user an opaque per-caller cache key (the session,
	// or a session's feed key; "" caches nothing), auth the upstream
	// credentials (nil: none). It returns what it read of the body it
	// answered with: the rows of a page and whether it named a next one.
	ServeFeed(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) odata.Served
	// Version is the source's OData version, "" while it is unknown.
	Version() string
}

var (
	_ Feed = (*odata.Feed)(nil)
	_ Feed = (*rest.Service)(nil)
)

// Source is a configured source as the connector sees it.
type Source struct {
	Name       string
	Title      string
	Kind       string               // odata | rest
	Auth       AuthMode             // how upstream calls are authorized
	Feed       Feed                 // required; serves the source's requests
	Service    oauth2.TokenSource   // client-credentials: the shared service token
	Audience   *tokencache.Audience // user: the source's own token audience, when its scopes or resource differ from the sign-in's; nil: the session's token
	Resource   string               // the upstream's resource for on-behalf-of (K2: https://api.k2.com); zero: none
	RefreshURL string               // the upstream's OData service refresh (K2's /api/odata/op/refresh); zero: none
}

// Client is an OAuth client of the bridge, such as Power BI's connector.
type Client struct {
	ID           string
	RedirectURIs []string // compared by exact string match (RFC 9700 §2.1)
}

// Options configures the HTTP surface. Every field says its zero value.
type Options struct {
	PublicURL      string                // required; base of every redirect and feed URL
	TrustedProxies []string              // CIDRs whose X-Forwarded-For is believed; nil: none
	Store          Store                 // required
	Provider       IdentityProvider      // required for sign-in
	Clients        []Client              // zero: no OAuth client can sign in
	Sources        []Source              // in the order of the config
	APIKeyParam    string                // zero: "api_key"
	RateLimit      int                   // feed requests per session and minute, shared by replicas; zero: off
	AccessTTL      time.Duration         // lifetime reported as expires_in; zero: the store's
	Logger         *slog.Logger          // zero: discard
	Registerer     prometheus.Registerer // zero: a private registry
	Gatherer       prometheus.Gatherer   // served by MetricsHandler; zero: the private registry
	Now            func() time.Time      // zero: time.Now; drives code and state expiry
	CookieKey      []byte                // 32 bytes sealing the sign-in page's cookie; zero: random per process
	Extra          func(r gin.IRouter)   // further routes, for tests
	Entra          idp.EntraConfig       // admin consent and organizational accounts; zero: off. New sets its PublicURL, and its Cache, Logger and Now from these options when zero
	MaxKeysPerUser int                   // feed keys one user may hold; POST /api/keys beyond it answers 409; zero: no limit
	BodyTimeout    time.Duration         // time to receive a request body, from the first handler on; zero: 30s
	TracerProvider trace.TracerProvider  // a server span per request, named after its route, and a span per authorization; zero: no tracing
	Admins         []string              // e-mail addresses, user names, subject or object IDs allowed on /admin; zero: nobody
	Ledger         Ledger                // usage, refresh history and audit trail; zero: none kept (the audit log lines are still written)
}

// Server is the bridge's http.Handler.
type Server struct {
	opts      Options
	public    *url.URL
	engine    *gin.Engine
	log       *slog.Logger
	now       func() time.Time
	clients   map[string]Client
	sources   map[string]*Source
	metrics   *metrics
	gather    prometheus.Gatherer
	cookieKey []byte
	entra     *idp.Entra // nil: Entra ID off
	versions  versions

	tracer trace.Tracer // nil: tracing off
	adm    adminState
}

// New builds the gin engine with every route of the bridge.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("connector: a store is required")
	}
	pub, err := url.Parse(strings.TrimSuffix(opts.PublicURL, "/"))
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" {
		return nil, fmt.Errorf("connector: public URL %q is not an absolute http(s) URL", opts.PublicURL)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.APIKeyParam == "" {
		opts.APIKeyParam = "api_key"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = 30 * time.Second
	}
	reg := opts.Registerer
	gather := opts.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gather = r, r
	}
	if gather == nil {
		gather = prometheus.DefaultGatherer
	}
	s := &Server{
		opts:     opts,
		public:   pub,
		log:      opts.Logger,
		now:      opts.Now,
		clients:  map[string]Client{},
		sources:  map[string]*Source{},
		versions: versions{checked: map[string]time.Time{}, stored: map[string]bool{}},
		gather:   gather,
	}
	if s.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	switch len(opts.CookieKey) {
	case 0:
		s.cookieKey = make([]byte, 32)
		rand.Read(s.cookieKey)
	case 32:
		s.cookieKey = opts.CookieKey
	default:
		return nil, errors.New("connector: the cookie key must be 32 bytes")
	}
	entra := opts.Entra
	entra.PublicURL = pub.String()
	if entra.Cache == nil && entra.OrgAccount {
		entra.Cache = opts.Store
	}
	if entra.Logger == nil {
		entra.Logger = opts.Logger
	}
	if entra.Now == nil {
		entra.Now = opts.Now
	}
	if s.entra, err = idp.NewEntra(entra); err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	s.opts.Entra = entra
	for _, c := range opts.Clients {
		s.clients[c.ID] = c
	}
	for i := range opts.Sources {
		src := &opts.Sources[i]
		if src.Feed == nil {
			return nil, fmt.Errorf("connector: source %q has no feed", src.Name)
		}
		s.sources[src.Name] = src
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.ContextWithFallback = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	e.UseRawPath = true
	e.UnescapePathValues = false
	if err := e.SetTrustedProxies(opts.TrustedProxies); err != nil {
		return nil, fmt.Errorf("connector: trusted proxies: %w", err)
	}
	e.RemoteIPHeaders = []string{"X-Forwarded-For"}
	s.engine = e
	if opts.TracerProvider != nil {
		s.tracer = opts.TracerProvider.Tracer(tracerName)
		e.Use(s.traceRequests)
	}
	s.routes()
	return s, nil
}

// ServeHTTP serves every route of the bridge.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.engine.ServeHTTP(w, r)
}

// url returns the public URL of a bridge path.
func (s *Server) url(path string) string {
	return s.public.String() + path
}

// secureCookies reports whether cookies must be Secure.
func (s *Server) secureCookies() bool { return s.public.Scheme == "https" }

package demo

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/oauth2-proxy/mockoidc"
	"golang.org/x/oauth2"
)

// Sentinel errors of the demo world.
var (
	// ErrUnknownUser means the name is not one of World.Users.
	ErrUnknownUser = errors.New("unknown demo user")
	// ErrSignIn means the in-process sign-in at the embedded provider failed.
	ErrSignIn = errors.New("demo sign-in failed")
	// ErrOptions means Start was given options it cannot honour.
	ErrOptions = errors.New("invalid demo options")
	// errNotAccessToken means a bearer token outlives an access token: it is a refresh token.
	errNotAccessToken = errors.New("token lifetime exceeds the access-token lifetime")
)

// Options configure Start. The zero value is a working demo world.
type Options struct {
	// Host is the address every part listens on, with a random port each;
	// zero: "127.0.0.1".
	Host string
	// Logger receives the world's logs; zero: logs are discarded.
	Logger *slog.Logger
	// AccessTTL is the provider's access-token lifetime; zero: 10m.
	AccessTTL time.Duration
	// RefreshTTL is the provider's refresh-token lifetime; zero: 24h. It must
	// exceed AccessTTL.
	RefreshTTL time.Duration
	// ChooseUser makes a sign-in without login_hint and without a UseUser
	// call show a page with one link per demo user; zero: such a sign-in
	// signs in the first demo user directly, which suits scripted clients.
	ChooseUser bool
	// RedirectURIs are exact redirect URIs accepted besides
	// http://{loopback}:{any port}/oauth/callback; zero: none.
	RedirectURIs []string
	// Compress makes the upstreams gzip responses for clients that accept
	// it, as IIS does in front of K2; zero: never compress.
	Compress bool
}

// World is a running demo world: the identity provider and the upstreams.
type World struct {
	// Issuer is the OIDC issuer URL; discovery is at
	// Issuer+"/.well-known/openid-configuration".
	Issuer string
	// ClientID is the OAuth client the provider knows.
	ClientID string
	// ClientSecret is that client's secret (client_secret_post or client_secret_basic).
	ClientSecret string
	// UpstreamURL is the base URL of the upstream host, ending in "/".
	UpstreamURL string
	// ODataV4URL is the SmartObject OData v4 service root, ending in "/".
	ODataV4URL string
	// ODataV3URL is the SmartObject OData v3 service root, ending in "/".
	ODataV3URL string
	// WorkflowURL is the Workflow REST API root, ending in "/".
	WorkflowURL string
	// Users are the demo user names that can sign in.
	Users []string

	logger   *slog.Logger
	provider *provider
	upstream *http.Server
	served   chan struct{} // closed when the upstream's Serve returns
	offset   atomic.Int64  // Advance's clock offset for the upstreams, in nanoseconds
	closing  sync.Once
	closeErr error
}

// generated is the demo data, built once per process: it is immutable.
var generated = sync.OnceValue(generate)

// Service paths on the upstream host, as K2 lays them out.
const (
	odataV4Path  = "/api/odatav4/v4/"
	odataV3Path  = "/api/odata/v3/"
	workflowPath = "/api/workflow/v1/"
)

// Start brings up the provider and the upstreams on loopback ports. ctx
// bounds start-up only; Close stops the world.
func Start(ctx context.Context, opts Options) (*World, error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.AccessTTL == 0 {
		opts.AccessTTL = 10 * time.Minute
	}
	if opts.RefreshTTL == 0 {
		opts.RefreshTTL = 24 * time.Hour
	}
	if opts.AccessTTL < time.Second || opts.RefreshTTL <= opts.AccessTTL+time.Second {
		return nil, fmt.Errorf("%w: AccessTTL must be at least 1s and RefreshTTL longer than AccessTTL by more than 1s", ErrOptions)
	}
	var lc net.ListenConfig
	idpLn, err := lc.Listen(ctx, "tcp", net.JoinHostPort(opts.Host, "0"))
	if err != nil {
		return nil, fmt.Errorf("demo: listen for the identity provider: %w", err)
	}
	upLn, err := lc.Listen(ctx, "tcp", net.JoinHostPort(opts.Host, "0"))
	if err != nil {
		_ = idpLn.Close()
		return nil, fmt.Errorf("demo: listen for the upstream: %w", err)
	}

	// A fresh key per world: tokens of any other mockoidc, which signs with
	// a published default key, are refused.
	kp, err := mockoidc.RandomKeypair(2048)
	if err == nil {
		_, err = kp.KeyID()
	}
	if err != nil {
		_ = idpLn.Close()
		_ = upLn.Close()
		return nil, fmt.Errorf("demo: signing key: %w", err)
	}
	m, err := mockoidc.NewServer(kp.PrivateKey)
	if err != nil {
		_ = idpLn.Close()
		_ = upLn.Close()
		return nil, fmt.Errorf("demo: identity provider: %w", err)
	}
	m.Keypair = kp
	m.AccessTTL, m.RefreshTTL = opts.AccessTTL, opts.RefreshTTL
	m.CodeChallengeMethodsSupported = []string{"S256", "plain"}
	p := &provider{m: m, logger: opts.Logger, redirectURIs: opts.RedirectURIs, choose: opts.ChooseUser}
	if err := m.AddMiddleware(p.front); err != nil {
		_ = idpLn.Close()
		_ = upLn.Close()
		return nil, fmt.Errorf("demo: identity provider: %w", err)
	}
	// mockoidc's Start owns the serving goroutine; Shutdown in Close ends it.
	if err := m.Start(idpLn, nil); err != nil {
		_ = idpLn.Close()
		_ = upLn.Close()
		return nil, fmt.Errorf("demo: identity provider: %w", err)
	}

	w := &World{
		Issuer:       m.Issuer(),
		ClientID:     m.ClientID,
		ClientSecret: m.ClientSecret,
		UpstreamURL:  "http://" + upLn.Addr().String() + "/",
		logger:       opts.Logger,
		provider:     p,
		served:       make(chan struct{}),
	}
	w.ODataV4URL = w.UpstreamURL + odataV4Path[1:]
	w.ODataV3URL = w.UpstreamURL + odataV3Path[1:]
	w.WorkflowURL = w.UpstreamURL + workflowPath[1:]
	for _, u := range demoUsers {
		w.Users = append(w.Users, u.username)
	}

	auth := &bearerAuth{
		verifier: oidc.NewVerifier(w.Issuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{kp.PublicKey}}, &oidc.Config{
			ClientID:             w.ClientID,
			SupportedSigningAlgs: []string{oidc.RS256},
			Now:                  w.now,
		}),
		maxLifetime: opts.AccessTTL + time.Second,
		logger:      opts.Logger,
	}
	data := generated()
	v4svc := &odataService{proto: v4, root: w.ODataV4URL, path: odataV4Path, data: data}
	v3svc := &odataService{proto: v3, root: w.ODataV3URL, path: odataV3Path, data: data}
	wf := &workflowAPI{path: workflowPath, base: w.UpstreamURL, data: data}
	mux := http.NewServeMux()
	mux.Handle(odataV4Path, auth.wrap(v4svc, v4svc.writeError))
	mux.Handle(odataV3Path, auth.wrap(v3svc, v3svc.writeError))
	mux.Handle(workflowPath, auth.wrap(wf, writeMessage))
	mux.HandleFunc("/", func(rw http.ResponseWriter, _ *http.Request) {
		writeMessage(rw, http.StatusNotFound, "No resource was found that matches the request URI.")
	})
	var handler http.Handler = mux
	if opts.Compress {
		handler = gzipResponses(handler)
	}
	w.upstream = &http.Server{
		Handler:           logRequests(opts.Logger, handler),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(w.served)
		if err := w.upstream.Serve(upLn); !errors.Is(err, http.ErrServerClosed) {
			w.logger.Error("demo upstream stopped", "err", err)
		}
	}()
	opts.Logger.InfoContext(ctx, "demo world started", "issuer", w.Issuer, "odata_v4", w.ODataV4URL,
		"odata_v3", w.ODataV3URL, "workflow", w.WorkflowURL, "users", w.Users)
	return w, nil
}

// LogValue lets a World be logged whole without its client secret.
func (w *World) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("issuer", w.Issuer),
		slog.String("client_id", w.ClientID),
		slog.String("client_secret", "REDACTED"),
		slog.String("odata_v4", w.ODataV4URL),
		slog.String("odata_v3", w.ODataV3URL),
		slog.String("workflow", w.WorkflowURL),
		slog.Any("users", w.Users),
	)
}

var _ slog.LogValuer = (*World)(nil)

// now is the upstreams' clock, moved by Advance.
func (w *World) now() time.Time { return time.Now().Add(time.Duration(w.offset.Load())) }

// Advance moves the provider's and the upstreams' clocks forward by d, so
// tests can expire tokens without waiting.
func (w *World) Advance(d time.Duration) {
	w.provider.mu.Lock()
	w.provider.m.FastForward(d)
	w.provider.mu.Unlock()
	w.offset.Add(int64(d))
}

// UseUser makes the next sign-in at the provider sign in as name (for
// tests; the demo UI may offer a choice too). Calls queue up in order; a
// login_hint naming a demo user takes precedence and leaves the queue alone.
func (w *World) UseUser(name string) error {
	if _, ok := demoUserByName(name); !ok {
		return fmt.Errorf("%w: %q", ErrUnknownUser, name)
	}
	w.provider.mu.Lock()
	defer w.provider.mu.Unlock()
	w.provider.pending = append(w.provider.pending, name)
	return nil
}

// OAuth2Config is a client configuration for the embedded provider with the
// given redirect URL and the scopes openid, profile, email and offline_access.
func (w *World) OAuth2Config(redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     w.ClientID,
		ClientSecret: w.ClientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   w.provider.m.AuthorizationEndpoint(),
			TokenURL:  w.provider.m.TokenEndpoint(),
			AuthStyle: oauth2.AuthStyleInHeader,
		},
		RedirectURL: redirectURL,
		Scopes:      []string{"openid", "profile", "email", "offline_access"},
	}
}

// SignIn runs the authorization-code flow with PKCE as name, in process,
// and returns the provider's tokens (access, refresh and ID token).
func (w *World) SignIn(ctx context.Context, name string) (*oauth2.Token, error) {
	if _, ok := demoUserByName(name); !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownUser, name)
	}
	cfg := w.OAuth2Config("http://127.0.0.1/oauth/callback")
	verifier, state := oauth2.GenerateVerifier(), rand.Text()
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", name))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignIn, err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: authorize: %w", ErrSignIn, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("%w: authorize answered %d", ErrSignIn, resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return nil, fmt.Errorf("%w: authorize redirect is malformed", ErrSignIn)
	}
	// RFC 6749 §10.12: the state must come back unchanged.
	if loc.Query().Get("state") != state {
		return nil, fmt.Errorf("%w: state mismatch", ErrSignIn)
	}
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("%w: token endpoint answered %d %s", ErrSignIn, re.Response.StatusCode, re.ErrorCode)
		}
		return nil, fmt.Errorf("%w: token endpoint unreachable", ErrSignIn)
	}
	return tok, nil
}

// AccessToken signs in as name against the embedded provider (the
// authorization-code flow, done in-process) and returns a provider access
// token, so curl and tests can call the upstreams directly.
func (w *World) AccessToken(ctx context.Context, name string) (string, error) {
	tok, err := w.SignIn(ctx, name)
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// Close stops the upstreams and the provider, letting in-flight requests
// finish for up to five seconds. It is safe to call more than once.
func (w *World) Close() error {
	w.closing.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errUp := w.upstream.Shutdown(ctx)
		if errUp != nil {
			errUp = errors.Join(errUp, w.upstream.Close())
		}
		<-w.served
		errIdP := w.provider.m.Server.Shutdown(ctx)
		if errIdP != nil {
			errIdP = errors.Join(errIdP, w.provider.m.Server.Close())
		}
		if err := errors.Join(errUp, errIdP); err != nil {
			w.closeErr = fmt.Errorf("demo: close: %w", err)
		}
	})
	return w.closeErr
}

// logRequests logs each upstream request at debug level: method, path and
// status, never the query string or a header.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		logger.DebugContext(r.Context(), "demo upstream request", "method", r.Method, "path", r.URL.Path, "status", sw.status)
	})
}

// statusWriter remembers the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the status code and passes it on.
func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

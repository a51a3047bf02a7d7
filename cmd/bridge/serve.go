package main

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/odata-bridge/bridge/connector"
	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/odata/rest"
	"github.com/odata-bridge/bridge/tokencache"
)

// serve runs the bridge until ctx ends. ln, when not nil, is an open
// listener to serve on instead of cfg.Listen.
func serve(ctx context.Context, cfg *Config, stdout io.Writer, ln net.Listener) error {
	return serveTraced(ctx, cfg, stdout, ln, nil)
}

// serveTraced is serve with tracing on when tr is not nil; it shuts tr down,
// exporting the last spans, once the server has stopped.
func serveTraced(ctx context.Context, cfg *Config, stdout io.Writer, ln net.Listener, tr *traces) error {
	logs := newLogWriter(stdout, 100*time.Millisecond)
	defer logs.Close()
	log := newLogger(cfg, logs)
	defer func() {
		if err := tr.shutdown(); err != nil {
			log.Warn("spans not exported", slog.Any("error", err))
		}
	}()
	app, err := buildTraced(ctx, cfg, log, tr)
	if err != nil {
		return err
	}
	defer app.close()
	if cfg.Pprof != "" {
		stop, err := startPprof(cfg.Pprof, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.MetricsListen != "" {
		stop, err := startMetrics(cfg.MetricsListen, app.metrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	srv := &http.Server{
		Handler: app.handler,
		// Power BI refreshes stream for many minutes: no WriteTimeout, and
		// no ReadTimeout that would cut a long response's connection.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", slog.String("addr", ln.Addr().String()), slog.String("public_url", cfg.PublicURL), slog.String("store", app.storeKind))

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", slog.Duration("deadline", time.Duration(cfg.ShutdownTimeout)))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown deadline passed; closing remaining connections", slog.Any("error", err))
		srv.Close()
	}
	<-errc
	log.Info("stopped")
	return nil
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// redisLogger puts go-redis's own messages in the bridge's structured log
// instead of its default plain lines on standard error.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

// app is the wired bridge.
type app struct {
	handler   http.Handler
	metrics   http.Handler // Prometheus, for the metrics listener only
	store     *tokencache.Store
	ledger    *tokencache.Ledger    // usage, refresh history and audit trail
	redis     redis.UniversalClient // nil with the memory store
	storeKind string
	relay     *odata.Relay // its read-ahead fetches end with close
}

// close stops the relay's read-ahead, the store, then the Redis client it
// used: the store does not own the client.
func (a *app) close() {
	if a.ledger != nil {
		a.ledger.Close()
	}
	if a.relay != nil {
		a.relay.Close()
	}
	if a.store != nil {
		a.store.Close()
	}
	if a.redis != nil {
		a.redis.Close()
	}
}

// build constructs the parts and hands them to each other. On an error it
// closes what it had opened.
func build(ctx context.Context, cfg *Config, log *slog.Logger) (a *app, err error) {
	return buildTraced(ctx, cfg, log, nil)
}

// buildTraced is build with tracing on when tr is not nil.
func buildTraced(ctx context.Context, cfg *Config, log *slog.Logger, tr *traces) (a *app, err error) {
	a = &app{storeKind: "memory"}
	defer func() {
		if err != nil {
			a.close()
			a = nil
		}
	}()
	if len(cfg.Sources) == 0 {
		log.Warn("no sources are configured: the bridge signs users in but serves no feeds; add sources to the configuration")
	}
	public := strings.TrimSuffix(cfg.PublicURL, "/")
	keys := make([]tokencache.Key, 0, len(cfg.EncryptionKeys))
	for _, k := range cfg.EncryptionKeys {
		key, err := tokencache.ParseKey(k)
		if err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("encryption_keys: %w", err)}
		}
		keys = append(keys, key)
	}
	if cfg.Redis.URL != "" || len(cfg.Redis.Addrs) > 0 {
		if a.redis, err = tokencache.NewRedisClient(tokencache.RedisConfig{
			URL: cfg.Redis.URL, Addrs: cfg.Redis.Addrs, MasterName: cfg.Redis.MasterName,
		}); err != nil {
			return nil, &exitError{code: 2, err: err}
		}
		// go-redis reports pool and topology events (a Sentinel failover, a
		// dial failure) through one process-wide logger of its own.
		redis.SetLogger(redisLogger{log.With(slog.String("component", "redis"))})
		a.storeKind = "redis"
	} else {
		log.Warn("no redis configured: sessions live in this process's memory and are lost on restart; run one replica only")
	}

	// On a multi-tenant issuer, sign-in is limited to the pinned and the
	// allowed tenants when any is configured.
	tenants := cfg.IdP.Entra.AllowedTenants
	if t := cfg.IdP.Entra.Tenant; t != "" {
		tenants = append([]string{t}, tenants...)
	}
	if idp.MultiTenant(cfg.IdP.Issuer) && len(tenants) == 0 {
		log.Warn("idp.issuer is multi-tenant and neither idp.entra.tenant nor idp.entra.allowed_tenants is set: users of any Entra tenant can sign in",
			slog.String("issuer", cfg.IdP.Issuer))
	}
	provider := idp.NewProvider(idp.ProviderConfig{
		Issuer:       cfg.IdP.Issuer,
		AuthURL:      cfg.IdP.AuthURL,
		TokenURL:     cfg.IdP.TokenURL,
		JWKSURL:      cfg.IdP.JWKSURL,
		ClientID:     cfg.IdP.ClientID,
		ClientSecret: cfg.IdP.ClientSecret,
		Scopes:       cfg.IdP.Scopes,
		Resource:     cfg.IdP.Resource,
		RedirectURL:  public + "/oauth/callback",
		Tenants:      tenants,
		HTTPClient:   tr.client(),
	})
	store, err := tokencache.New(tokencache.Options{
		Redis:       a.redis,
		Keys:        keys,
		Refresher:   provider,
		AccessTTL:   time.Duration(cfg.Session.AccessTTL),
		RefreshTTL:  time.Duration(cfg.Session.RefreshTTL),
		HotCacheTTL: time.Duration(cfg.Session.HotCacheTTL),
		Logger:      log.With(slog.String("component", "tokencache")),
	})
	if err != nil {
		return nil, fmt.Errorf("token cache: %w", err)
	}
	a.store = store
	a.ledger = tokencache.NewLedger(tokencache.LedgerOptions{Redis: a.redis, Keys: keys, Logger: log.With(slog.String("component", "ledger"))})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	sources, relay, err := feedSources(cfg, provider, keys, reg, public, log, tr)
	if err != nil {
		return nil, err
	}
	a.relay = relay

	clients := make([]connector.Client, 0, len(cfg.Clients))
	for _, c := range cfg.Clients {
		clients = append(clients, connector.Client{ID: c.ID, RedirectURIs: c.RedirectURIs})
	}
	srv, err := connector.New(connector.Options{
		PublicURL:      public,
		TrustedProxies: cfg.TrustedProxies,
		Store:          store,
		Provider:       provider,
		Clients:        clients,
		Sources:        sources,
		APIKeyParam:    cfg.Keys.APIKeyParam,
		RateLimit:      cfg.RateLimit.PerKeyPerMinute,
		AccessTTL:      time.Duration(cfg.Session.AccessTTL),
		Logger:         log,
		Registerer:     reg,
		Gatherer:       reg,
		CookieKey:      derive(keys, "odata-bridge page cookie"),
		Entra:          tr.entra(entraOptions(cfg)),
		MaxKeysPerUser: cfg.Keys.MaxPerUser,
		TracerProvider: tr.provider(),
		Admins:         cfg.Admins,
		Ledger:         a.ledger,
	})
	if err != nil {
		return nil, err
	}
	a.handler = srv
	a.metrics = srv.MetricsHandler()
	return a, nil
}

// feedSources builds every configured source in one pass: its feed (the
// relay's source, or a REST service) and the connector's view of it.
func feedSources(cfg *Config, provider *idp.Provider, keys []tokencache.Key, reg prometheus.Registerer, public string, log *slog.Logger, tr *traces) ([]connector.Source, *odata.Relay, error) {
	var relaySources []odata.Upstream
	for _, sc := range cfg.Sources {
		if sc.Kind == "odata" {
			relaySources = append(relaySources, odata.Upstream{
				Name:          sc.Name,
				URL:           sc.URL,
				Aliases:       sc.Aliases,
				PublicBase:    public + "/odata/" + sc.Name + "/",
				Batch:         sc.Batch,
				HeaderTimeout: time.Duration(sc.HeaderTimeout),
				Version:       sc.ODataVersion,
				// K2 trims $metadata per user and builds it slowly; the
				// cache is keyed by session, so users never share one.
				CacheMetadata: 5 * time.Minute,
				RepeatTTL:     time.Duration(sc.RepeatTTL),
				ReadAhead:     sc.ReadAhead,
				CountRows:     sc.CountRows,
			})
		}
	}
	budget, err := parseSize(cfg.Relay.MemoryBudget)
	if err != nil {
		return nil, nil, &exitError{code: 2, err: fmt.Errorf("relay.memory_budget: %w", err)}
	}
	if budget == 0 {
		budget = -1 // "0" keeps nothing
	}
	relay, err := odata.NewRelay(relaySources, odata.Options{
		APIKeyParam:   cfg.Keys.APIKeyParam,
		Registerer:    reg,
		Logger:        log.With(slog.String("component", "relay")),
		ErrorHandler:  feedError,
		MemoryBudget:  budget,
		WrapTransport: tr.wrapTransport(), // a client span per upstream call; nil when tracing is off
	})
	if err != nil {
		return nil, nil, &exitError{code: 2, err: fmt.Errorf("sources: %w", err)}
	}
	skipSecret := derive(keys, "odata-bridge rest skiptoken")

	out := make([]connector.Source, 0, len(cfg.Sources))
	for _, sc := range cfg.Sources {
		src := connector.Source{
			Name:       sc.Name,
			Title:      sc.Title,
			Kind:       sc.Kind,
			Auth:       connector.AuthMode(sc.Auth),
			Resource:   sc.resource(cfg.IdP.Resource),
			RefreshURL: k2RefreshURL(sc),
		}
		if src.Auth == connector.AuthUser {
			src.Audience = sourceAudience(cfg, sc)
		}
		if src.Auth == connector.AuthClientCredentials {
			log.Warn("source uses one service identity for every caller: all callers see the same data",
				slog.String("source", sc.Name))
			src.Service = provider.ServiceTokens(sc.Scopes, src.Resource)
		}
		switch sc.Kind {
		case "odata":
			src.Feed, _ = relay.Feed(sc.Name)
		case "rest":
			sets, err := restEntitySets(sc)
			if err != nil {
				return nil, nil, &exitError{code: 2, err: err}
			}
			svc, err := rest.New(rest.Config{
				Name:       sc.Name,
				URL:        sc.URL,
				PublicBase: public + "/odata/" + sc.Name + "/",
				EntitySets: sets,
				// Paging through a large list must not refetch it per page;
				// the cache is per user, so rows never cross users.
				CacheTTL: 30 * time.Second,
			}, rest.Options{
				Client: tr.restClient(restClient(time.Duration(sc.HeaderTimeout))),
				Secret: skipSecret,
				Logger: log.With(slog.String("component", "rest"), slog.String("source", sc.Name)),
				ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
					feedError(w, r, odata.Version4, err)
				},
			})
			if err != nil {
				return nil, nil, &exitError{code: 2, err: fmt.Errorf("sources: %s: %w", sc.Name, err)}
			}
			src.Feed = svc
		}
		out = append(out, src)
	}
	return out, relay, nil
}

// sourceAudience is the audience of an auth: user source's own provider
// token: set when its configured scopes or resource differ from the
// sign-in's, so that its upstream receives only tokens issued for it. A
// preset's default resource is not the source's own: it serves
// on-behalf-of only.
func sourceAudience(cfg *Config, sc SourceConfig) *tokencache.Audience {
	scopes := len(sc.Scopes) > 0 && !slices.Equal(sc.Scopes, cfg.IdP.Scopes)
	resource := sc.Resource
	if resource == cfg.IdP.Resource {
		resource = ""
	}
	if !scopes && resource == "" {
		return nil
	}
	aud := &tokencache.Audience{Name: sc.Name, Resource: resource}
	if scopes {
		aud.Scopes = sc.Scopes
	}
	return aud
}

// feedError renders the errors of the relay and the REST services as the
// connector renders its own.
func feedError(w http.ResponseWriter, _ *http.Request, version string, err error) {
	connector.WriteError(w, cmp.Or(version, odata.Version4), err)
}

// restEntitySets returns a REST source's mapping: its preset, or its
// inline entity sets.
func restEntitySets(sc SourceConfig) ([]rest.EntitySet, error) {
	if sc.Preset != "" {
		sets, err := rest.Preset(sc.Preset)
		if err != nil {
			return nil, fmt.Errorf("sources: %s: %w", sc.Name, err)
		}
		return sets, nil
	}
	if err := rest.Validate(sc.EntitySets); err != nil {
		return nil, fmt.Errorf("sources: %s: %w", sc.Name, err)
	}
	return sc.EntitySets, nil
}

// restClient is the HTTP client of a REST source: the source's header
// timeout bounds the wait for the upstream's answer, not its body.
func restClient(headerTimeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = headerTimeout
	t.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: t}
}

// derive returns a 32-byte key for one purpose from the first encryption
// key, so every replica derives the same; without keys, a random one.
func derive(keys []tokencache.Key, purpose string) []byte {
	if len(keys) == 0 {
		b := make([]byte, 32)
		rand.Read(b)
		return b
	}
	m := hmac.New(sha256.New, keys[0].Secret)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

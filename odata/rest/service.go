package rest

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
)

// Config is what a Service serves: one REST API, its mapping and its paging, as an OData v4 service.
type Config struct {
	// Name is the source's URL segment under /odata/; it names the schema in $metadata.
	Name string
	// URL is the upstream base, e.g. https://k2.example.com/api/workflow/v1/; entity-set paths resolve against it.
	URL string
	// PublicBase is the service root clients see, e.g.
	// https://bridge.example.com/odata/workflow/; empty: derived from each request.
	PublicBase string
	// EntitySets is the mapping, inline or from Preset.
	EntitySets []EntitySet
	// PageSize is the largest page the service sends before a next link; zero: 1000.
	PageSize int
	// MaxRows caps the upstream rows read for one request; zero: 100000.
	MaxRows int
	// CacheTTL keeps each user's upstream lists for paging; zero: off, every request refetches.
	CacheTTL time.Duration
	// CacheRows bounds the rows the cache holds for all users together; zero: 4 × MaxRows.
	CacheRows int
}

// Options are the collaborators of a Service.
type Options struct {
	// Client sends upstream requests; nil: a new http.Client without a timeout
	// (the connector's transport decides the header timeout).
	Client *http.Client
	// Secret is the HMAC key of $skiptoken values; empty: a random key per
	// process, so next links do not survive a restart or cross replicas.
	Secret []byte
	// Logger receives debug records of upstream fetches; nil: discarded.
	Logger *slog.Logger
	// ErrorHandler renders every error (wrapping the odata sentinels) to the client; required.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
}

// Service answers OData v4 requests for one REST source.
type Service struct {
	src      Config
	base     *url.URL
	sets     []*entitySet
	byName   map[string]*entitySet
	client   *http.Client
	secret   []byte
	log      *slog.Logger
	onError  func(w http.ResponseWriter, r *http.Request, err error)
	cache    *listCache
	flight   singleflight.Group // one upstream read per user and set at a time, when caching
	pageSize int
	maxRows  int
	metadata []byte
}

// New validates a source's mapping and builds its service.
func New(src Config, opts Options) (*Service, error) {
	if err := Validate(src.EntitySets); err != nil {
		return nil, fmt.Errorf("source %q: %w", src.Name, err)
	}
	base, err := url.Parse(src.URL)
	if err != nil || base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("%w: source %q: url must be an absolute http(s) URL", ErrMapping, src.Name)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/" // entity-set paths are relative to the whole base
		if base.RawPath != "" {
			base.RawPath += "/"
		}
	}
	if src.PublicBase != "" && !strings.HasSuffix(src.PublicBase, "/") {
		src.PublicBase += "/"
	}
	if opts.ErrorHandler == nil {
		return nil, fmt.Errorf("%w: source %q: Options.ErrorHandler is required", ErrMapping, src.Name)
	}
	s := &Service{
		src: src, base: base, byName: map[string]*entitySet{},
		client: opts.Client, secret: opts.Secret, log: opts.Logger, onError: opts.ErrorHandler,
		pageSize: src.PageSize, maxRows: src.MaxRows,
	}
	if s.client == nil {
		s.client = &http.Client{}
	}
	if len(s.secret) == 0 {
		s.secret = make([]byte, 32)
		_, _ = rand.Read(s.secret) // crypto/rand.Read never fails (Go 1.24+)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.pageSize <= 0 {
		s.pageSize = 1000
	}
	if s.maxRows <= 0 {
		s.maxRows = 100000
	}
	cacheRows := src.CacheRows
	if cacheRows <= 0 {
		cacheRows = 4 * s.maxRows
	}
	s.cache = &listCache{ttl: src.CacheTTL, maxRows: cacheRows, now: time.Now, m: map[cacheKey]cacheEntry{}}
	for _, es := range src.EntitySets {
		c := compile(es)
		s.sets = append(s.sets, c)
		s.byName[c.Name] = c
	}
	for _, c := range s.sets {
		c.link(s.byName)
	}
	s.metadata = buildMetadata(s.schemaNamespace(), s.sets)
	return s, nil
}

// ServeFeed answers one OData request; path is the escaped remainder after
// "/odata/{source}/" ("" = service document); user is an opaque per-user
// cache key; auth sets the upstream credentials (nil: none).
//
// It returns what it wrote: for a page of an entity set relayed whole, Read
// with the rows of the page and whether it named a next page. An entity, a
// $count, $metadata, the service document, an error and HEAD are not pages:
// Read is false for them.
func (s *Service) ServeFeed(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) odata.Served {
	odata.Isolate(w.Header()) // errors included, like every response under /odata
	served, err := s.serve(w, r, path, user, auth)
	if err != nil {
		s.onError(w, r, err)
		return odata.Served{}
	}
	return served
}

// Version is the OData version a Service speaks: always 4.0.
func (s *Service) Version() string { return odata.Version4 }

func (s *Service) serve(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) (odata.Served, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return odata.Served{}, fault.Withf(odata.ErrNotImplemented, "%s; the service is read-only", r.Method)
	}
	path = strings.TrimPrefix(path, "/")
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		return odata.Served{}, fault.With(odata.ErrBadRequest, "the path is not correctly escaped")
	}
	switch unescaped {
	case "":
		if _, err := parseQuery(r.URL.RawQuery, nil); err != nil {
			return odata.Served{}, err
		}
		return odata.Served{}, s.serviceDocument(w, r, path)
	case "$metadata":
		return odata.Served{}, s.writeMetadata(w, r)
	case "$batch":
		return odata.Served{}, fault.With(odata.ErrNotImplemented, "$batch")
	}
	res, err := s.resolve(path)
	if err != nil {
		return odata.Served{}, err
	}
	q, err := parseQuery(r.URL.RawQuery, res.set)
	if err != nil {
		return odata.Served{}, err
	}
	if q.skipToken != "" {
		// Checked before the upstream is called: a forged token costs nothing upstream.
		if q.token, err = s.verifySkipToken(q.skipToken, q.fingerprint(res.set.Name)); err != nil {
			return odata.Served{}, err
		}
	}
	// The upstream is read before any byte is written, so every failure
	// still reaches the error handler.
	rows, err := s.list(r.Context(), res.set, user, auth)
	if err != nil {
		return odata.Served{}, err
	}
	switch {
	case res.count:
		return odata.Served{}, s.writeCount(w, q, rows)
	case res.hasKey:
		return odata.Served{}, s.writeEntity(w, r, path, res, q, rows)
	}
	return s.writeCollection(w, r, path, res.set, q, rows), nil
}

// resource is a parsed resource path.
type resource struct {
	set    *entitySet
	hasKey bool
	key    any
	count  bool
}

// resolve parses an escaped resource path: Set, Set/$count, Set(key) or Set(Key=key).
func (s *Service) resolve(path string) (resource, error) {
	// Split on the escaped path, so a key holding %2F stays one segment;
	// unescape each part exactly once.
	escSeg, escRest, _ := strings.Cut(path, "/")
	seg, err := url.PathUnescape(escSeg)
	if err != nil {
		return resource{}, fault.With(odata.ErrBadRequest, "the path is not correctly escaped")
	}
	rest, err := url.PathUnescape(escRest)
	if err != nil {
		return resource{}, fault.With(odata.ErrBadRequest, "the path is not correctly escaped")
	}
	name, keyPart, hasKey := strings.Cut(seg, "(")
	es, ok := s.lookupSet(name)
	if !ok {
		if strings.HasPrefix(name, "$") {
			return resource{}, fault.Withf(odata.ErrNotImplemented, "the resource %s", name)
		}
		return resource{}, fault.Withf(odata.ErrNotFound, "no entity set %q in this service", name)
	}
	res := resource{set: es, hasKey: hasKey}
	if hasKey {
		inner, ok := strings.CutSuffix(keyPart, ")")
		if !ok {
			return resource{}, fault.Withf(odata.ErrBadRequest, "the key of %s is not closed with )", es.Name)
		}
		if res.key, err = es.parseKey(inner); err != nil {
			return resource{}, err
		}
	}
	switch {
	case rest == "":
	case rest == "$count" && !hasKey:
		res.count = true
	case hasKey:
		return resource{}, fault.Withf(odata.ErrNotImplemented, "the path segment %q after an entity; request the entity and $select instead", rest)
	default:
		return resource{}, fault.Withf(odata.ErrNotImplemented, "the path segment %q after an entity set", rest)
	}
	return res, nil
}

func (s *Service) lookupSet(name string) (*entitySet, bool) {
	if es, ok := s.byName[name]; ok {
		return es, true
	}
	var found *entitySet
	for _, es := range s.sets {
		if strings.EqualFold(es.Name, name) {
			if found != nil {
				return nil, false
			}
			found = es
		}
	}
	return found, found != nil
}

// parseKey reads a key predicate: 'string', a number, or Key=value (OData
// v4.01 Part 2 §4.3.1).
func (c *entitySet) parseKey(s string) (any, error) {
	if name, val, ok := strings.Cut(s, "="); ok && !strings.HasPrefix(strings.TrimSpace(s), "'") {
		if i, found := c.propIndex(strings.TrimSpace(name)); !found || i != c.key {
			return nil, fault.Withf(odata.ErrBadRequest, "%s is keyed by %s, not %q", c.Name, c.Key, name)
		}
		s = val
	}
	toks, err := lex(strings.TrimSpace(s))
	if err != nil || len(toks) != 2 {
		return nil, fault.Withf(odata.ErrBadRequest, "the key of %s must be one literal, such as ('abc') or (42)", c.Name)
	}
	var lit any
	var k kind
	switch toks[0].k {
	case tString:
		lit, k = toks[0].s, kString
	case tLiteral:
		e, err := parseLiteral(toks[0])
		if err != nil {
			return nil, fault.Withf(odata.ErrBadRequest, "the key of %s must be one literal, such as ('abc') or (42)", c.Name)
		}
		l := e.(litExpr)
		lit, k = l.v, l.k
	default:
		return nil, fault.Withf(odata.ErrBadRequest, "the key of %s must be one literal, such as ('abc') or (42)", c.Name)
	}
	if k != c.kinds[c.key] {
		return nil, fault.Withf(odata.ErrBadRequest, "the key %s of %s is %s, got a literal of type %s", c.Key, c.Name, c.Properties[c.key].typ(), k)
	}
	return lit, nil
}

// serviceRoot is the absolute service root for context URLs and next links.
func (s *Service) serviceRoot(r *http.Request, path string) string {
	if s.src.PublicBase != "" {
		return s.src.PublicBase
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	p := strings.TrimSuffix(r.URL.EscapedPath(), path)
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return scheme + "://" + r.Host + p
}

// schemaNamespace is the CSDL namespace: the source name made an identifier.
func (s *Service) schemaNamespace() string {
	var b strings.Builder
	b.WriteString("Bridge")
	if s.src.Name != "" {
		b.WriteByte('.')
		for i, c := range s.src.Name {
			switch {
			case isIdentByte(byte(c)) && c < 128 && !(i == 0 && c >= '0' && c <= '9'):
				b.WriteRune(c)
			default:
				b.WriteByte('_')
			}
		}
	}
	return b.String()
}

// pagePreference reads odata.maxpagesize or maxpagesize from Prefer
// (OData v4.01 Part 1 §8.2.8.3; RFC 7240). It returns 0 when absent.
func pagePreference(h http.Header) (size int, name string) {
	for _, v := range h.Values("Prefer") {
		for pref := range strings.SplitSeq(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(pref), "=")
			k = strings.ToLower(strings.TrimSpace(k))
			if !ok || k != "odata.maxpagesize" && k != "maxpagesize" {
				continue
			}
			val, _, _ = strings.Cut(val, ";")
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err == nil && n > 0 {
				return n, k
			}
		}
	}
	return 0, ""
}

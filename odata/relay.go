package odata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/odata-bridge/bridge/fault"
	"github.com/prometheus/client_golang/prometheus"
)

// Upstream is one upstream OData service, as configured: where it is, how its links are
// rewritten and how it is relayed.
type Upstream struct {
	Name          string        // URL segment, [a-z0-9-]+
	URL           string        // upstream base, absolute http(s), ends with "/"
	Aliases       []string      // other bases the upstream may print; each ends with "/"
	PublicBase    string        // "{public_url}/odata/{name}/"; ends with "/"
	Batch         bool          // relay POST $batch; otherwise 501
	HeaderTimeout time.Duration // zero: 60s
	Version       string        // "2.0" | "3.0" | "4.0" | "" (learned from responses; default error shape v4)
	CacheMetadata time.Duration // zero: no $metadata cache; cache keys include the user
	// RepeatTTL keeps a caller's 200 responses to GET (up to 8 MiB each) to answer the
	// caller's identical requests, and joins identical requests in flight. Zero: off.
	RepeatTTL time.Duration
	// ReadAhead is how many pages ahead of the client the relay fetches a caller's next
	// pages. Zero: off.
	ReadAhead int
	// CountRows counts the entities of every page relayed (Served.Rows) by reading each
	// byte of it. Off, only the next link is read, from the ends of a page.
	CountRows bool
}

// Authorizer sets the upstream credentials on an outgoing request. renew is true on the
// one retry after an upstream 401.
//
// out carries none of the caller's credentials: an Authorizer for basic-passthrough
// copies the caller's Basic header from the incoming request it was made for. A nil
// Authorizer sends no credentials and never retries.
type Authorizer interface {
	Authorize(ctx context.Context, out *http.Request, renew bool) error
}

// Options tunes a Relay; every zero value is a working default.
type Options struct {
	// Transport carries requests upstream. Zero: tuned clones of http.DefaultTransport
	// (keep-alive, MaxIdleConnsPerHost 64, no compression), one per distinct header
	// timeout, which they enforce themselves as ResponseHeaderTimeout; a Transport given
	// here is used as it is, and the relay times each request's headers itself.
	Transport http.RoundTripper
	// APIKeyParam is the query parameter stripped before going upstream. Zero: "api_key".
	APIKeyParam string
	// Registerer receives the relay's metrics. Nil: no metrics.
	Registerer prometheus.Registerer
	// Logger receives the relay's own log lines (aborted streams). Nil: discard.
	Logger *slog.Logger
	// ErrorHandler renders every error the relay itself produces (odata sentinels
	// with a client message, or errors returned by Authorizer such as the token
	// cache's), before any byte of the response was written, in the error shape of
	// version (the source's OData version, "" when unknown). Nil: WriteError with the
	// status of the error's kind.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, version string, err error)
	// XForwarded sets X-Forwarded-For, -Host and -Proto upstream. Zero: none are sent.
	XForwarded bool
	// WrapTransport wraps each upstream transport (Transport, or each of the relay's
	// own) once, for example in a tracing client span per request; the relay's own
	// transports still time the headers. Nil: none.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// MemoryBudget bounds the bytes of all responses kept for repeats and pages read
	// ahead, together. Zero: 256 MiB; negative: nothing is kept or read ahead.
	MemoryBudget int64
}

// Relay streams OData requests to configured upstream sources and rewrites their links
// onto the bridge; it is safe for concurrent use.
type Relay struct {
	sources map[string]*sourceState
	apiKey  string
	log     *slog.Logger
	onError func(w http.ResponseWriter, r *http.Request, version string, err error)
	xfwd    bool
	metrics *metrics
	acc     *accel // repeats and read-ahead, shared by every source
}

type sourceState struct {
	src        Upstream
	target     *url.URL
	targetPath string // target.EscapedPath(), ends with "/"
	bases      []string
	headers    *strings.Replacer
	rewriter   *Rewriter // prototype, cloned for the pool
	rewriters  sync.Pool // *Rewriter, idle
	learned    atomic.Pointer[string]
	cache      *metaCache
	m          *sourceMetrics // nil: no metrics

	transport http.RoundTripper
	timeout   time.Duration // the header timeout in effect
	// timesHeaders is true when transport enforces timeout itself (a relay-owned
	// http.Transport with ResponseHeaderTimeout), so a request without a body needs no
	// timer of the relay's own.
	timesHeaders bool
}

// version is the source's OData version: the configured one, else the one
// learned from the upstream's responses, else "".
func (st *sourceState) version() string {
	if st.src.Version != "" {
		return st.src.Version
	}
	if v := st.learned.Load(); v != nil {
		return *v
	}
	return ""
}

const defaultHeaderTimeout = 60 * time.Second

var sourceName = regexp.MustCompile(`^[a-z0-9-]+$`)

// NewRelay validates the sources and returns a Relay for them.
func NewRelay(sources []Upstream, opts Options) (*Relay, error) {
	rl := &Relay{
		sources: make(map[string]*sourceState, len(sources)),
		apiKey:  opts.APIKeyParam,
		log:     opts.Logger,
		onError: opts.ErrorHandler,
		xfwd:    opts.XForwarded,
	}
	if rl.apiKey == "" {
		rl.apiKey = "api_key"
	}
	if rl.log == nil {
		rl.log = slog.New(slog.DiscardHandler)
	}
	if rl.onError == nil {
		rl.onError = defaultErrorHandler
	}
	var errs []error
	for i, s := range sources {
		st, err := newSourceState(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("source %d (%q): %w", i, s.Name, err))
			continue
		}
		if _, dup := rl.sources[s.Name]; dup {
			errs = append(errs, fmt.Errorf("source %d (%q): %w: duplicate name", i, s.Name, ErrConfig))
			continue
		}
		rl.sources[s.Name] = st
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		m, err := newMetrics(opts.Registerer)
		if err != nil {
			return nil, err
		}
		rl.metrics = m
	}
	rl.acc = newAccel(opts.MemoryBudget, rl.log, rl.metrics)
	// Sources with the same header timeout share one transport, and so its idle
	// connections.
	owned := map[time.Duration]http.RoundTripper{}
	wrap := opts.WrapTransport
	if wrap == nil {
		wrap = func(rt http.RoundTripper) http.RoundTripper { return rt }
	}
	given := opts.Transport
	if given != nil {
		given = wrap(given)
	}
	for _, st := range rl.sources {
		st.m = rl.metrics.forSource(st.src.Name, st.cache != nil)
		if given != nil {
			st.transport = given
			continue
		}
		t, ok := owned[st.timeout]
		if !ok {
			t = wrap(defaultTransport(st.timeout))
			owned[st.timeout] = t
		}
		st.transport, st.timesHeaders = t, true
	}
	return rl, nil
}

func newSourceState(s Upstream) (*sourceState, error) {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...))
	}
	if !sourceName.MatchString(s.Name) {
		bad("name must match [a-z0-9-]+")
	}
	check := func(field, v string) *url.URL {
		u, err := url.Parse(v)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			bad("%s must be an absolute http(s) URL", field)
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			bad("%s must not carry a query, fragment or user info", field)
		case !strings.HasSuffix(v, "/"):
			bad("%s must end with /", field)
		default:
			return u
		}
		return nil
	}
	target := check("url", s.URL)
	for _, a := range s.Aliases {
		check("alias", a)
	}
	check("public base", s.PublicBase)
	if s.HeaderTimeout < 0 || s.CacheMetadata < 0 || s.RepeatTTL < 0 {
		bad("durations must not be negative")
	}
	if s.ReadAhead < 0 {
		bad("read-ahead must not be negative")
	}
	switch s.Version {
	case "", "2.0", "3.0", "4.0":
	default:
		bad("version must be 2.0, 3.0, 4.0 or empty")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.Aliases = slices.Clone(s.Aliases)
	st := &sourceState{src: s, target: target, targetPath: target.EscapedPath(), timeout: s.HeaderTimeout}
	if st.timeout == 0 {
		st.timeout = defaultHeaderTimeout
	}
	st.bases = append([]string{s.URL}, s.Aliases...)
	var pairs []string
	for _, b := range st.bases {
		pairs = append(pairs, b, s.PublicBase)
	}
	st.headers = newLongestReplacer(pairs)
	st.rewriter = NewRewriter(io.Discard, st.bases, s.PublicBase)
	if s.CacheMetadata > 0 {
		st.cache = newMetaCache(s.CacheMetadata)
	}
	return st, nil
}

// newLongestReplacer orders the pairs longest first, so that strings.Replacer (which
// prefers earlier pairs at equal positions) matches like the Rewriter.
func newLongestReplacer(pairs []string) *strings.Replacer {
	type pair struct{ from, to string }
	ps := make([]pair, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		ps = append(ps, pair{pairs[i], pairs[i+1]})
	}
	slices.SortStableFunc(ps, func(a, b pair) int { return len(b.from) - len(a.from) })
	flat := make([]string, 0, len(pairs))
	for _, p := range ps {
		flat = append(flat, p.from, p.to)
	}
	return strings.NewReplacer(flat...)
}

// defaultTransport returns the relay's own transport for sources whose header timeout is
// headerTimeout. The transport bounds the wait for headers after the request is written
// (ResponseHeaderTimeout, one runtime timer per request and nothing else), and the dial
// and the TLS handshake by the same bound when it is shorter than theirs, so a request
// that waits longer than headerTimeout in any phase fails as a timeout.
func defaultTransport(headerTimeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	// The relay rewrites bodies, so it reads them uncompressed and compresses toward
	// the client itself.
	t.DisableCompression = true
	t.DialContext = (&net.Dialer{Timeout: min(10*time.Second, headerTimeout), KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = min(t.TLSHandshakeTimeout, headerTimeout)
	t.ResponseHeaderTimeout = headerTimeout
	return t
}

// Feed is one source of a Relay, as a value of its own: what the bridge
// holds per source so a request finds its source without a lookup by name.
type Feed struct {
	rl *Relay
	st *sourceState
}

// Feed returns the named source's Feed.
func (rl *Relay) Feed(name string) (*Feed, bool) {
	st, ok := rl.sources[name]
	if !ok {
		return nil, false
	}
	return &Feed{rl: rl, st: st}, true
}

// ServeFeed relays r as Serve does, to f's source, and returns what it read of the body.
func (f *Feed) ServeFeed(w http.ResponseWriter, r *http.Request, path, user string, auth Authorizer) Served {
	return f.rl.serve(w, r, f.st, path, user, auth)
}

// Forget drops at once every response kept for, and every page read ahead for, the
// callers of f's source that match accepts (by the user passed to ServeFeed), and keeps
// their requests in flight from keeping anything: the connector calls it when it revokes
// a session or a feed key.
func (f *Feed) Forget(match func(user string) bool) { f.rl.acc.forget(f.st.src.Name, match) }

// Forget is Feed.Forget for every source of the relay.
func (rl *Relay) Forget(match func(user string) bool) { rl.acc.forget("", match) }

// Close stops the relay's read-ahead fetches, waits for them, and drops every kept
// response. Requests relayed afterwards stream as if repeats and read-ahead were off.
func (rl *Relay) Close() { rl.acc.close() }

// Version is the source's OData version: the configured one, else the one
// learned from its responses, else "" while it is unknown.
func (f *Feed) Version() string { return f.st.version() }

// Learn sets the source's OData version as another replica or an earlier
// run learned it. A configured or already learned version is kept.
func (f *Feed) Learn(version string) {
	switch version {
	case Version2, Version3, Version4:
		if f.st.learned.Load() == nil {
			f.st.learned.CompareAndSwap(nil, &version)
		}
	}
}

// call is the state of one relayed request.
type call struct {
	rl     *Relay
	st     *sourceState
	w      http.ResponseWriter
	in     *http.Request
	path   string // escaped, checked
	last   string // last path segment, unescaped
	auth   Authorizer
	gzipOK bool

	// The upstream request-target, built once for every attempt.
	upPath, upRawPath, upQuery string

	batchBody  []byte       // replayable POST body; nil when none or too large
	bigBody    *inboundBody // a POST body too large to replay; nil otherwise
	replayable bool

	// Set by modifyResponse.
	status    int
	body      io.Writer // where the upstream body goes: the Rewriter or out
	rewriter  *Rewriter
	gz        *gzipWriter
	tee       *capBuffer
	scan      scanWriter // reads the rewritten body for served, when scanned
	scanned   bool
	served    Served      // set by finish
	teeHeader http.Header // the upstream's headers, after the policy, for the cache
	cacheKey  string
	out       countWriter

	// The accelerator's state of a call that leads a flight (see repeat.go); small,
	// since every call carries it.
	flight *flight     // nil: the response is not shared
	keep   *keepBuffer // the kept copy of the body
	depth  int         // pages ahead of the client; 0 for a client's own request
	ahead  bool        // a read-ahead fetch: no client
}

var calls = sync.Pool{New: func() any { return new(call) }}

// maxReplayBody bounds the $batch request body kept for the retry after an upstream 401.
const maxReplayBody = 1 << 20

// Serve relays r to the source named source; path is the escaped remainder after
// "/odata/{source}/" (may be empty); user is an opaque key of the caller for the
// metadata cache, the repeats and the pages read ahead, which are never shared between
// two users ("" disables all of them for this call). It returns what it read of the
// body it answered with (see Served); a response served from memory returns what was
// read when it was relayed.
func (rl *Relay) Serve(w http.ResponseWriter, r *http.Request, source, path, user string, auth Authorizer) Served {
	Isolate(w.Header()) // on errors too: an upstream's body is never a page of the bridge's
	st, ok := rl.sources[source]
	if !ok {
		rl.onError(w, r, "", ErrUnknownSource)
		return Served{}
	}
	return rl.serve(w, r, st, path, user, auth)
}

func (rl *Relay) serve(w http.ResponseWriter, r *http.Request, st *sourceState, path, user string, auth Authorizer) Served {
	Isolate(w.Header()) // every entry point: an upstream's body is never a page of the bridge's
	st.m.request()
	last := path[strings.LastIndexByte(path, '/')+1:]
	if u, err := url.PathUnescape(last); err == nil {
		last = u
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if last != "$batch" || !st.src.Batch {
			rl.onError(w, r, st.version(), fault.With(ErrNotImplemented, "POST is relayed only for $batch on a source that allows it"))
			return Served{}
		}
	default:
		rl.onError(w, r, st.version(), fault.With(ErrNotImplemented, "the bridge relays GET, HEAD and $batch only"))
		return Served{}
	}
	if err := checkPath(path); err != nil {
		rl.onError(w, r, st.version(), err)
		return Served{}
	}
	c := calls.Get().(*call)
	*c = call{rl: rl, st: st, w: w, in: r, path: cleanEscaped(path), last: last, auth: auth, gzipOK: acceptsGzip(r.Header)}
	c.out.w = w
	c.upRawPath = st.targetPath + c.path
	c.upPath = c.upRawPath
	if p, err := url.PathUnescape(c.upRawPath); err == nil { // checkPath accepted it; keep the bytes otherwise
		c.upPath = p
	}
	c.upQuery = stripQuery(r.URL.RawQuery, rl.apiKey)
	if st.cache != nil && user != "" && last == "$metadata" && r.Method == http.MethodGet &&
		r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Modified-Since") == "" {
		c.cacheKey = metaKey(user, c.path, c.upQuery, r.Header)
		if e, ok := st.cache.get(c.cacheKey); ok {
			st.m.cache(true)
			served := c.serveCached(e)
			c.release()
			return served
		}
		st.m.cache(false)
	}
	if c.cacheKey == "" && c.accelerated(user) {
		if served, ok := c.accelerate(user); ok {
			c.release()
			return served
		}
		if f := c.flight; f != nil {
			// Whatever ends the call, a panic too, its waiters must not wait on.
			defer rl.acc.settle(f.key, f, nil, 0)
		}
	}
	c.replayable = true
	if r.Method == http.MethodPost && r.Body != nil && r.Body != http.NoBody {
		// GET and HEAD have no body to relay (RFC 9110 §9.3.1); $batch has one.
		b, err := io.ReadAll(io.LimitReader(r.Body, maxReplayBody+1))
		if err != nil {
			rl.onError(w, r, st.version(), fault.With(ErrBadRequest, "reading the request body"))
			c.release()
			return Served{}
		}
		if len(b) <= maxReplayBody {
			c.batchBody = b
		} else {
			c.bigBody = &inboundBody{r: io.MultiReader(bytes.NewReader(b), r.Body)}
			c.replayable = false
		}
	}
	// net/http canonicalizes OData-Version as Odata-Version; whatever set either spelling
	// before the relay, the response carries the upstream's one value only.
	delete(w.Header(), "Odata-Version")
	delete(w.Header(), "OData-Version")

	err := c.relay()
	c.settleFlight(false) // a flight the call led and did not share ends empty
	if err != nil {
		// The stream broke after the response started: the client must not mistake what
		// it got for a whole response. Outside a server (a test's ResponseRecorder) there
		// is nothing to abort.
		if r.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler)
		}
		return Served{}
	}
	served := c.served
	c.release()
	return served
}

// release returns a finished call to the pool.
func (c *call) release() {
	*c = call{}
	calls.Put(c)
}

// forwardHeaders are the request headers that go upstream, in canonical form
// (OData v4 Protocol §8.2, OData v2/v3 DataServiceVersion family).
var forwardHeaders = []string{
	"Accept", "Accept-Charset", "Accept-Language", "Content-Type", "Content-Id",
	"Odata-Version", "Odata-Maxversion", "Odata-Isolation",
	"Dataserviceversion", "Maxdataserviceversion",
	"Prefer", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
	"User-Agent", "X-Request-Id", "X-Ms-Client-Request-Id",
}

// forwarded is forwardHeaders as a set, for one lookup per incoming header.
var forwarded = func() map[string]bool {
	m := make(map[string]bool, len(forwardHeaders))
	for _, k := range forwardHeaders {
		m[k] = true
	}
	return m
}()

// cleanEscaped percent-encodes any byte that may not stand raw in a URL path, so the
// path survives as url.URL.RawPath (which net/url ignores when it is not a valid
// encoding, and would then re-encode %2F as '/').
func cleanEscaped(p string) string {
	need := false
	for i := 0; i < len(p); i++ {
		if !pathByte(p[i]) {
			need = true
			break
		}
	}
	if !need {
		return p
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if c := p[i]; pathByte(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// pathByte reports whether c may appear raw in an escaped path (RFC 3986 pchar, '/' and '%').
func pathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0
}

// countWriter counts the bytes that reach the client.
type countWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

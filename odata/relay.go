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
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source is one upstream OData service, as configured.
type Source struct {
	Name          string        // URL segment, [a-z0-9-]+
	URL           string        // upstream base, absolute http(s), ends with "/"
	Aliases       []string      // other bases the upstream may print; each ends with "/"
	PublicBase    string        // "{public_url}/odata/{name}/"; ends with "/"
	Batch         bool          // relay POST $batch; otherwise 501
	HeaderTimeout time.Duration // zero: 60s
	Version       string        // "2.0" | "3.0" | "4.0" | "" (learned from responses; default error shape v4)
	CacheMetadata time.Duration // zero: no $metadata cache; cache keys include the user
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
	// Transport carries requests upstream. Zero: a tuned clone of http.DefaultTransport
	// (keep-alive, MaxIdleConnsPerHost 64, no compression).
	Transport http.RoundTripper
	// APIKeyParam is the query parameter stripped before going upstream. Zero: "api_key".
	APIKeyParam string
	// Registerer receives the relay's metrics. Nil: no metrics.
	Registerer prometheus.Registerer
	// Logger receives the relay's own log lines (aborted streams). Nil: discard.
	Logger *slog.Logger
	// ErrorHandler renders every error the relay itself produces (wrapped odata sentinels,
	// or errors returned by Authorizer such as the token cache's), before any byte of the
	// response was written. src is nil for an unknown source. Nil: WriteError with the
	// status of the sentinel and the source's version.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, src *Source, err error)
	// XForwarded sets X-Forwarded-For, -Host and -Proto upstream. Zero: none are sent.
	XForwarded bool
}

// Relay streams OData requests to configured upstream sources and rewrites their links
// onto the bridge; it is safe for concurrent use.
type Relay struct {
	sources   map[string]*sourceState
	proxy     *httputil.ReverseProxy
	transport http.RoundTripper
	apiKey    string
	log       *slog.Logger
	onError   func(w http.ResponseWriter, r *http.Request, src *Source, err error)
	xfwd      bool
	metrics   *metrics
}

type sourceState struct {
	src      Source
	target   *url.URL
	bases    []string
	headers  *strings.Replacer
	rewriter *Rewriter // prototype, cloned per response
	learned  atomic.Pointer[string]
	cache    *metaCache
}

// current returns a copy of the source with the learned version filled in.
func (st *sourceState) current() *Source {
	s := st.src
	if s.Version == "" {
		if v := st.learned.Load(); v != nil {
			s.Version = *v
		}
	}
	s.Aliases = slices.Clone(s.Aliases)
	return &s
}

const defaultHeaderTimeout = 60 * time.Second

var sourceName = regexp.MustCompile(`^[a-z0-9-]+$`)

// NewRelay validates the sources and returns a Relay for them.
func NewRelay(sources []Source, opts Options) (*Relay, error) {
	rl := &Relay{
		sources:   make(map[string]*sourceState, len(sources)),
		transport: opts.Transport,
		apiKey:    opts.APIKeyParam,
		log:       opts.Logger,
		onError:   opts.ErrorHandler,
		xfwd:      opts.XForwarded,
	}
	if rl.transport == nil {
		rl.transport = defaultTransport()
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
	rl.proxy = &httputil.ReverseProxy{
		Rewrite:        rl.rewrite,
		Transport:      roundTripper{rl},
		ModifyResponse: rl.modifyResponse,
		ErrorHandler:   rl.proxyError,
		BufferPool:     copyBufPool{},
		ErrorLog:       slog.NewLogLogger(rl.log.Handler(), slog.LevelWarn),
	}
	return rl, nil
}

func newSourceState(s Source) (*sourceState, error) {
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
	if s.HeaderTimeout < 0 || s.CacheMetadata < 0 {
		bad("durations must not be negative")
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
	st := &sourceState{src: s, target: target}
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

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = 90 * time.Second
	// The relay rewrites bodies, so it reads them uncompressed and compresses toward
	// the client itself.
	t.DisableCompression = true
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
}

// Source returns a copy of the named source, with its learned OData version.
func (rl *Relay) Source(name string) (*Source, bool) {
	st, ok := rl.sources[name]
	if !ok {
		return nil, false
	}
	return st.current(), true
}

type callKey struct{}

// call is the state of one relayed request, shared by the proxy's hooks through the
// request context.
type call struct {
	rl     *Relay
	st     *sourceState
	w      http.ResponseWriter
	in     *http.Request
	path   string // escaped, checked
	last   string // last path segment, unescaped
	auth   Authorizer
	gzipOK bool

	batchBody  []byte // replayable POST body; nil when none or too large
	replayable bool

	// Set by modifyResponse.
	status    int
	body      io.Writer // where the proxy's body writes go
	rewriter  *Rewriter
	gz        *gzipWriter
	tee       *capBuffer
	teeHeader http.Header // the upstream's headers, after the policy, for the cache
	cacheKey  string
	out       countWriter
}

// maxReplayBody bounds the $batch request body kept for the retry after an upstream 401.
const maxReplayBody = 1 << 20

// Serve relays r to the source named source; path is the escaped remainder after
// "/odata/{source}/" (may be empty); user is an opaque per-user key for the metadata
// cache ("" disables caching for this call).
func (rl *Relay) Serve(w http.ResponseWriter, r *http.Request, source, path, user string, auth Authorizer) {
	st, ok := rl.sources[source]
	if !ok {
		rl.onError(w, r, nil, ErrUnknownSource)
		return
	}
	rl.metrics.request(source)
	last := path[strings.LastIndexByte(path, '/')+1:]
	if u, err := url.PathUnescape(last); err == nil {
		last = u
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if last != "$batch" || !st.src.Batch {
			rl.onError(w, r, st.current(), fmt.Errorf("%w: POST is relayed only for $batch on a source that allows it", ErrNotImplemented))
			return
		}
	default:
		rl.onError(w, r, st.current(), fmt.Errorf("%w: the bridge relays GET, HEAD and $batch only", ErrNotImplemented))
		return
	}
	if err := checkPath(path); err != nil {
		rl.onError(w, r, st.current(), err)
		return
	}
	c := &call{rl: rl, st: st, w: w, in: r, path: cleanEscaped(path), last: last, auth: auth, gzipOK: acceptsGzip(r.Header)}
	c.out.w = w
	if st.cache != nil && user != "" && last == "$metadata" && r.Method == http.MethodGet &&
		r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Modified-Since") == "" {
		c.cacheKey = metaKey(user, c.path, stripQuery(r.URL.RawQuery, rl.apiKey), r.Header)
		if e, ok := st.cache.get(c.cacheKey); ok {
			rl.metrics.cache(source, "hit")
			c.serveCached(e)
			return
		}
		rl.metrics.cache(source, "miss")
	}
	if r.Method == http.MethodPost && r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxReplayBody+1))
		if err != nil {
			rl.onError(w, r, st.current(), fmt.Errorf("%w: reading the request body", ErrBadRequest))
			return
		}
		r2 := *r
		if len(b) <= maxReplayBody {
			c.batchBody, c.replayable = b, true
			r2.Body = io.NopCloser(bytes.NewReader(b))
			r2.ContentLength = int64(len(b))
		} else {
			r2.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
		}
		r = &r2
	} else {
		c.replayable = true
	}
	// net/http canonicalizes OData-Version as Odata-Version; whatever set either spelling
	// before the relay, the response carries the upstream's one value only.
	delete(w.Header(), "Odata-Version")
	delete(w.Header(), "OData-Version")

	done := false
	defer func() {
		if !done {
			c.abandon()
		}
	}()
	rl.proxy.ServeHTTP((*bodyWriter)(c), r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
	err := c.finish()
	done = true
	if err != nil && r.Context().Value(http.ServerContextKey) != nil {
		// The client went away while the tail was written: abort like the proxy does.
		panic(http.ErrAbortHandler)
	}
}

func callOf(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// rewrite builds the upstream request: the source's scheme and host, its base path
// joined with the escaped relay path, the raw query less the API key, and only the
// headers on the allow list (so no caller credential or cookie ever leaves).
func (rl *Relay) rewrite(pr *httputil.ProxyRequest) {
	c := callOf(pr.In.Context())
	u := *c.st.target
	escaped := u.EscapedPath() + c.path
	p, err := url.PathUnescape(escaped)
	if err != nil { // checkPath accepted it, so this cannot happen; keep the bytes
		p = escaped
	}
	u.Path, u.RawPath = p, escaped
	u.RawQuery = stripQuery(pr.In.URL.RawQuery, rl.apiKey)
	u.ForceQuery = false
	pr.Out.URL = &u
	pr.Out.Host = ""
	h := make(http.Header, len(forwardHeaders))
	for _, k := range forwardHeaders {
		if v, ok := pr.Out.Header[k]; ok {
			h[k] = v
		}
	}
	pr.Out.Header = h
	if rl.xfwd {
		pr.SetXForwarded()
	}
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

// proxyError turns a failure before the response started into a sentinel and hands it
// to the ErrorHandler.
func (rl *Relay) proxyError(_ http.ResponseWriter, out *http.Request, err error) {
	c := callOf(out.Context())
	if c.in.Context().Err() != nil {
		return // the client is gone; nobody reads an error
	}
	var ae authError
	switch {
	case errors.As(err, &ae):
		err = ae.err
	case errors.Is(err, ErrUpstreamTimeout), errors.Is(err, ErrUpstreamUnauthorized), errors.Is(err, ErrUpstreamUnreachable):
	default:
		err = fmt.Errorf("%w: %w", ErrUpstreamUnreachable, err)
	}
	rl.onError(c.w, c.in, c.st.current(), err)
}

// authError marks an error returned by the Authorizer, which goes to the ErrorHandler unchanged.
type authError struct{ err error }

func (e authError) Error() string { return e.err.Error() }
func (e authError) Unwrap() error { return e.err }

var errHeaderTimeout = errors.New("upstream header timeout")

// roundTripper applies the Authorizer, the source's header timeout and the one retry
// after an upstream 401.
type roundTripper struct{ rl *Relay }

func (t roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	c := callOf(req.Context())
	name := c.st.src.Name
	timeout := c.st.src.HeaderTimeout
	if timeout == 0 {
		timeout = defaultHeaderTimeout
	}
	for attempt := 0; ; attempt++ {
		out := req.Clone(req.Context())
		if c.batchBody != nil {
			out.Body = io.NopCloser(bytes.NewReader(c.batchBody))
			out.ContentLength = int64(len(c.batchBody))
		}
		if c.auth != nil {
			if err := c.auth.Authorize(req.Context(), out, attempt > 0); err != nil {
				return nil, authError{err}
			}
		}
		ctx, cancel := context.WithCancelCause(req.Context())
		timer := time.AfterFunc(timeout, func() { cancel(errHeaderTimeout) })
		start := time.Now()
		res, err := t.rl.transport.RoundTrip(out.WithContext(ctx))
		fired := !timer.Stop()
		if err == nil && fired {
			res.Body.Close()
			err = errHeaderTimeout
		}
		if err != nil {
			timedOut := context.Cause(ctx) == errHeaderTimeout
			cancel(nil)
			if timedOut {
				return nil, fmt.Errorf("%w after %s", ErrUpstreamTimeout, timeout)
			}
			return nil, err
		}
		t.rl.metrics.upstream(name, res.StatusCode, time.Since(start))
		if res.StatusCode == http.StatusUnauthorized {
			drain(res.Body)
			cancel(nil)
			if attempt == 0 && c.auth != nil && c.replayable {
				t.rl.metrics.retry(name)
				continue
			}
			return nil, fmt.Errorf("%w", ErrUpstreamUnauthorized)
		}
		res.Body = &cancelBody{ReadCloser: res.Body, cancel: cancel}
		return res, nil
	}
}

// drain reads a little of a discarded body so the connection can be reused.
func drain(b io.ReadCloser) {
	io.CopyN(io.Discard, b, 64<<10)
	b.Close()
}

// cancelBody releases the attempt's context once the proxy is done with the body.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// copyBufSize is the proxy's read size from the upstream: larger than the proxy's own
// 32 KiB default, so a fast upstream costs fewer reads, writes and flushes per byte.
const copyBufSize = 128 << 10

// copyBufPool lends the proxy its copy buffers.
type copyBufPool struct{}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

func (copyBufPool) Get() []byte  { return *copyBufs.Get().(*[]byte) }
func (copyBufPool) Put(b []byte) { copyBufs.Put(&b) }

// bodyWriter is the ResponseWriter the proxy sees: headers go to the client directly,
// the body through the call's pipeline.
type bodyWriter call

func (b *bodyWriter) Header() http.Header { return b.w.Header() }

// WriteHeader sends the OData headers in the spelling of the spec: the proxy copied them
// with Header.Add, which canonicalizes OData-Version to Odata-Version. Clients compare
// case-insensitively, but some tools and tests match the spec's bytes.
func (b *bodyWriter) WriteHeader(code int) {
	if code >= 200 {
		h := b.w.Header()
		for _, k := range odataSpellings {
			if v, ok := h[k[0]]; ok {
				delete(h, k[0])
				h[k[1]] = v
			}
		}
	}
	b.w.WriteHeader(code)
}

// odataSpellings maps Go's canonical header keys to the OData spec's spelling.
var odataSpellings = [][2]string{
	{"Odata-Version", "OData-Version"},
	{"Odata-Entityid", "OData-EntityId"},
	{"Dataserviceversion", "DataServiceVersion"},
}

func (b *bodyWriter) Write(p []byte) (int, error) {
	if b.body == nil {
		return b.out.Write(p)
	}
	return b.body.Write(p)
}

// FlushError passes the proxy's flushes on (it flushes after every upstream read of a
// streamed body), through the gzip stream when there is one, so a slow feed reaches the
// client as it comes. The Rewriter's held-back tail stays: it may still begin a base.
func (b *bodyWriter) FlushError() error {
	if b.gz != nil {
		if err := b.gz.Flush(); err != nil {
			return err
		}
	}
	return http.NewResponseController(b.w).Flush()
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

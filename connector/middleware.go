package connector

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bridge's own Prometheus series.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight prometheus.Gauge
	signIns  *prometheus.CounterVec
	series   sync.Map // seriesKey -> *requestSeries
}

// seriesKey names one route's series; route is a registered pattern or
// "unmatched", so there are as many keys as routes × methods × statuses.
type seriesKey struct {
	route, method string
	status        int
}

// requestSeries are the children of one seriesKey, resolved once:
// WithLabelValues hashes and looks up its labels on every call.
type requestSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// request counts one finished request. Methods other than the standard
// ones count as "OTHER": a client may send any token as a method, and each
// would otherwise be a new series for as long as the process lives.
func (m *metrics) request(route, method string, status int, d time.Duration) {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
	default:
		method = "OTHER"
	}
	k := seriesKey{route, method, status}
	v, ok := m.series.Load(k)
	if !ok {
		v, _ = m.series.LoadOrStore(k, &requestSeries{
			requests: m.requests.WithLabelValues(route, method, strconv.Itoa(status)),
			latency:  m.latency.WithLabelValues(route, method),
		})
	}
	rs := v.(*requestSeries)
	rs.requests.Inc()
	rs.latency.Observe(d.Seconds())
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bridge_http_request_duration_seconds", Help: "Time to the end of the response, by route.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 120, 600},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bridge_http_in_flight_requests", Help: "Requests being served.",
		}),
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_sign_ins_total", Help: "Completed sign-ins at the identity provider, by outcome.",
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.inFlight, m.signIns} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// newRequestID returns 16 random hex digits. An incoming X-Request-ID is not
// trusted: clients can put anything there, including other people's IDs.
func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// observe logs and measures every request. It never logs a query string or a
// header: those carry feed keys, codes and tokens.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	id := newRequestID()
	c.Header("X-Request-ID", id)
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()

	c.Next()

	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	status := c.Writer.Status()
	d := time.Since(start)
	s.metrics.request(route, c.Request.Method, status, d)
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	ctx := c.Request.Context()
	h := s.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	// A record built here, without the caller's program counter that
	// Logger.LogAttrs looks up on every call: the source line of an access
	// log record is always this one.
	rec := slog.NewRecord(time.Now(), level, "request", 0)
	rec.AddAttrs(
		slog.String("request_id", id),
		slog.String("method", c.Request.Method),
		slog.String("path", c.Request.URL.Path),
		slog.Int("status", status),
		slog.Int("bytes", max(c.Writer.Size(), 0)),
		slog.Duration("duration", d),
		slog.String("client", c.ClientIP()),
	)
	h.Handle(ctx, rec)
}

// recoverPanics turns a panic into a 500, except http.ErrAbortHandler,
// which must stay a panic so that net/http aborts the response and the
// client sees a truncated body rather than a cleanly closed feed.
func (s *Server) recoverPanics(c *gin.Context) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
			panic(v)
		}
		s.log.ErrorContext(c.Request.Context(), "panic", slog.Any("panic", v), slog.String("path", c.Request.URL.Path))
		if !c.Writer.Written() {
			c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": gin.H{"code": "InternalError", "message": "Internal error."}})
			return
		}
		panic(http.ErrAbortHandler)
	}()
	c.Next()
}

// noStore marks responses that carry tokens or keys (RFC 6749 §5.1).
func noStore(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Pragma", "no-cache")
	c.Next()
}

// securityHeaders are the headers of every response: no MIME sniffing, and
// HSTS when the bridge is served over https (RFC 6797), so a browser never
// sends the page cookie or a feed key over plain http.
func (s *Server) securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	if s.secureCookies() {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	c.Next()
}

// bodyDeadline gives a request body BodyTimeout to arrive, so a client
// that sends it a byte at a time cannot hold a connection and a handler.
// The deadline is the connection's; net/http lifts it once the body has
// been read to its end (its background read of the connection starts with
// no deadline), so a long answer after the body, such as a relayed
// $batch, is not cut.
func (s *Server) bodyDeadline(c *gin.Context) {
	r := c.Request
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		// An error means no net/http connection (a test recorder): nothing to bound.
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
	}
	c.Next()
}

package connector

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
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

const requestIDKey = "request_id"

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
	c.Set(requestIDKey, id)
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
	s.metrics.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Inc()
	s.metrics.latency.WithLabelValues(route, c.Request.Method).Observe(d.Seconds())
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.LogAttrs(c.Request.Context(), level, "request",
		slog.String("request_id", id),
		slog.String("method", c.Request.Method),
		slog.String("path", c.Request.URL.Path),
		slog.Int("status", status),
		slog.Int("bytes", max(c.Writer.Size(), 0)),
		slog.Duration("duration", d),
		slog.String("client", c.ClientIP()),
	)
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

package odata

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the relay's Prometheus series, labelled by source (a configured name, so
// the label set is bounded). A nil *metrics records nothing.
type metrics struct {
	requests  *prometheus.CounterVec
	upstreams *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	ttfb      *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	aborts    *prometheus.CounterVec
	cacheOps  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_odata_requests_total", Help: "Relay requests per source.",
		}, []string{"source"}),
		upstreams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_odata_upstream_responses_total", Help: "Upstream responses per source and status code.",
		}, []string{"source", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_odata_response_bytes_total", Help: "Body bytes sent to clients per source, after rewriting and compression.",
		}, []string{"source"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bridge_odata_upstream_ttfb_seconds", Help: "Time from the upstream request to its response headers.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"source"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_odata_upstream_retries_total", Help: "Credential renewals and retries after an upstream 401.",
		}, []string{"source"}),
		aborts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_odata_aborted_total", Help: "Responses aborted after the first byte.",
		}, []string{"source"}),
		cacheOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_odata_metadata_cache_total", Help: "$metadata cache lookups per source and result (hit, miss).",
		}, []string{"source", "result"}),
	}
	var err error
	m.requests = register(reg, m.requests, &err)
	m.upstreams = register(reg, m.upstreams, &err)
	m.bytes = register(reg, m.bytes, &err)
	m.ttfb = register(reg, m.ttfb, &err)
	m.retries = register(reg, m.retries, &err)
	m.aborts = register(reg, m.aborts, &err)
	m.cacheOps = register(reg, m.cacheOps, &err)
	return m, err
}

// register registers c, or returns the collector already registered under its name, so
// two relays (a reload, a test) can share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(C); ok {
				return ex
			}
		}
		*errp = errors.Join(*errp, err)
	}
	return c
}

func (m *metrics) request(source string) {
	if m != nil {
		m.requests.WithLabelValues(source).Inc()
	}
}

func (m *metrics) upstream(source string, code int, ttfb time.Duration) {
	if m != nil {
		m.upstreams.WithLabelValues(source, strconv.Itoa(code)).Inc()
		m.ttfb.WithLabelValues(source).Observe(ttfb.Seconds())
	}
}

func (m *metrics) sent(source string, n int64) {
	if m != nil && n > 0 {
		m.bytes.WithLabelValues(source).Add(float64(n))
	}
}

func (m *metrics) retry(source string) {
	if m != nil {
		m.retries.WithLabelValues(source).Inc()
	}
}

func (m *metrics) abort(source string) {
	if m != nil {
		m.aborts.WithLabelValues(source).Inc()
	}
}

func (m *metrics) cache(source, result string) {
	if m != nil {
		m.cacheOps.WithLabelValues(source, result).Inc()
	}
}

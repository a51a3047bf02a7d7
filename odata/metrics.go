package odata

import (
	"errors"
	"strconv"
	"sync/atomic"
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
	accelMetrics
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
	m.repeats = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_relay_repeats_total", Help: "Requests answered from a response kept for the same caller (repeat_ttl).",
	}, []string{"source"})
	m.joined = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_relay_joined_total", Help: "Requests that joined the same caller's identical request in flight.",
	}, []string{"source"})
	m.aheadPages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_relay_read_ahead_pages_total", Help: "Pages read ahead, by result: used (a client asked for it) or wasted (dropped unclaimed).",
	}, []string{"source", "result"})
	m.heldBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bridge_relay_held_bytes", Help: "Bytes of kept responses and pages read ahead, within relay.memory_budget.",
	})
	var err error
	m.requests = register(reg, m.requests, &err)
	m.upstreams = register(reg, m.upstreams, &err)
	m.bytes = register(reg, m.bytes, &err)
	m.ttfb = register(reg, m.ttfb, &err)
	m.retries = register(reg, m.retries, &err)
	m.aborts = register(reg, m.aborts, &err)
	m.cacheOps = register(reg, m.cacheOps, &err)
	m.repeats = register(reg, m.repeats, &err)
	m.joined = register(reg, m.joined, &err)
	m.aheadPages = register(reg, m.aheadPages, &err)
	m.heldBytes = register(reg, m.heldBytes, &err)
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

// sourceMetrics are one source's series, resolved once: a WithLabelValues per request
// would hash the labels and take the vector's lock on the hot path. A nil *sourceMetrics
// records nothing.
type sourceMetrics struct {
	vecs      *metrics
	source    string
	requests  prometheus.Counter
	bytes     prometheus.Counter
	ttfb      prometheus.Observer
	retries   prometheus.Counter
	aborts    prometheus.Counter
	cacheHit  prometheus.Counter // nil without a $metadata cache
	cacheMiss prometheus.Counter
	// codes holds the upstream response counter per status code 100–599, resolved on
	// first use.
	codes [500]atomic.Pointer[prometheus.Counter]
}

// forSource resolves the series of the named source; withCache adds its $metadata cache
// lookups. A nil *metrics gives nil.
func (m *metrics) forSource(source string, withCache bool) *sourceMetrics {
	if m == nil {
		return nil
	}
	sm := &sourceMetrics{
		vecs:     m,
		source:   source,
		requests: m.requests.WithLabelValues(source),
		bytes:    m.bytes.WithLabelValues(source),
		ttfb:     m.ttfb.WithLabelValues(source),
		retries:  m.retries.WithLabelValues(source),
		aborts:   m.aborts.WithLabelValues(source),
	}
	if withCache {
		sm.cacheHit = m.cacheOps.WithLabelValues(source, "hit")
		sm.cacheMiss = m.cacheOps.WithLabelValues(source, "miss")
	}
	return sm
}

func (m *sourceMetrics) request() {
	if m != nil {
		m.requests.Inc()
	}
}

func (m *sourceMetrics) upstream(code int, ttfb time.Duration) {
	if m == nil {
		return
	}
	m.ttfb.Observe(ttfb.Seconds())
	if code < 100 || code >= 600 {
		m.vecs.upstreams.WithLabelValues(m.source, strconv.Itoa(code)).Inc()
		return
	}
	slot := &m.codes[code-100]
	if c := slot.Load(); c != nil {
		(*c).Inc()
		return
	}
	c := m.vecs.upstreams.WithLabelValues(m.source, strconv.Itoa(code))
	slot.Store(&c)
	c.Inc()
}

func (m *sourceMetrics) sent(n int64) {
	if m != nil && n > 0 {
		m.bytes.Add(float64(n))
	}
}

func (m *sourceMetrics) retry() {
	if m != nil {
		m.retries.Inc()
	}
}

func (m *sourceMetrics) abort() {
	if m != nil {
		m.aborts.Inc()
	}
}

func (m *sourceMetrics) cache(hit bool) {
	switch {
	case m == nil || m.cacheHit == nil:
	case hit:
		m.cacheHit.Inc()
	default:
		m.cacheMiss.Inc()
	}
}

// accelMetrics are the series of the repeats and the read-ahead (repeat.go).
type accelMetrics struct {
	repeats    *prometheus.CounterVec
	joined     *prometheus.CounterVec
	aheadPages *prometheus.CounterVec
	heldBytes  prometheus.Gauge
}

// held adds n (negative: releases) to the bytes held.
func (m *metrics) held(n int64) {
	if m != nil {
		m.heldBytes.Add(float64(n))
	}
}

// ahead counts a page read ahead for source as used or wasted.
func (m *metrics) ahead(source string, used bool) {
	if m == nil {
		return
	}
	result := "wasted"
	if used {
		result = "used"
	}
	m.aheadPages.WithLabelValues(source, result).Inc()
}

func (m *sourceMetrics) repeat() {
	if m != nil {
		m.vecs.repeats.WithLabelValues(m.source).Inc()
	}
}

func (m *sourceMetrics) joined() {
	if m != nil {
		m.vecs.joined.WithLabelValues(m.source).Inc()
	}
}

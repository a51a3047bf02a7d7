// Package tracing holds the parts of the bridge's OpenTelemetry traces that
// more than one package builds on: the propagation format, the client
// transport of upstream and identity provider calls, and the span
// processor that keeps query strings out of every exported span.
package tracing

import (
	"net/http"
	"regexp"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Propagator reads and writes W3C Trace Context (traceparent, tracestate).
// Not W3C Baggage: a caller's baggage would reach the upstreams, past the
// relay's list of the request headers that go upstream.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Transport wraps rt so that each request is a client span of tp, named
// after its method only, and carries the span's traceparent.
func Transport(rt http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(Propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
	)
}

// query matches a URL's query string up to the next quote or space, as it
// may appear inside an error message.
var query = regexp.MustCompile(`\?[^\s"'<>]*`)

// dropped are attributes that hold nothing but a query string.
var dropped = map[attribute.Key]bool{"url.query": true}

// Redact wraps next so that no span it receives holds a query string: feed
// keys, $filter values and codes travel in queries. url.full, http.url and
// http.target lose their query; so does every other string attribute, event
// attribute and status description that contains one; url.query is
// dropped. Span names are left alone: the bridge names spans after routes
// and methods.
func Redact(next sdktrace.SpanProcessor) sdktrace.SpanProcessor {
	return redactor{next}
}

type redactor struct{ sdktrace.SpanProcessor }

func (r redactor) OnEnd(s sdktrace.ReadOnlySpan) { r.SpanProcessor.OnEnd(redacted{s}) }

// redacted is a finished span as exporters should see it.
type redacted struct{ sdktrace.ReadOnlySpan }

func (s redacted) Attributes() []attribute.KeyValue { return scrub(s.ReadOnlySpan.Attributes()) }

func (s redacted) Events() []sdktrace.Event {
	evs := s.ReadOnlySpan.Events()
	out := make([]sdktrace.Event, len(evs))
	for i, e := range evs {
		e.Attributes = scrub(e.Attributes)
		out[i] = e
	}
	return out
}

func (s redacted) Links() []sdktrace.Link {
	ls := s.ReadOnlySpan.Links()
	out := make([]sdktrace.Link, len(ls))
	for i, l := range ls {
		l.Attributes = scrub(l.Attributes)
		out[i] = l
	}
	return out
}

func (s redacted) Status() sdktrace.Status {
	st := s.ReadOnlySpan.Status()
	if st.Code == codes.Error {
		st.Description = query.ReplaceAllString(st.Description, "")
	}
	return st
}

// scrub returns attrs without query strings; attrs itself is not changed.
func scrub(attrs []attribute.KeyValue) []attribute.KeyValue {
	out := make([]attribute.KeyValue, 0, len(attrs))
	for _, kv := range attrs {
		if dropped[kv.Key] {
			continue
		}
		switch kv.Value.Type() {
		case attribute.STRING:
			if v := kv.Value.AsString(); query.MatchString(v) {
				kv = kv.Key.String(query.ReplaceAllString(v, ""))
			}
		case attribute.STRINGSLICE:
			vs := kv.Value.AsStringSlice()
			for i, v := range vs {
				vs[i] = query.ReplaceAllString(v, "")
			}
			kv = kv.Key.StringSlice(vs)
		}
		out = append(out, kv)
	}
	return out
}

// End ends span, marked failed when err is not nil. The error's text stays out of
// the span: it may quote what a caller or a provider sent.
func End(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

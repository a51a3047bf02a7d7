package connector

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/odata-bridge/bridge/internal/tracing"
)

const tracerName = "github.com/odata-bridge/bridge/connector"

// noSpan is the span of a request while tracing is off: it records nothing.
var noSpan = trace.SpanFromContext(context.Background())

// traceRequests starts a server span per request, as the child of the
// caller's W3C traceparent, named after the route ("GET /odata/:source/*path"),
// never after the path or query, which carry keys. It records the method,
// the route and the status only.
func (s *Server) traceRequests(c *gin.Context) {
	r := c.Request
	ctx := tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	method := r.Method
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
	default:
		method = "_OTHER" // any token is a method; the span name must stay bounded
	}
	name := method
	attrs := []attribute.KeyValue{attribute.String("http.request.method", method)}
	if route := c.FullPath(); route != "" {
		name += " " + route
		attrs = append(attrs, attribute.String("http.route", route))
	}
	ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	defer span.End()
	c.Request = r.WithContext(ctx)

	c.Next()

	status := c.Writer.Status()
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, "")
	}
}

// startSpan starts an internal span under ctx's; while tracing is off it
// returns ctx itself and a span that records nothing, without allocating.
func (s *Server) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if s.tracer == nil {
		return ctx, noSpan
	}
	return s.tracer.Start(ctx, name)
}

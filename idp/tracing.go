package idp

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/odata-bridge/bridge/idp"

// startSpan starts the span of one token request to the identity provider.
// The tracer is the global provider's at the time of the request: a no-op
// until the bridge turns tracing on.
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
}

// endSpan ends span, marked failed when err is not nil; the error's text
// stays out of the span, as the provider's answer may quote the request.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

package idp

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/odata-bridge/bridge/idp"

// startSpan starts the span of one token request to the identity provider.
// The tracer is the global provider's at the time of the request: a no-op
// until the bridge turns tracing on.
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
}

package tokencache

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

const tracerName = "github.com/odata-bridge/bridge/tokencache"

// startRefresh starts the span of one token refresh at the identity
// provider, for the session's own token (audience "") or an audience's. The
// tracer is the global provider's at the time of the refresh: a no-op until
// the bridge turns tracing on.
func startRefresh(ctx context.Context, audience string) (context.Context, trace.Span) {
	var opts []trace.SpanStartOption
	if audience != "" {
		opts = append(opts, trace.WithAttributes(attribute.String("tokencache.audience", audience)))
	}
	return otel.Tracer(tracerName).Start(ctx, "tokencache.refresh", opts...)
}

// endRefresh ends span, marked failed when err is not nil; the error's text
// stays out of the span, as provider answers may quote what was sent.
func endRefresh(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

package tokencache

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
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

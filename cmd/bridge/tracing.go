package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/internal/tracing"
)

// traces is the bridge's OpenTelemetry tracer provider. A nil *traces is
// tracing off: no SDK, no wrapped transports, no per-request work.
type traces struct {
	tp *sdktrace.TracerProvider
}

// startTracing turns tracing on when the standard OpenTelemetry variables
// ask for it: OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// is set, or OTEL_TRACES_EXPORTER is otlp. OTEL_TRACES_EXPORTER=none keeps it
// off. Spans go to an OTLP/HTTP (protobuf) receiver; the SDK and the
// exporter read the other OTEL_* variables themselves (service name,
// resource attributes, sampler, headers, timeout, batching).
func startTracing(ctx context.Context, getenv func(string) string) (*traces, error) {
	exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	endpoint := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	tracesEndpoint := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	switch exp {
	case "none":
		return nil, nil
	case "":
		if endpoint == "" && tracesEndpoint == "" {
			return nil, nil
		}
	case "otlp":
	default:
		return nil, usageError("OTEL_TRACES_EXPORTER: %q is not supported: use otlp or none", exp)
	}
	proto := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		proto = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	if proto != "" && proto != "http/protobuf" {
		return nil, usageError("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not supported: use http/protobuf", proto)
	}
	// The endpoints are passed explicitly, so they come from getenv like
	// every other setting of run; the exporter appends nothing to a
	// signal-specific endpoint and /v1/traces to the general one.
	var opts []otlptracehttp.Option
	switch {
	case tracesEndpoint != "":
		opts = append(opts, otlptracehttp.WithEndpointURL(tracesEndpoint))
	case endpoint != "":
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(endpoint, "/")+"/v1/traces"))
	}
	exporter, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, usageError("tracing: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "odata-bridge")),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, usageError("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(tracing.Redact(sdktrace.NewBatchSpanProcessor(exporter))),
	)
	// The token cache and the identity provider take their tracer from the
	// global provider.
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(tracing.Propagator)
	return &traces{tp: tp}, nil
}

// provider is the tracer provider to hand to the parts; nil when off.
func (t *traces) provider() trace.TracerProvider {
	if t == nil {
		return nil
	}
	return t.tp
}

// transport wraps rt in a client span per request when tracing is on.
func (t *traces) transport(rt http.RoundTripper) http.RoundTripper {
	if t == nil {
		return rt
	}
	return tracing.Transport(rt, t.tp)
}

// wrapTransport is transport as the relay's option: nil when off, so the
// relay keeps its transports as they are.
func (t *traces) wrapTransport() func(http.RoundTripper) http.RoundTripper {
	if t == nil {
		return nil
	}
	return t.transport
}

// client is an HTTP client of the identity provider; nil when off, which
// leaves the provider's own default.
func (t *traces) client() *http.Client {
	if t == nil {
		return nil
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: t.transport(http.DefaultTransport)}
}

// restClient wraps a REST source's client's transport when tracing is on.
func (t *traces) restClient(c *http.Client) *http.Client {
	if t == nil {
		return c
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	traced := *c
	traced.Transport = t.transport(rt)
	return &traced
}

// entra gives Entra ID's on-behalf-of exchange and discovery a traced
// client when tracing is on and e has no client of its own.
func (t *traces) entra(e idp.EntraConfig) idp.EntraConfig {
	if t != nil && e.HTTPClient == nil {
		e.HTTPClient = t.client()
	}
	return e
}

// shutdown exports the spans still buffered, within a few seconds.
func (t *traces) shutdown() error {
	if t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	return nil
}

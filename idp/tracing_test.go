package idp

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/odata-bridge/bridge/idp/idptest"
)

// TestOnBehalfOfSpan: an exchange is one span under the caller's, a cached
// token none, and the span holds neither the assertion nor the result.
func TestOnBehalfOfSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	e, p, _ := newTestEntra(t, nil)
	tok := p.Token(t, idptest.TenantA, "alice", testPublicURL, nil)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	c, err := e.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.OnBehalfOf(ctx, tok, c, testResource, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.OnBehalfOf(ctx, tok, c, testResource, false); err != nil {
		t.Fatal(err)
	}
	parent.End()

	var obo []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "idp.on_behalf_of" {
			obo = append(obo, s)
		}
	}
	if len(obo) != 1 {
		t.Fatalf("on-behalf-of spans = %d, want 1: the second call is served from the cache", len(obo))
	}
	s := obo[0]
	if s.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("parent %s, want the caller's span %s", s.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	if s.Status().Code == codes.Error {
		t.Errorf("status %v, want unset for a successful exchange", s.Status())
	}
	for _, kv := range s.Attributes() {
		if v := kv.Value.String(); strings.Contains(v, tok) || strings.Contains(v, string(got)) {
			t.Errorf("attribute %s holds a token", kv.Key)
		}
	}
}

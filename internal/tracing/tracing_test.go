package tracing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestRedact(t *testing.T) {
	cases := []struct {
		name  string
		span  func(trace.Span)
		key   attribute.Key
		want  string // "" with drop
		drop  bool
		event bool
	}{
		{name: "url.full", span: func(s trace.Span) {
			s.SetAttributes(attribute.String("url.full", "https://up.example/svc/Items?$filter=secret&api_key=k"))
		}, key: "url.full", want: "https://up.example/svc/Items"},
		{name: "http.url", span: func(s trace.Span) {
			s.SetAttributes(attribute.String("http.url", "http://up.example/a?code=c"))
		}, key: "http.url", want: "http://up.example/a"},
		{name: "http.target", span: func(s trace.Span) {
			s.SetAttributes(attribute.String("http.target", "/odata/x/Items?api_key=k"))
		}, key: "http.target", want: "/odata/x/Items"},
		{name: "url.query dropped", span: func(s trace.Span) {
			s.SetAttributes(attribute.String("url.query", "api_key=k"))
		}, key: "url.query", drop: true},
		{name: "error text", span: func(s trace.Span) {
			s.SetAttributes(attribute.String("error.message", `Get "http://up/a?api_key=k": EOF`))
		}, key: "error.message", want: `Get "http://up/a": EOF`},
		{name: "string slice", span: func(s trace.Span) {
			s.SetAttributes(attribute.StringSlice("urls", []string{"/a?k=1", "/b"}))
		}, key: "urls", want: `["/a","/b"]`},
		{name: "event", span: func(s trace.Span) {
			s.RecordError(errors.New(`Get "http://up/a?$filter=secret": timeout`))
		}, key: "exception.message", want: `Get "http://up/a": timeout`, event: true},
		{name: "other attributes kept", span: func(s trace.Span) {
			s.SetAttributes(attribute.Int("http.response.status_code", 200))
		}, key: "http.response.status_code", want: "200"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(Redact(rec)))
			_, s := tp.Tracer("test").Start(context.Background(), "span")
			tc.span(s)
			s.End()
			ended := rec.Ended()
			if len(ended) != 1 {
				t.Fatalf("%d spans, want 1", len(ended))
			}
			attrs := ended[0].Attributes()
			if tc.event {
				attrs = nil
				for _, e := range ended[0].Events() {
					attrs = append(attrs, e.Attributes...)
				}
			}
			found, got := false, ""
			for _, kv := range attrs {
				if kv.Key == tc.key {
					found, got = true, kv.Value.String()
				}
			}
			if tc.drop {
				if found {
					t.Errorf("%s = %q, want it dropped", tc.key, got)
				}
				return
			}
			if !found || got != tc.want {
				t.Errorf("%s = %q (found %v), want %q", tc.key, got, found, tc.want)
			}
		})
	}
}

func TestRedactStatus(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(Redact(rec)))
	_, s := tp.Tracer("test").Start(context.Background(), "span")
	s.SetStatus(codes.Error, `Get "http://up/a?api_key=k": EOF`)
	s.End()
	if got, want := rec.Ended()[0].Status().Description, `Get "http://up/a": EOF`; got != want {
		t.Errorf("status = %q, want %q", got, want)
	}
}

// TestTransport: the client span is named after the method and its
// traceparent reaches the server.
func TestTransport(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Traceparent") }))
	defer srv.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("test").Start(context.Background(), "parent")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/a?b=c", nil)
	resp, err := (&http.Client{Transport: Transport(http.DefaultTransport, tp)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	var client sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			client = s
		}
	}
	if client == nil || client.Name() != http.MethodGet {
		t.Fatalf("no client span named GET: %v", rec.Ended())
	}
	if want := "00-" + client.SpanContext().TraceID().String() + "-" + client.SpanContext().SpanID().String() + "-01"; got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}
	if !strings.HasPrefix(got, "00-"+parent.SpanContext().TraceID().String()) {
		t.Errorf("traceparent %q is not in the parent's trace", got)
	}
}

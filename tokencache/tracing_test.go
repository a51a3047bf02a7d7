package tokencache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/oauth2"
)

// TestRefreshSpan: a refresh at the provider is one span under the
// caller's, failed when the provider fails, and a fresh token needs none;
// no span holds a token.
func TestRefreshSpan(t *testing.T) {
	cases := []struct {
		name     string
		expiry   time.Duration // of the stored provider token, from now
		fail     bool
		spans    int
		wantCode codes.Code
	}{
		{name: "fresh", expiry: time.Hour, spans: 0},
		{name: "refreshed", expiry: -time.Minute, spans: 1, wantCode: codes.Unset},
		{name: "provider down", expiry: -time.Minute, fail: true, spans: 1, wantCode: codes.Error},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			otel.SetTracerProvider(tp)
			t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
			const newToken = "provider-access-new"
			store, err := New(Options{Refresher: RefresherFunc(func(context.Context, string) (*oauth2.Token, error) {
				if tc.fail {
					return nil, errors.New("connection refused")
				}
				return &oauth2.Token{AccessToken: newToken, Expiry: time.Now().Add(time.Hour)}, nil
			})})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			ctx := context.Background()
			sid, err := store.CreateSession(ctx, Session{Subject: "alice", AccessToken: "provider-access-old", RefreshToken: "provider-refresh", Expiry: time.Now().Add(tc.expiry)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, parent := tp.Tracer("test").Start(ctx, "request")
			_, _ = store.Token(ctx, sid)
			parent.End()

			var spans []sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Name() == "tokencache.refresh" {
					spans = append(spans, s)
				}
			}
			if len(spans) != tc.spans {
				t.Fatalf("refresh spans = %d, want %d", len(spans), tc.spans)
			}
			for _, s := range spans {
				if s.Parent().SpanID() != parent.SpanContext().SpanID() {
					t.Errorf("parent %s, want the caller's span", s.Parent().SpanID())
				}
				if s.Status().Code != tc.wantCode {
					t.Errorf("status %v, want %v", s.Status().Code, tc.wantCode)
				}
				for _, kv := range s.Attributes() {
					if v := kv.Value.String(); strings.Contains(v, "provider-") {
						t.Errorf("attribute %s = %q holds a token", kv.Key, v)
					}
				}
			}
		})
	}
}

package connector

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/odata-bridge/bridge/internal/tracing"
	"github.com/odata-bridge/bridge/odata"
)

// seenUpstream is what a test upstream received.
type seenUpstream struct {
	mu            sync.Mutex
	traceparents  []string
	authorization []string
	queries       []string
	baggage       []string
}

func (s *seenUpstream) snapshot() (tps, auths, queries []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.traceparents...), append([]string(nil), s.authorization...), append([]string(nil), s.queries...)
}

// tracedUpstream answers 401 to the first request, so the relay renews the
// token (a refresh at the identity provider) and retries, and a small
// OData feed to every other.
func tracedUpstream(t *testing.T) (*httptest.Server, *seenUpstream) {
	t.Helper()
	seen := &seenUpstream{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.mu.Lock()
		n := len(seen.traceparents)
		seen.traceparents = append(seen.traceparents, r.Header.Get("Traceparent"))
		seen.authorization = append(seen.authorization, r.Header.Get("Authorization"))
		seen.queries = append(seen.queries, r.URL.RawQuery)
		seen.baggage = append(seen.baggage, r.Header.Get("Baggage"))
		seen.mu.Unlock()
		if n == 0 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
		w.Header().Set("OData-Version", "4.0")
		io.WriteString(w, `{"@odata.context":"$metadata#Items","value":[{"ID":1}]}`)
	}))
	t.Cleanup(up.Close)
	return up, seen
}

// relaySource is the source "test" of a real relay in front of up.
func relaySource(t *testing.T, o *Options, up string, wrap func(http.RoundTripper) http.RoundTripper) {
	t.Helper()
	rl, err := odata.NewRelay([]odata.Upstream{{Name: "test", URL: up + "/svc/", PublicBase: o.PublicURL + "/odata/test/", Version: "4.0"}},
		odata.Options{WrapTransport: wrap})
	if err != nil {
		t.Fatal(err)
	}
	feed, _ := rl.Feed("test")
	o.Sources = []Source{{Name: "test", Kind: "odata", Auth: AuthUser, Feed: feed}}
}

const (
	incomingTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingParent  = "00f067aa0ba902b7"
	secretQuery     = "qsecret-7f3a"
)

func traceHeaders(access string) http.Header {
	h := bearer(access)
	h.Set("Traceparent", "00-"+incomingTraceID+"-"+incomingParent+"-01")
	h.Set("Baggage", "tenant=caller-baggage")
	return h
}

// TestFeedTraced: with a tracer provider, a feed request is a server span
// named after its route, the child of the caller's traceparent, with spans
// for the authorization, the token refresh at the identity provider and
// each upstream call; the upstream receives the trace in its traceparent;
// and no attribute anywhere holds the query, the caller's token, the feed
// key or the upstream token.
func TestFeedTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracing.Redact(rec)))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	up, seen := tracedUpstream(t)
	b := newBridge(t, nil, func(o *Options) {
		o.TracerProvider = tp
		relaySource(t, o, up.URL, func(rt http.RoundTripper) http.RoundTripper { return tracing.Transport(rt, tp) })
	})
	access, _ := b.signIn(t)
	path := "/odata/test/Items?$filter=" + url.QueryEscape("Name eq '"+secretQuery+"'")
	resp, body := b.get(t, path, traceHeaders(access))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed: status %d %s", resp.StatusCode, body)
	}
	sid, err := b.store.Authenticate(context.Background(), access)
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := b.store.CreateFeedKey(context.Background(), sid, "traced")
	if err != nil {
		t.Fatal(err)
	}
	h := traceHeaders(access)
	h.Del("Authorization")
	if resp, body := b.get(t, "/odata/test/Items?api_key="+url.QueryEscape(string(key))+"&$top=1", h); resp.StatusCode != http.StatusOK {
		t.Fatalf("feed with a key: status %d %s", resp.StatusCode, body)
	}

	tps, auths, queries := seen.snapshot()
	seen.mu.Lock()
	for i, bg := range seen.baggage {
		if bg != "" {
			t.Errorf("upstream call %d: baggage %q, want none: the caller's baggage stays at the bridge", i, bg)
		}
	}
	seen.mu.Unlock()
	if len(tps) != 3 {
		t.Fatalf("upstream calls = %d, want 3 (401, retry, keyed request)", len(tps))
	}
	if !strings.Contains(queries[0], secretQuery) {
		t.Fatalf("upstream query %q lacks the filter: the test would prove nothing", queries[0])
	}
	for i, tp := range tps {
		parts := strings.Split(tp, "-")
		if len(parts) != 4 || parts[1] != incomingTraceID || parts[2] == incomingParent {
			t.Errorf("upstream call %d: traceparent %q, want trace %s with the bridge's client span as parent", i, tp, incomingTraceID)
		}
	}

	// The sign-in's requests are traces of their own; the feed requests
	// share the caller's.
	all := rec.Ended()
	var spans []sdktrace.ReadOnlySpan
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range all {
		if s.SpanContext().TraceID().String() == incomingTraceID {
			spans = append(spans, s)
			byName[s.Name()] = append(byName[s.Name()], s)
		}
	}
	if n := len(all) - len(spans); n == 0 {
		t.Error("no spans of the sign-in: the scan below would miss its codes")
	}
	want := map[string]int{
		"GET /odata/test/*path":    0, // never: the span name is the route pattern
		"GET /odata/:source/*path": 2,
		"connector.authorize":      2,
		"tokencache.refresh":       1,
		"idp.refresh":              1,
		"GET":                      3, // the upstream calls
	}
	for name, n := range want {
		if got := len(byName[name]); got != n {
			t.Errorf("spans named %q = %d, want %d (all: %v)", name, got, n, names(spans))
		}
	}
	if got, want := len(spans), 9; got != want {
		t.Errorf("spans in the caller's trace = %d, want %d: %v", got, want, names(spans))
	}
	for _, s := range byName["GET /odata/:source/*path"] {
		if s.SpanKind() != trace.SpanKindServer || s.Parent().SpanID().String() != incomingParent {
			t.Errorf("server span: kind %v, parent %s; want server, %s", s.SpanKind(), s.Parent().SpanID(), incomingParent)
		}
		if got := attr(s, "http.route"); got != "/odata/:source/*path" {
			t.Errorf("http.route = %q", got)
		}
		if got := attr(s, "http.response.status_code"); got != "200" {
			t.Errorf("http.response.status_code = %q, want 200", got)
		}
	}
	clientParents := map[string]bool{}
	for _, s := range byName["GET"] {
		clientParents[s.SpanContext().SpanID().String()] = true
		if s.SpanKind() != trace.SpanKindClient {
			t.Errorf("upstream span kind %v, want client", s.SpanKind())
		}
		if u := attr(s, "url.full"); !strings.HasPrefix(u, up.URL+"/svc/Items") || strings.Contains(u, "?") {
			t.Errorf("url.full = %q, want the upstream URL without its query", u)
		}
	}
	for i, tp := range tps {
		if parts := strings.Split(tp, "-"); len(parts) == 4 && !clientParents[parts[2]] {
			t.Errorf("upstream call %d: traceparent parent %s is no client span", i, parts[2])
		}
	}

	secrets := map[string]string{"query": secretQuery, "bearer token": access, "feed key": string(key)}
	for i, a := range auths {
		if tok, ok := strings.CutPrefix(a, "Bearer "); ok {
			secrets[fmt.Sprintf("upstream token %d", i)] = tok
		}
	}
	for _, s := range all {
		if strings.ContainsAny(s.Name(), "?&") {
			t.Errorf("span name %q holds a query", s.Name())
		}
		for _, text := range spanTexts(s) {
			if strings.Contains(text, "?") {
				t.Errorf("span %q holds a query: %q", s.Name(), text)
			}
			for what, secret := range secrets {
				if strings.Contains(text, secret) {
					t.Errorf("span %q holds the %s: %q", s.Name(), what, text)
				}
			}
		}
	}
}

// TestFeedUntraced: without a tracer provider nothing is recorded, and the
// upstream receives no traceparent, not even the caller's.
func TestFeedUntraced(t *testing.T) {
	// A recording global provider, which the token cache and the identity
	// provider use: the connector and the relay must not fall back to it.
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	up, seen := tracedUpstream(t)
	b := newBridge(t, nil, func(o *Options) { relaySource(t, o, up.URL, nil) })
	access, _ := b.signIn(t)
	if resp, body := b.get(t, "/odata/test/Items?$top=1", traceHeaders(access)); resp.StatusCode != http.StatusOK {
		t.Fatalf("feed: status %d %s", resp.StatusCode, body)
	}
	tps, _, _ := seen.snapshot()
	if len(tps) != 2 {
		t.Fatalf("upstream calls = %d, want 2", len(tps))
	}
	for i, tp := range tps {
		if tp != "" {
			t.Errorf("upstream call %d: traceparent %q, want none", i, tp)
		}
	}
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindServer || s.SpanKind() == trace.SpanKindClient || s.Name() == "connector.authorize" {
			t.Errorf("span %q (%v) recorded without a tracer provider", s.Name(), s.SpanKind())
		}
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// spanTexts is every text of a span that reaches an exporter.
func spanTexts(s sdktrace.ReadOnlySpan) []string {
	out := []string{s.Name(), s.Status().Description}
	add := func(kvs []attribute.KeyValue) {
		for _, kv := range kvs {
			out = append(out, string(kv.Key)+"="+kv.Value.String())
		}
	}
	add(s.Attributes())
	for _, e := range s.Events() {
		out = append(out, e.Name)
		add(e.Attributes)
	}
	for _, l := range s.Links() {
		add(l.Attributes)
	}
	add(s.Resource().Attributes())
	return out
}

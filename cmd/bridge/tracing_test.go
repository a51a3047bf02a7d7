package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver records the OTLP/HTTP trace exports it receives.
type otlpReceiver struct {
	mu       sync.Mutex
	posts    int
	problems []string
	reqs     []*coltracepb.ExportTraceServiceRequest
}

func newOTLPReceiver(t *testing.T) (*httptest.Server, *otlpReceiver) {
	t.Helper()
	rc := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.posts++
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			rc.problems = append(rc.problems, fmt.Sprintf("%s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type")))
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			rc.problems = append(rc.problems, "body: "+err.Error())
		} else {
			rc.reqs = append(rc.reqs, &req)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	return srv, rc
}

// exported is one span as the receiver got it.
type exported struct {
	name, traceID, service string
	texts                  []string // every attribute as key=value
}

func (rc *otlpReceiver) spans() []exported {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	text := func(kvs []*commonpb.KeyValue) []string {
		var out []string
		for _, kv := range kvs {
			out = append(out, kv.Key+"="+kv.Value.String())
		}
		return out
	}
	var out []exported
	for _, req := range rc.reqs {
		for _, rs := range req.ResourceSpans {
			service := ""
			for _, kv := range rs.Resource.GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					e := exported{name: s.Name, traceID: hex.EncodeToString(s.TraceId), service: service}
					e.texts = append(e.texts, text(s.Attributes)...)
					for _, ev := range s.Events {
						e.texts = append(e.texts, text(ev.Attributes)...)
					}
					e.texts = append(e.texts, s.Status.GetMessage())
					out = append(out, e)
				}
			}
		}
	}
	return out
}

// TestTracingEndToEnd runs `bridge serve` with the OTEL_* variables beside
// BRIDGE_* ones, makes a feed request with a traceparent, shuts the bridge
// down, and reads what an OTLP/HTTP receiver got: the spans of the request,
// in the caller's trace, without the query or the credentials. Without
// the variables, or with OTEL_TRACES_EXPORTER=none, nothing is exported
// and the upstream sees no traceparent.
func TestTracingEndToEnd(t *testing.T) {
	const (
		traceID  = "0af7651916cd43dd8448eb211c80319c"
		parent   = "b7ad6b7169203331"
		password = "hunter2-pw"
		filter   = "zzsecretfilter"
	)
	cases := []struct {
		name    string
		env     func(recv string) map[string]string
		on      bool
		service string
	}{
		{"endpoint", func(recv string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": recv, "OTEL_SERVICE_NAME": "bridge-under-test", "BRIDGE_LOG_LEVEL": "debug"}
		}, true, "bridge-under-test"},
		{"traces endpoint", func(recv string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": recv + "/v1/traces", "BRIDGE_LOG_LEVEL": "debug"}
		}, true, "odata-bridge"},
		{"off", func(string) map[string]string {
			return map[string]string{"BRIDGE_LOG_LEVEL": "debug"}
		}, false, ""},
		{"exporter none", func(recv string) map[string]string {
			return map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": recv}
		}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
			recvSrv, rc := newOTLPReceiver(t)
			var mu sync.Mutex
			var traceparents []string
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				traceparents = append(traceparents, r.Header.Get("Traceparent"))
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"value":[]}`)
			}))
			defer up.Close()
			env := tc.env(recvSrv.URL)
			for k, v := range env {
				t.Setenv(k, v) // as a deployment would: the unknown-variable check reads the environment
			}
			s := startBridge(t, fmt.Sprintf("public_url: http://bridge.test\nsources:\n  - name: up\n    url: %s/\n    auth: basic-passthrough\n", up.URL), env)

			req, _ := http.NewRequest(http.MethodGet, s.addr+"/odata/up/Items?$filter="+url.QueryEscape("Name eq '"+filter+"'"), nil)
			req.SetBasicAuth("alice", password)
			req.Header.Set("Traceparent", "00-"+traceID+"-"+parent+"-01")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("feed: status %d", resp.StatusCode)
			}
			if err := s.stop(t); err != nil {
				t.Fatalf("run: %v", err)
			}

			mu.Lock()
			tps := append([]string(nil), traceparents...)
			mu.Unlock()
			if len(tps) != 1 {
				t.Fatalf("upstream calls = %d, want 1", len(tps))
			}
			rc.mu.Lock()
			posts, problems := rc.posts, rc.problems
			rc.mu.Unlock()
			if len(problems) > 0 {
				t.Errorf("receiver: %v", problems)
			}
			if !tc.on {
				if posts != 0 {
					t.Errorf("receiver got %d exports with tracing off", posts)
				}
				if tps[0] != "" {
					t.Errorf("upstream traceparent %q with tracing off, want none", tps[0])
				}
				return
			}
			if posts == 0 {
				t.Fatal("receiver got no export: the last spans were not flushed at shutdown")
			}
			if p := strings.Split(tps[0], "-"); len(p) != 4 || p[1] != traceID || p[2] == parent {
				t.Errorf("upstream traceparent %q, want trace %s under the bridge's client span", tps[0], traceID)
			}
			got := map[string]int{}
			basic := base64.StdEncoding.EncodeToString([]byte("alice:" + password))
			for _, sp := range rc.spans() {
				if sp.traceID != traceID {
					t.Errorf("span %q in trace %s, want %s", sp.name, sp.traceID, traceID)
				}
				if sp.service != tc.service {
					t.Errorf("span %q: service.name %q, want %q", sp.name, sp.service, tc.service)
				}
				got[sp.name]++
				for _, text := range append(sp.texts, sp.name) {
					for _, secret := range []string{filter, password, basic, "?"} {
						if strings.Contains(text, secret) {
							t.Errorf("span %q holds %q: %s", sp.name, secret, text)
						}
					}
				}
			}
			for _, name := range []string{"GET /odata/:source/*path", "connector.authorize", "GET"} {
				if got[name] != 1 {
					t.Errorf("spans named %q = %d, want 1 (all: %v)", name, got[name], got)
				}
			}
		})
	}
}

// TestTracingSettings: the OTEL_* values the bridge cannot honour stop it
// with exit code 2 instead of exporting nowhere.
func TestTracingSettings(t *testing.T) {
	cases := []struct {
		env  map[string]string
		on   bool
		code int
	}{
		{env: map[string]string{}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, code: 2},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, code: 2},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, code: 2},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
			tr, err := startTracing(context.Background(), func(k string) string { return tc.env[k] })
			if got := exitCode(err); got != tc.code || (err == nil) != (tc.code == 0) {
				t.Fatalf("err = %v (exit %d), want exit %d", err, got, tc.code)
			}
			if got := tr != nil; got != tc.on {
				t.Errorf("tracing on = %v, want %v", got, tc.on)
			}
			if tr != nil && tr.transport(http.DefaultTransport) == http.DefaultTransport {
				t.Error("tracing on, but the transport is not wrapped")
			}
			if tr == nil && tr.transport(http.DefaultTransport) != http.DefaultTransport {
				t.Error("tracing off, but the transport is wrapped")
			}
			orig := &http.Client{Timeout: time.Second}
			rc := tr.restClient(orig)
			if rc.Timeout != time.Second || orig.Transport != nil || (rc.Transport != nil) != tc.on {
				t.Errorf("REST client: timeout %v, transport %T (original's %T); want the timeout kept, wrapped only when on", rc.Timeout, rc.Transport, orig.Transport)
			}
			if err := tr.shutdown(); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
}

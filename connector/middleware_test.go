package connector

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAccessLogAndMetrics: one JSON line per request with the documented
// fields, and one request series per route, method and status, with
// unknown methods folded into OTHER.
func TestAccessLogAndMetrics(t *testing.T) {
	b := newBridge(t, nil)
	b.get(t, "/healthz", nil)
	for _, m := range []string{"BREW", "PROPFIND", "X1", "X2"} {
		req, _ := http.NewRequest(m, b.url+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	var line map[string]any
	for l := range strings.SplitSeq(b.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "request" && rec["method"] == "GET" && rec["path"] == "/healthz" {
			line = rec
		}
	}
	if line == nil {
		t.Fatalf("no access log line for GET /healthz in:\n%s", b.logs.String())
	}
	for _, k := range []string{"request_id", "status", "bytes", "duration", "client", "time", "level"} {
		if _, ok := line[k]; !ok {
			t.Errorf("access log line lacks %q: %v", k, line)
		}
	}
	if line["status"] != float64(200) {
		t.Errorf("status = %v, want 200", line["status"])
	}

	// /metrics is not on the public listener; MetricsHandler serves it on its own.
	if resp, _ := b.get(t, "/metrics", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the public handler: status %d, want 404", resp.StatusCode)
	}
	rec := httptest.NewRecorder()
	b.srv.Config.Handler.(*Server).MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `bridge_http_requests_total{method="GET",route="/healthz",status="200"} 1`) {
		t.Errorf("no GET /healthz series counting 1 in /metrics:\n%s", grepLines(body, "bridge_http_requests_total"))
	}
	if !strings.Contains(body, `method="OTHER"`) {
		t.Errorf("unknown methods not counted as OTHER:\n%s", grepLines(body, "bridge_http_requests_total"))
	}
	for _, m := range []string{"BREW", "PROPFIND", "X1", "X2"} {
		if strings.Contains(body, `method="`+m+`"`) {
			t.Errorf("method %s became a series of its own", m)
		}
	}
}

func grepLines(s, substr string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

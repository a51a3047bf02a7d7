package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

const testKey = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// started is a bridge process run in-process by run().
type started struct {
	addr    string
	pprof   string // the pprof listener's address, with --pprof
	metrics string // the metrics listener's address, with metrics_listen
	cancel  context.CancelFunc
	done    chan error
	out     *strings.Builder
}

// startBridge runs `bridge serve` with the YAML config and env, and waits
// for its listening line. flags are added to the command line.
func startBridge(t *testing.T, config string, env map[string]string, flags ...string) *started {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "bridge.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string { return env[k] }
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{cancel: cancel, done: make(chan error, 1), out: &strings.Builder{}}
	go func() {
		err := run(ctx, append([]string{"serve", "--config", path, "--listen", "127.0.0.1:0"}, flags...), getenv, pw)
		pw.Close()
		s.done <- err
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.out.WriteString(line + "\n")
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil {
				switch rec.Msg {
				case "pprof listening": // logged before "listening"
					s.pprof = "http://" + rec.Addr
				case "metrics listening": // logged before "listening"
					s.metrics = "http://" + rec.Addr
				case "listening":
					addr <- rec.Addr
				}
			}
		}
	}()
	select {
	case a := <-addr:
		s.addr = "http://" + a
	case err := <-s.done:
		t.Fatalf("bridge exited before listening: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("bridge did not start listening")
	}
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

func (s *started) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("bridge did not stop")
		return nil
	}
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestServeOnPortZero(t *testing.T) {
	s := startBridge(t, "public_url: http://bridge.test\n", nil)
	if got := status(t, s.addr+"/healthz"); got != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", got)
	}
	if got := status(t, s.addr+"/readyz"); got != http.StatusOK {
		t.Errorf("/readyz = %d, want 200 (memory store, no provider configured)", got)
	}
	if got := status(t, s.addr+"/metrics"); got != http.StatusNotFound {
		t.Errorf("/metrics on the public listener = %d, want 404", got)
	}
	if s.metrics != "" {
		t.Errorf("metrics listening at %s without metrics_listen", s.metrics)
	}
}

// TestMetricsListener: metrics_listen serves /metrics on a listener of its
// own; the public listener never does.
func TestMetricsListener(t *testing.T) {
	s := startBridge(t, "public_url: http://bridge.test\nmetrics_listen: 127.0.0.1:0\n", nil)
	if s.metrics == "" {
		t.Fatal("no metrics listening line")
	}
	status(t, s.addr+"/healthz")
	resp, err := http.Get(s.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `bridge_http_requests_total{method="GET",route="/healthz",status="200"}`) {
		t.Errorf("metrics listener: status %d, body lacks the /healthz series", resp.StatusCode)
	}
	if !strings.Contains(string(body), "go_goroutines") {
		t.Error("metrics listener lacks the Go collector")
	}
	if got := status(t, s.addr+"/metrics"); got != http.StatusNotFound {
		t.Errorf("/metrics on the public listener = %d, want 404", got)
	}
	if got := status(t, s.metrics+"/healthz"); got != http.StatusNotFound {
		t.Errorf("/healthz on the metrics listener = %d, want 404: it serves only /metrics", got)
	}
}

// TestPprofListener: --pprof serves the profiler on its own loopback
// listener, and the public listener never does.
func TestPprofListener(t *testing.T) {
	s := startBridge(t, "public_url: http://bridge.test\n", nil, "--pprof", "127.0.0.1:0")
	if s.pprof == "" {
		t.Fatal("no pprof listening line")
	}
	if got := status(t, s.pprof+"/debug/pprof/"); got != http.StatusOK {
		t.Errorf("pprof index = %d, want 200", got)
	}
	if got := status(t, s.pprof+"/debug/pprof/heap?debug=1"); got != http.StatusOK {
		t.Errorf("heap profile = %d, want 200", got)
	}
	if got := status(t, s.addr+"/debug/pprof/"); got != http.StatusNotFound {
		t.Errorf("pprof on the public listener = %d, want 404", got)
	}

	plain := startBridge(t, "public_url: http://bridge.test\n", nil)
	if plain.pprof != "" {
		t.Errorf("pprof listening at %s without --pprof", plain.pprof)
	}
}

func TestReadyzFollowsTheStore(t *testing.T) {
	mr := miniredis.RunT(t)
	s := startBridge(t, fmt.Sprintf("public_url: http://bridge.test\nredis: {url: \"redis://%s/0\"}\nencryption_keys: [%q]\n", mr.Addr(), testKey), nil)
	if got := status(t, s.addr+"/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz with Redis up = %d, want 200", got)
	}
	mr.Close()
	if got := status(t, s.addr+"/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %d, want 503", got)
	}
	if got := status(t, s.addr+"/healthz"); got != http.StatusOK {
		t.Errorf("/healthz with Redis down = %d, want 200: the process is alive", got)
	}
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for status(t, s.addr+"/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not recover after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"value":[]}`)
	}))
	defer upstream.Close()
	s := startBridge(t, fmt.Sprintf(`public_url: http://bridge.test
shutdown_timeout: 20s
sources:
  - name: slow
    url: %s/
    auth: basic-passthrough
`, upstream.URL), nil)

	type result struct {
		status int
		err    error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, s.addr+"/odata/slow/Things", nil)
		req.SetBasicAuth("user", "secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res <- result{status: resp.StatusCode}
	}()
	<-arrived
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop(t) }()
	// Give Shutdown time to close the listener, then let the upstream answer.
	for i := 0; i < 50; i++ {
		if _, err := http.Get(s.addr + "/healthz"); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	r := <-res
	if r.err != nil || r.status != http.StatusOK {
		t.Errorf("in-flight request during shutdown: status %d, err %v; want 200", r.status, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v after shutdown, want nil", err)
	}
	if _, err := http.Get(s.addr + "/healthz"); err == nil {
		t.Error("a request after shutdown was served")
	}
}

func TestRunExitCodes(t *testing.T) {
	var out strings.Builder
	err := run(context.Background(), []string{"serve", "--config", "/nonexistent/bridge.yaml"}, func(string) string { return "" }, &out)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Errorf("missing config file: %v, want exit code 2", err)
	}
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "10.0.0.1:6060", "127.0.0.1"} {
		out.Reset()
		err = run(context.Background(), []string{"serve", "--pprof", addr}, func(k string) string {
			return map[string]string{"BRIDGE_PUBLIC_URL": "http://bridge.test"}[k]
		}, &out)
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "--pprof") {
			t.Errorf("--pprof %s: %v, want exit code 2 naming --pprof", addr, err)
		}
	}
	err = run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, &out)
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Errorf("unknown command: %v, want exit code 2", err)
	}
	for _, cmd := range []string{"serve", "demo", "check-config", "connector", "version"} {
		out.Reset()
		if err := run(context.Background(), []string{cmd, "--help"}, func(string) string { return "" }, &out); err != nil || !strings.Contains(out.String(), "bridge "+cmd) {
			t.Errorf("%s --help: %v, %q", cmd, err, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"version"}, func(string) string { return "" }, &out); err != nil || !strings.HasPrefix(out.String(), "bridge ") {
		t.Errorf("version: %v %q", err, out.String())
	}
}

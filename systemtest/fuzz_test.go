package systemtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
	"github.com/odata-bridge/bridge/odata"
)

// FuzzHostileRequest sends fuzzed feed paths, query strings and
// Authorization values to a running bridge in front of an upstream that
// answers everything under its base with 200. Whatever the input, the
// bridge never answers with a 5xx, never dies, never lets a request leave
// the upstream's base and never lets one reach another host. Seeds are in
// testdata/fuzz/FuzzHostileRequest.
func FuzzHostileRequest(f *testing.F) {
	f.Add("Items", "$top=1", "")
	f.Add("../x", "", "Bearer x")
	f.Add("Items('a%2Fb')", "$filter=Name%20eq%20'%0d%0a'", "Basic eDpvYmtfeA==")

	world := startWorld(f, demo.Options{})
	var reached atomic.Int64
	sentinel := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
	}))
	f.Cleanup(sentinel.Close)
	var mu sync.Mutex
	var escaped []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.EscapedPath(), "/svc/") {
			mu.Lock()
			escaped = append(escaped, r.RequestURI)
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("OData-Version", odata.Version4)
		io.WriteString(w, `{"value":[]}`)
	}))
	f.Cleanup(up.Close)
	br := startBridge(f, bridgeConfig{World: world, Sources: []source{
		{Name: "echo", URL: up.URL + "/svc/", Auth: "none"},
		{Name: "user", URL: up.URL + "/svc/", Auth: "user"},
	}})
	addr := strings.TrimPrefix(br.URL, "http://")
	sentinelHost := strings.TrimPrefix(sentinel.URL, "http://")

	f.Fuzz(func(t *testing.T, path, query, authorization string) {
		path = strings.ReplaceAll(path, "SENTINEL", sentinelHost)
		for _, src := range []string{"echo", "user"} {
			target := "/odata/" + src + "/" + path
			if query != "" {
				target += "?" + query
			}
			req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", target, addr)
			if authorization != "" {
				req += "Authorization: " + authorization + "\r\n"
			}
			req += "\r\n"
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("the bridge does not accept connections: %v", err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, req)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					t.Errorf("%q: status %d", req, resp.StatusCode)
				}
			}
			conn.Close()
			if err != nil && !strings.Contains(err.Error(), "EOF") {
				t.Errorf("%q: %v", req, err)
			}
		}
		select {
		case <-br.done:
			t.Fatalf("the bridge exited: %s", lastLines(br.logText(t), 5))
		default:
		}
		if n := reached.Load(); n != 0 {
			t.Fatalf("a request reached the sentinel host (%d so far)", n)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(escaped) > 0 {
			t.Fatalf("requests left the upstream's base: %q", escaped)
		}
	})
}

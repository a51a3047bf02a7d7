package odata

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rawUpstream answers every connection with the bytes of respond, written as they are
// after the request head was read, then closes it: it sends what net/http's server
// would not (hop-by-hop headers, a body cut short).
func rawUpstream(t *testing.T, respond func(conn net.Conn, base string)) (base string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	base = "http://" + l.Addr().String() + "/svc/"
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				respond(conn, base)
			}()
		}
	}()
	return base
}

func TestRelayDropsHopByHopResponseHeaders(t *testing.T) {
	for _, path := range []string{"People", "Photos(1)/$value"} {
		t.Run(path, func(t *testing.T) {
			base := rawUpstream(t, func(conn net.Conn, base string) {
				body := `{"@odata.context":"` + base + `$metadata#People","value":[]}`
				io.WriteString(conn, "HTTP/1.1 200 OK\r\n"+
					"Content-Type: application/json\r\n"+
					"Connection: keep-alive, X-Hop-Private, x-other-hop\r\n"+
					"X-Hop-Private: secret\r\n"+
					"X-Other-Hop: 1\r\n"+
					"Keep-Alive: timeout=5, max=100\r\n"+
					"Proxy-Authenticate: Basic realm=\"upstream proxy\"\r\n"+
					"Proxy-Connection: keep-alive\r\n"+
					"Proxy-Anything: x\r\n"+
					"Upgrade: h2c\r\n"+
					"Te: trailers\r\n"+
					"Trailer: X-Checksum\r\n"+
					"Content-Language: en\r\n"+
					"Transfer-Encoding: chunked\r\n\r\n"+
					fmt.Sprintf("%x\r\n%s\r\n0\r\nX-Checksum: abc\r\n\r\n", len(body), body))
			})
			b := newBridge(t, Upstream{URL: base}, Options{}, nil)
			res, body, err := b.do(t, "GET", "/odata/s/"+path, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != 200 {
				t.Fatalf("status = %d, want 200; body %s", res.StatusCode, body)
			}
			for _, k := range []string{"Connection", "X-Hop-Private", "X-Other-Hop", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Proxy-Anything", "Upgrade", "Te", "Trailer"} {
				if got, ok := res.Header[k]; ok {
					t.Errorf("hop-by-hop header %s = %q reached the client", k, got)
				}
			}
			if len(res.Trailer) != 0 {
				t.Errorf("trailers %v reached the client", res.Trailer)
			}
			if got := res.Header.Get("Content-Language"); got != "en" {
				t.Errorf("Content-Language = %q, want en (an end-to-end header)", got)
			}
			want := `{"@odata.context":"` + publicBase + `$metadata#People","value":[]}`
			if strings.HasSuffix(path, "$value") {
				want = `{"@odata.context":"` + base + `$metadata#People","value":[]}`
			}
			if string(body) != want {
				t.Errorf("body = %s, want %s", body, want)
			}
		})
	}
}

func TestRelayUpstreamDeathTruncates(t *testing.T) {
	// The upstream promises more than it sends, in each framing; the client must see an
	// error, never a clean end, whether the relay rewrites the body or not. A chunked
	// upstream body is flushed as it comes, so the client holds the bytes sent before
	// the upstream died.
	const sent = `{"value":[{"ID":1},`
	tests := []struct {
		name, path, head, body string
		flushed                bool
	}{
		{"rewritten, Content-Length", "People", "Content-Length: 100000\r\n", sent, false},
		{"rewritten, chunked", "People", "Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n", len(sent), sent), true},
		{"passthrough, Content-Length", "Photos(1)/$value", "Content-Length: 100000\r\n", sent, false},
		{"passthrough, chunked", "Photos(1)/$value", "Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n", len(sent), sent), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := rawUpstream(t, func(conn net.Conn, _ string) {
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"+tt.head+"\r\n"+tt.body)
				// and the connection closes
			})
			b := newBridge(t, Upstream{URL: base}, Options{Registerer: prometheus.NewRegistry()}, nil)
			res, body, err := b.do(t, "GET", "/odata/s/"+tt.path, nil, nil)
			if err == nil {
				t.Fatalf("read the whole body without error (%d %q); want a truncated stream", res.StatusCode, body)
			}
			if !strings.HasPrefix(sent, string(body)) {
				t.Errorf("body = %q, want a prefix of %q", body, sent)
			}
			if tt.flushed {
				if res == nil || res.StatusCode != 200 || string(body) != sent || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("got %v, %q, %v; want 200, %q and an unexpected EOF", res, body, err, sent)
				}
			}
			if got := counterValue(t, b.rl.metrics.aborts.WithLabelValues("s")); got != 1 {
				t.Errorf("aborted metric = %v, want 1", got)
			}
		})
	}
}

func TestRelayClientGoneStopsUpstreamRead(t *testing.T) {
	for _, path := range []string{"People", "Photos(1)/$value"} {
		t.Run(path, func(t *testing.T) {
			stopped := make(chan string, 1)
			quit := make(chan struct{}) // ends the feed once the test is over, pass or fail
			u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				chunk := []byte(strings.Repeat(`{"ID":1},`, 100))
				io.WriteString(w, `{"value":[`)
				for {
					if _, err := w.Write(chunk); err != nil {
						stopped <- "write failed"
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						stopped <- "request cancelled"
						return
					case <-quit:
						return
					case <-time.After(time.Millisecond):
					}
				}
			})
			b := newBridge(t, Upstream{URL: u.base()}, Options{Registerer: prometheus.NewRegistry()}, nil)
			t.Cleanup(func() { close(quit) }) // before the servers close
			res, err := b.client.Get(b.URL + "/odata/s/" + path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(res.Body, make([]byte, 4096)); err != nil {
				t.Fatalf("reading the start of the stream: %v", err)
			}
			res.Body.Close() // mid-stream: closes the connection
			select {
			case how := <-stopped:
				t.Logf("upstream stopped: %s", how)
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream is still being read 10s after the client went away")
			}
		})
	}
}

// TestRelayNoBodyWhereNoneIsAllowed serves into a ResponseRecorder, which keeps any byte
// the relay writes (net/http's server would silently drop them): HEAD, 204 and 304 must
// get none, gzip or not.
func TestRelayNoBodyWhereNoneIsAllowed(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
		w.Header().Set("ETag", `W/"7"`)
		switch {
		case strings.HasSuffix(r.URL.Path, "/Gone"):
			w.WriteHeader(http.StatusNoContent)
		case r.Header.Get("If-None-Match") == `W/"7"`:
			w.WriteHeader(http.StatusNotModified)
		default:
			io.WriteString(w, `{"@odata.context":"`+u.base()+`$metadata#People","value":[]}`)
		}
	})
	rl, err := NewRelay([]Upstream{{Name: "s", URL: u.base(), PublicBase: publicBase}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path string
		hdr                http.Header
		status             int
	}{
		{"HEAD", "HEAD", "People", nil, 200},
		{"HEAD gzip", "HEAD", "People", http.Header{"Accept-Encoding": {"gzip"}}, 200},
		{"HEAD $value", "HEAD", "Photos(1)/$value", http.Header{"Accept-Encoding": {"gzip"}}, 200},
		{"204", "GET", "Gone", nil, 204},
		{"204 gzip", "GET", "Gone", http.Header{"Accept-Encoding": {"gzip"}}, 204},
		{"304 gzip", "GET", "People", http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {`W/"7"`}}, 304},
		{"304 $value", "GET", "Photos(1)/$value", http.Header{"If-None-Match": {`W/"7"`}}, 304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/odata/s/"+tt.path, nil)
			for k, v := range tt.hdr {
				r.Header[k] = v
			}
			w := httptest.NewRecorder()
			rl.Serve(w, r, "s", tt.path, "", nil)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %q", w.Code, tt.status, w.Body)
			}
			if w.Body.Len() != 0 {
				t.Errorf("body = %q, want none", w.Body)
			}
			if got := w.Header().Get("ETag"); got != `W/"7"` {
				t.Errorf("ETag = %q, want the upstream's", got)
			}
		})
	}
}

func TestRelayHeaderTimeoutEitherTransport(t *testing.T) {
	// The relay's own transport bounds the wait for headers itself; a Transport given in
	// Options is timed by the relay. A $batch POST is timed by the relay on either.
	release := make(chan struct{})
	defer close(release)
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	for _, tt := range []struct {
		name      string
		transport http.RoundTripper
		method    string
	}{
		{"own transport, GET", nil, "GET"},
		{"given transport, GET", &http.Transport{}, "GET"},
		{"own transport, $batch", nil, "POST"},
		{"given transport, $batch", &http.Transport{}, "POST"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tr, ok := tt.transport.(*http.Transport); ok {
				t.Cleanup(tr.CloseIdleConnections)
			}
			const timeout = 50 * time.Millisecond
			b := newBridge(t, Upstream{URL: u.base(), HeaderTimeout: timeout, Batch: true}, Options{Transport: tt.transport}, nil)
			target, body := "/odata/s/Slow", io.Reader(nil)
			if tt.method == "POST" {
				target, body = "/odata/s/$batch", strings.NewReader("--b\r\n--b--\r\n")
			}
			start := time.Now()
			res, _, err := b.do(t, tt.method, target, http.Header{"Content-Type": {"multipart/mixed;boundary=b"}}, body)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != http.StatusGatewayTimeout {
				t.Errorf("status = %d, want 504", res.StatusCode)
			}
			if took := time.Since(start); took < timeout {
				t.Errorf("504 after %v, before the header timeout %v", took, timeout)
			}
			if got := <-b.errs; !errors.Is(got, ErrUpstreamTimeout) {
				t.Errorf("error = %v, want ErrUpstreamTimeout", got)
			}
		})
	}
}

func TestRelayStreamedHeadersLeaveAtOnce(t *testing.T) {
	// An upstream that sends its headers and then thinks: the client has them before
	// the first body byte exists.
	gotHeaders := make(chan struct{})
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-gotHeaders:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, `{"value":[]}`)
	})
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
			req, _ := http.NewRequest("GET", b.URL+"/odata/s/People", nil)
			if gz {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := b.client.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatalf("no headers while the upstream withholds its body: %v", err)
			}
			defer res.Body.Close()
			gotHeaders <- struct{}{}
			if _, err := io.ReadAll(res.Body); err != nil {
				t.Errorf("body: %v", err)
			}
		})
	}
}

func TestRelayNoDefaultUserAgentUpstream(t *testing.T) {
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) { writeJSON(w, `{}`) })
	b := newBridge(t, Upstream{URL: u.base()}, Options{}, nil)
	for _, tt := range []struct{ sent, want string }{{"", ""}, {"PowerBI", "PowerBI"}} {
		// An empty User-Agent keeps net/http's client from sending its own.
		if _, _, err := b.do(t, "GET", "/odata/s/People", http.Header{"User-Agent": {tt.sent}}, nil); err != nil {
			t.Fatal(err)
		}
		if got := u.last().Header.Get("User-Agent"); got != tt.want {
			t.Errorf("caller's User-Agent %q: upstream got %q, want %q", tt.sent, got, tt.want)
		}
	}
}

func TestRemoveHopByHop(t *testing.T) {
	h := http.Header{
		"Connection":         {"close, X-A", " x-b ,"},
		"X-A":                {"1"},
		"X-B":                {"2"},
		"Keep-Alive":         {"timeout=5"},
		"Proxy-Authenticate": {"Basic"},
		"Proxy-Connection":   {"keep-alive"},
		"Te":                 {"trailers"},
		"Trailer":            {"X-Sum"},
		"Transfer-Encoding":  {"chunked"},
		"Upgrade":            {"websocket"},
		"Content-Type":       {"application/json"},
		"Odata-Version":      {"4.0"},
		"Proxyish":           {"kept: no dash"},
	}
	removeHopByHop(h)
	want := http.Header{"Content-Type": {"application/json"}, "Odata-Version": {"4.0"}, "Proxyish": {"kept: no dash"}}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Errorf("after removeHopByHop: %v, want %v", h, want)
	}
}

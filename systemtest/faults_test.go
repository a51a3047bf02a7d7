package systemtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
	"github.com/odata-bridge/bridge/odata"
)

// idpMode is what the fault proxy does with a token request.
type idpMode int

const (
	idpPass   idpMode = iota // forward it
	idpSlow                  // forward it after idpProxy.delay
	idpFail                  // answer 500 server_error
	idpRefuse                // accept no connection at all
)

// idpProxy stands in front of the demo provider's token endpoint and
// injects faults into refresh requests; sign-ins (authorization_code) always
// pass, so a test can sign in while refreshes fail.
type idpProxy struct {
	target string // the provider's token endpoint
	addr   string

	mu          sync.Mutex
	mode        idpMode
	delay       time.Duration
	revokedSubs map[string]bool // refresh tokens of these subjects get invalid_grant
	srv         *http.Server

	refreshes atomic.Int64 // refresh requests that reached the proxy
}

// URL is the token endpoint the bridge is configured with.
func (p *idpProxy) URL() string { return "http://" + p.addr + "/token" }

func startIdPProxy(t testing.TB, w *demo.World) *idpProxy {
	t.Helper()
	p := &idpProxy{target: w.OAuth2Config("").Endpoint.TokenURL, revokedSubs: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.setMode(idpPass); p.stop() })
	return p
}

func (p *idpProxy) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(p.handle)}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go srv.Serve(ln)
}

func (p *idpProxy) stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// setMode switches the fault. idpRefuse closes the listening socket, so
// connections are refused; leaving it listens again on the same port.
func (p *idpProxy) setMode(m idpMode) {
	p.mu.Lock()
	was := p.mode
	p.mode = m
	p.mu.Unlock()
	switch {
	case m == idpRefuse && was != idpRefuse:
		p.stop()
	case m != idpRefuse && was == idpRefuse:
		var ln net.Listener
		var err error
		for range 50 {
			if ln, err = net.Listen("tcp", p.addr); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			panic(fmt.Sprintf("the identity provider proxy cannot listen on %s again: %v", p.addr, err))
		}
		p.serve(ln)
	}
}

func (p *idpProxy) setDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// revoke makes the provider refuse every refresh token of subject with
// invalid_grant, as when an administrator disables the account.
func (p *idpProxy) revoke(subject string) {
	p.mu.Lock()
	p.revokedSubs[subject] = true
	p.mu.Unlock()
}

// jwtSubject reads the sub claim of a JWT without verifying it.
func jwtSubject(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	json.Unmarshal(raw, &c)
	return c.Sub
}

func (p *idpProxy) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	form, _ := url.ParseQuery(string(body))
	if form.Get("grant_type") == "refresh_token" {
		p.refreshes.Add(1)
		p.mu.Lock()
		mode, delay, revoked := p.mode, p.delay, p.revokedSubs[jwtSubject(form.Get("refresh_token"))]
		p.mu.Unlock()
		switch {
		case revoked:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant","error_description":"the account is disabled"}`)
			return
		case mode == idpFail:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":"server_error"}`)
			return
		case mode == idpSlow:
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
	}
	out, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, p.target, bytes.NewReader(body))
	out.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// faultUpstream is an OData v4 upstream whose paths fail on purpose.
type faultUpstream struct {
	srv *httptest.Server

	mu      sync.Mutex
	hits    map[string]int // by path and the n query parameter
	stale   string         // the Authorization that /svc/Renewed refuses
	escaped []string       // requests outside /svc/: must never happen
}

func startFaultUpstream(t testing.TB) *faultUpstream {
	t.Helper()
	u := &faultUpstream{hits: map[string]int{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.handle))
	t.Cleanup(u.srv.Close)
	return u
}

// Base is the source URL of the upstream's service.
func (u *faultUpstream) Base() string { return u.srv.URL + "/svc/" }

func (u *faultUpstream) count(key string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits[key]
}

func (u *faultUpstream) escapes() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.escaped...)
}

func (u *faultUpstream) writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
	w.Header().Set("OData-Version", odata.Version4)
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (u *faultUpstream) handle(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Path + "?" + r.URL.Query().Get("n")
	u.mu.Lock()
	u.hits[key]++
	n := u.hits[key]
	if !strings.HasPrefix(r.URL.EscapedPath(), "/svc/") {
		u.escaped = append(u.escaped, r.Method+" "+r.RequestURI)
	}
	u.mu.Unlock()
	switch r.URL.Path {
	case "/svc/":
		u.writeJSON(w, 200, `{"@odata.context":"`+u.Base()+`$metadata","value":[{"name":"Items","url":"Items"}]}`)
	case "/svc/Items":
		u.writeJSON(w, 200, `{"@odata.context":"`+u.Base()+`$metadata#Items","value":[{"ID":1},{"ID":2}],"@odata.nextLink":"`+u.Base()+`Items?$skiptoken=2"}`)
	case "/svc/Slow":
		select { // no headers until the client gives up
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	case "/svc/Drop":
		w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
		w.Header().Set("OData-Version", odata.Version4)
		w.WriteHeader(200)
		io.WriteString(w, `{"@odata.context":"`+u.Base()+`$metadata#Items","value":[`)
		for i := range 2000 {
			fmt.Fprintf(w, `{"ID":%d,"Name":"row %d"},`, i, i)
		}
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection drops mid-body
	case "/svc/Unauthorized":
		if n == 1 {
			u.writeJSON(w, 401, `{"error":{"code":"401","message":"token expired"}}`)
			return
		}
		u.writeJSON(w, 200, `{"value":[{"ID":1}]}`)
	case "/svc/AlwaysUnauthorized":
		u.writeJSON(w, 401, `{"error":{"code":"401","message":"no"}}`)
	case "/svc/Renewed":
		u.mu.Lock()
		if u.stale == "" {
			u.stale = r.Header.Get("Authorization")
		}
		stale := u.stale == r.Header.Get("Authorization")
		u.mu.Unlock()
		if stale {
			u.writeJSON(w, 401, `{"error":{"code":"401","message":"token revoked"}}`)
			return
		}
		u.writeJSON(w, 200, `{"value":[{"ID":1}]}`)
	default:
		u.writeJSON(w, 404, `{"error":{"code":"404","message":"no such resource"}}`)
	}
}

// deadURL is the base URL of a loopback port where nothing listens.
func deadURL(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("http://127.0.0.1:%d/svc/", freePort(t))
}

var errNoResponse = errors.New("no response")

// readAborted reads a response body and reports whether the stream ended
// with an error rather than cleanly.
func readAborted(ctx context.Context, rawURL, auth string) (status int, body []byte, aborted bool, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	req.Header.Set("Authorization", auth)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, false, fmt.Errorf("%w: %v", errNoResponse, err)
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(resp.Body)
	return resp.StatusCode, body, rerr != nil, nil
}

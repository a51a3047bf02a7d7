package odata

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// userAuth sends the caller's name as its upstream token, like a per-user provider token.
type userAuth string

func (a userAuth) Authorize(_ context.Context, out *http.Request, _ bool) error {
	out.Header.Set("Authorization", "Bearer "+string(a))
	return nil
}

// accelBridge mounts a relay with one source s the way the connector does, with the
// caller named by X-Test-User and authorized upstream as that user.
type accelBridge struct {
	*httptest.Server
	rl  *Relay
	reg *prometheus.Registry
}

func newAccelBridge(t *testing.T, src Upstream, opts Options) *accelBridge {
	t.Helper()
	src.Name = "s"
	if src.PublicBase == "" {
		src.PublicBase = publicBase
	}
	b := &accelBridge{reg: prometheus.NewRegistry()}
	opts.Registerer = b.reg
	rl, err := NewRelay([]Upstream{src}, opts)
	if err != nil {
		t.Fatalf("NewRelay: %v", err)
	}
	b.rl = rl
	feed, _ := rl.Feed("s")
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.EscapedPath(), "/odata/s/")
		user := r.Header.Get("X-Test-User")
		var auth Authorizer
		if user != "" {
			auth = userAuth(user)
		}
		feed.ServeFeed(w, r, path, user, auth)
	}))
	t.Cleanup(func() { b.Close(); rl.Close() })
	return b
}

// get fetches target (a path under the bridge) as user, decompressing a gzip body.
func (b *accelBridge) get(t *testing.T, method, user, target string, hdr http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, b.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("X-Test-User", user)
	res, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatalf("%s %s as %q: %v", method, target, user, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, target, err)
	}
	if res.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return res.StatusCode, res.Header, body
}

// metric reads the value of one series of the bridge's registry (0 when absent).
func (b *accelBridge) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// echoUpstream answers every request with a JSON document that names the caller's
// credential and the request, so a body shows whose request produced it.
func echoUpstream(t *testing.T, status int) *upstream {
	return newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header()["OData-Version"] = []string{"4.0"}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"@odata.context":"%s$metadata#Items","auth":%q,"url":%q,"n":%d}`,
			u.base(), r.Header.Get("Authorization"), r.URL.RequestURI(), u.hits.Load())
	})
}

func TestRepeatsWithinTTLCostOneUpstreamRequest(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		status   int
		hdr      http.Header
		repeat   time.Duration
		wantHits int64
	}{
		{name: "GET 200", method: "GET", status: 200, repeat: time.Minute, wantHits: 1},
		{name: "GET 200, gzip", method: "GET", status: 200, hdr: http.Header{"Accept-Encoding": {"gzip"}}, repeat: time.Minute, wantHits: 1},
		{name: "GET 404 is not kept", method: "GET", status: 404, repeat: time.Minute, wantHits: 3},
		{name: "HEAD is not kept", method: "HEAD", status: 200, repeat: time.Minute, wantHits: 3},
		{name: "conditional GET is not kept", method: "GET", status: 200, hdr: http.Header{"If-None-Match": {`"x"`}}, repeat: time.Minute, wantHits: 3},
		{name: "repeat_ttl 0", method: "GET", status: 200, wantHits: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := echoUpstream(t, tt.status)
			b := newAccelBridge(t, Upstream{URL: u.base(), RepeatTTL: tt.repeat}, Options{})
			var first []byte
			for i := range 3 {
				status, h, body := b.get(t, tt.method, "alice", "/odata/s/Items?$top=2", tt.hdr)
				if status != tt.status {
					t.Fatalf("request %d: status = %d, want %d", i, status, tt.status)
				}
				if got := h.Get("Vary"); got != "Accept-Encoding" {
					t.Errorf("request %d: Vary = %q", i, got)
				}
				if i == 0 {
					first = body
				} else if tt.wantHits == 1 && !bytes.Equal(body, first) {
					t.Errorf("request %d: body = %s, want the first one's %s", i, body, first)
				}
			}
			if got := u.hits.Load(); got != tt.wantHits {
				t.Errorf("upstream hits = %d, want %d", got, tt.wantHits)
			}
			if tt.wantHits == 1 {
				if want := `{"@odata.context":"` + publicBase + `$metadata#Items","auth":"Bearer alice","url":"/svc/Items?$top=2","n":1}`; string(first) != want {
					t.Errorf("body = %s, want %s", first, want)
				}
				if got := b.metric(t, "bridge_relay_repeats_total", "source", "s"); got != 2 {
					t.Errorf("repeats = %v, want 2", got)
				}
				if got := b.metric(t, "bridge_relay_held_bytes"); got != float64(len(first)) {
					t.Errorf("held bytes = %v, want %d", got, len(first))
				}
			}
		})
	}
}

func TestRepeatExpires(t *testing.T) {
	u := echoUpstream(t, 200)
	b := newAccelBridge(t, Upstream{URL: u.base(), RepeatTTL: 50 * time.Millisecond}, Options{})
	b.get(t, "GET", "alice", "/odata/s/Items", nil)
	time.Sleep(150 * time.Millisecond)
	if got := b.metric(t, "bridge_relay_held_bytes"); got != 0 {
		t.Errorf("held bytes after the TTL = %v, want 0", got)
	}
	b.get(t, "GET", "alice", "/odata/s/Items", nil)
	if got := u.hits.Load(); got != 2 {
		t.Errorf("upstream hits = %d, want 2", got)
	}
}

func TestRepeatKeyVariesWithRepresentation(t *testing.T) {
	u := echoUpstream(t, 200)
	b := newAccelBridge(t, Upstream{URL: u.base(), RepeatTTL: time.Minute}, Options{})
	for _, hdr := range []http.Header{
		nil,
		{"Accept": {"application/json;odata.metadata=full"}},
		{"Odata-Maxversion": {"4.0"}},
		{"Maxdataserviceversion": {"3.0"}},
		{"Prefer": {"odata.maxpagesize=10"}},
	} {
		b.get(t, "GET", "alice", "/odata/s/Items", hdr)
	}
	b.get(t, "GET", "alice", "/odata/s/Items?$top=1", nil)
	if got := u.hits.Load(); got != 6 {
		t.Errorf("upstream hits = %d, want 6 (each representation and query its own)", got)
	}
	// The same query with an equivalent escape is the same request.
	b.get(t, "GET", "alice", "/odata/s/Items?%24top=1", nil)
	if got := u.hits.Load(); got != 6 {
		t.Errorf("upstream hits = %d, want 6 (%%24top is $top)", got)
	}
}

// gateUpstream holds every response until release is closed.
func gateUpstream(t *testing.T, release chan struct{}) *upstream {
	return newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"auth":%q,"value":[]}`, r.Header.Get("Authorization"))
	})
}

func TestConcurrentIdenticalRequestsJoinOne(t *testing.T) {
	for _, repeat := range []time.Duration{time.Minute, 0} {
		t.Run(fmt.Sprint("repeat_ttl ", repeat), func(t *testing.T) {
			release := make(chan struct{})
			u := gateUpstream(t, release)
			// Read-ahead alone shares requests in flight too.
			b := newAccelBridge(t, Upstream{URL: u.base(), RepeatTTL: repeat, ReadAhead: 1}, Options{})
			const n = 6
			bodies := make([][]byte, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { _, _, bodies[i] = b.get(t, "GET", "alice", "/odata/s/Items", nil) })
			}
			waitFor(t, func() bool { return u.hits.Load() == 1 })
			time.Sleep(200 * time.Millisecond) // the others reach the flight
			close(release)
			wg.Wait()
			if got := u.hits.Load(); got != 1 {
				t.Errorf("upstream hits = %d, want 1", got)
			}
			for i, body := range bodies {
				if string(body) != `{"auth":"Bearer alice","value":[]}` {
					t.Errorf("client %d got %s", i, body)
				}
			}
			joined := b.metric(t, "bridge_relay_joined_total", "source", "s")
			if joined != n-1 {
				t.Errorf("joined = %v, want %d", joined, n-1)
			}
		})
	}
}

func TestCallersNeverShare(t *testing.T) {
	release := make(chan struct{})
	u := gateUpstream(t, release)
	b := newAccelBridge(t, Upstream{URL: u.base(), RepeatTTL: time.Minute, ReadAhead: 1}, Options{})
	users := []string{"alice", "bob", "carol"}
	bodies := make([][]byte, len(users))
	var wg sync.WaitGroup
	for i, user := range users {
		wg.Go(func() { _, _, bodies[i] = b.get(t, "GET", user, "/odata/s/Items", nil) })
	}
	waitFor(t, func() bool { return u.hits.Load() == int64(len(users)) })
	close(release)
	wg.Wait()
	for i, user := range users {
		// In flight together, then kept: each caller only ever gets its own bytes.
		_, _, again := b.get(t, "GET", user, "/odata/s/Items", nil)
		want := `{"auth":"Bearer ` + user + `","value":[]}`
		if string(bodies[i]) != want || string(again) != want {
			t.Errorf("%s got %s and %s, want %s", user, bodies[i], again, want)
		}
	}
	if got := u.hits.Load(); got != int64(len(users)) {
		t.Errorf("upstream hits = %d, want %d (one per caller)", got, len(users))
	}
	// No user: nothing is shared or kept.
	b.get(t, "GET", "", "/odata/s/Items", nil)
	b.get(t, "GET", "", "/odata/s/Items", nil)
	if got := u.hits.Load(); got != int64(len(users))+2 {
		t.Errorf("upstream hits = %d, want %d", got, len(users)+2)
	}
}

func TestForgetDropsACallersEntriesAtOnce(t *testing.T) {
	u := echoUpstream(t, 200)
	b := newAccelBridge(t, Upstream{URL: u.base(), RepeatTTL: time.Hour}, Options{})
	_, _, alice := b.get(t, "GET", "alice", "/odata/s/Items", nil)
	_, _, bob := b.get(t, "GET", "bob", "/odata/s/Items", nil)
	if got := b.metric(t, "bridge_relay_held_bytes"); got != float64(len(alice)+len(bob)) {
		t.Fatalf("held bytes = %v, want %d", got, len(alice)+len(bob))
	}
	feed, _ := b.rl.Feed("s")
	feed.Forget(func(user string) bool { return user == "alice" })
	if got := b.metric(t, "bridge_relay_held_bytes"); got != float64(len(bob)) {
		t.Errorf("held bytes after forgetting alice = %v, want bob's %d", got, len(bob))
	}
	b.get(t, "GET", "alice", "/odata/s/Items", nil)
	b.get(t, "GET", "bob", "/odata/s/Items", nil)
	if got := u.hits.Load(); got != 3 {
		t.Errorf("upstream hits = %d, want 3 (alice again, bob kept)", got)
	}
}

func TestForgetDuringFlightKeepsNothing(t *testing.T) {
	release := make(chan struct{})
	u := gateUpstream(t, release)
	b := newAccelBridge(t, Upstream{URL: u.base(), RepeatTTL: time.Hour}, Options{})
	done := make(chan []byte)
	go func() { _, _, body := b.get(t, "GET", "alice", "/odata/s/Items", nil); done <- body }()
	waitFor(t, func() bool { return u.hits.Load() == 1 })
	b.rl.Forget(func(user string) bool { return user == "alice" })
	close(release)
	if body := <-done; string(body) != `{"auth":"Bearer alice","value":[]}` {
		t.Errorf("body = %s", body)
	}
	b.get(t, "GET", "alice", "/odata/s/Items", nil)
	if got := u.hits.Load(); got != 2 {
		t.Errorf("upstream hits = %d, want 2: a response in flight when its caller was forgotten is not kept", got)
	}
}

// pagedUpstream serves Items in pages of format, each page naming the next one until
// last; fail decides whether to fail a request for a page (before its headers).
type pagedUpstream struct {
	*upstream
	mu    sync.Mutex
	auths map[string][]string // page → Authorization of each request
}

func newPagedUpstream(t *testing.T, format string, last int, fail func(page, n int) bool) *pagedUpstream {
	p := &pagedUpstream{auths: map[string][]string{}}
	p.upstream = newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		page := r.URL.Query().Get("$skiptoken")
		p.mu.Lock()
		p.auths[page] = append(p.auths[page], r.Header.Get("Authorization"))
		n := len(p.auths[page])
		p.mu.Unlock()
		k, _ := strconv.Atoi(page)
		if fail != nil && fail(k, n) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		next := ""
		if k < last {
			next = fmt.Sprintf("%sItems?$skiptoken=%d", u.base(), k+1)
		}
		w.Header().Set("Content-Type", "application/json")
		switch format {
		case "v4":
			w.Header()["OData-Version"] = []string{"4.0"}
			fmt.Fprintf(w, `{"@odata.context":"%s$metadata#Items","value":[{"Id":%d,"Orders@odata.nextLink":"%sItems(%d)/Orders?$skiptoken=9"}]`, u.base(), k, u.base(), k)
			if next != "" {
				fmt.Fprintf(w, `,"@odata.nextLink":"%s"`, strings.ReplaceAll(next, "/", `\/`))
			}
			io.WriteString(w, "}")
		case "v3":
			fmt.Fprintf(w, `{"odata.metadata":"%s$metadata#Items","value":[{"Id":%d}]`, u.base(), k)
			if next != "" {
				fmt.Fprintf(w, `,"odata.nextLink":"%s"`, strings.ReplaceAll(next, "$", `\u0024`))
			}
			io.WriteString(w, "}")
		case "v2":
			fmt.Fprintf(w, `{"d":{"results":[{"Id":%d}]`, k)
			if next != "" {
				fmt.Fprintf(w, `,"__next":"%s"`, next)
			}
			io.WriteString(w, "}}")
		case "atom":
			w.Header().Set("Content-Type", "application/atom+xml;type=feed")
			fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><feed xml:base="%s"><entry><id>%sItems(%d)</id></entry>`, u.base(), u.base(), k)
			if next != "" {
				fmt.Fprintf(w, `<link rel="next" href="%s&amp;x=1" />`, next)
			}
			io.WriteString(w, "</feed>")
		case "relative":
			w.Header()["OData-Version"] = []string{"4.0"}
			fmt.Fprintf(w, `{"value":[{"Id":%d}]`, k)
			if next != "" {
				fmt.Fprintf(w, `,"@odata.nextLink":"Items?$skiptoken=%d"`, k+1)
			}
			io.WriteString(w, "}")
		}
	})
	return p
}

// requests is how many requests reached the upstream for a page, and with what credentials.
func (p *pagedUpstream) requests(page int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.auths[strconv.Itoa(page)]...)
}

// nextOf extracts the bridge path of the next link of a relayed page, as a client reads it.
func nextOf(t *testing.T, body []byte) string {
	t.Helper()
	link, ok := findNext(body)
	if !ok {
		return ""
	}
	if !strings.HasPrefix(link, "http") {
		return "/odata/s/" + link
	}
	rest, ok := strings.CutPrefix(link, publicBase)
	if !ok {
		t.Fatalf("next link %q is not on the bridge", link)
	}
	return "/odata/s/" + rest
}

func TestReadAheadServesTheNextPage(t *testing.T) {
	for _, format := range []string{"v4", "v3", "v2", "atom", "relative"} {
		t.Run(format, func(t *testing.T) {
			const last = 3
			up := newPagedUpstream(t, format, last, nil)
			direct := newAccelBridge(t, Upstream{URL: up.base()}, Options{})
			b := newAccelBridge(t, Upstream{URL: up.base(), RepeatTTL: time.Minute, ReadAhead: 1}, Options{})
			target := "/odata/s/Items?$skiptoken=0"
			var first []byte
			for page := 0; page <= last; page++ {
				if page > 0 {
					// The page was read ahead, with alice's credentials, before she asked.
					waitFor(t, func() bool { return len(up.requests(page)) >= 1 })
				}
				_, _, body := b.get(t, "GET", "alice", target, nil)
				if page == 0 {
					first = body
				}
				if got := up.requests(page); len(got) != 1 || got[0] != "Bearer alice" {
					t.Fatalf("page %d: upstream requests %q, want one with alice's token", page, got)
				}
				// Byte for byte what the relay sends without read-ahead.
				_, _, want := direct.get(t, "GET", "alice", target, nil)
				if !bytes.Equal(body, want) {
					t.Errorf("page %d = %s, want %s", page, body, want)
				}
				target = nextOf(t, body)
				if page < last && target == "" {
					t.Fatalf("page %d has no next link: %s", page, body)
				}
			}
			if got := b.metric(t, "bridge_relay_read_ahead_pages_total", "source", "s", "result", "used"); got != last {
				t.Errorf("read-ahead pages used = %v, want %d", got, last)
			}
			// The client's own first page stays for repeats; a page read ahead goes
			// once its client has it.
			if got := b.metric(t, "bridge_relay_held_bytes"); got != float64(len(first)) {
				t.Errorf("held bytes = %v, want the first page's %d", got, len(first))
			}
		})
	}
}

func TestReadAheadDepth(t *testing.T) {
	const last = 6
	up := newPagedUpstream(t, "v4", last, nil)
	b := newAccelBridge(t, Upstream{URL: up.base(), ReadAhead: 3}, Options{})
	b.get(t, "GET", "alice", "/odata/s/Items?$skiptoken=0", nil)
	waitFor(t, func() bool { return len(up.requests(3)) == 1 })
	time.Sleep(100 * time.Millisecond)
	if got := up.requests(4); len(got) != 0 {
		t.Errorf("page 4 requested %d times, want 0: read_ahead 3 reads three pages ahead", len(got))
	}
}

func TestReadAheadFailureReachesNobody(t *testing.T) {
	tests := []struct {
		name string
		fail func(page, n int) bool
	}{
		{"503 on the read-ahead", func(page, n int) bool { return page == 1 && n == 1 }},
		{"503 always", func(page, n int) bool { return page == 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newPagedUpstream(t, "v4", 2, tt.fail)
			b := newAccelBridge(t, Upstream{URL: up.base(), RepeatTTL: time.Minute, ReadAhead: 1}, Options{})
			_, _, body := b.get(t, "GET", "alice", "/odata/s/Items?$skiptoken=0", nil)
			waitFor(t, func() bool { return len(up.requests(1)) == 1 })
			time.Sleep(50 * time.Millisecond)
			status, _, body := b.get(t, "GET", "alice", nextOf(t, body), nil)
			// The client's own request went upstream and got what the upstream says now.
			if got := up.requests(1); len(got) != 2 {
				t.Errorf("page 1 requested %d times, want 2", len(got))
			}
			wantStatus := 200
			if tt.fail(1, 2) {
				wantStatus = 503
			}
			if status != wantStatus {
				t.Errorf("status = %d (%s), want %d", status, body, wantStatus)
			}
			if got := b.metric(t, "bridge_relay_read_ahead_pages_total", "source", "s", "result", "used"); got != 0 {
				t.Errorf("read-ahead pages used = %v, want 0", got)
			}
		})
	}
}

func TestReadAheadWaitsInFlight(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	up := newPagedUpstream(t, "v4", 2, func(page, n int) bool {
		if page == 1 {
			<-release
		}
		return false
	})
	b := newAccelBridge(t, Upstream{URL: up.base(), ReadAhead: 1}, Options{})
	_, _, body := b.get(t, "GET", "alice", "/odata/s/Items?$skiptoken=0", nil)
	waitFor(t, func() bool { return len(up.requests(1)) == 1 })
	go func() {
		time.Sleep(100 * time.Millisecond)
		once.Do(func() { close(release) })
	}()
	status, _, _ := b.get(t, "GET", "alice", nextOf(t, body), nil)
	if status != 200 {
		t.Errorf("status = %d", status)
	}
	if got := up.requests(1); len(got) != 1 {
		t.Errorf("page 1 requested %d times, want 1: the client joins the read-ahead", len(got))
	}
	// Read-ahead alone keeps no page once its client has it.
	if got := b.metric(t, "bridge_relay_read_ahead_pages_total", "source", "s", "result", "used"); got != 1 {
		t.Errorf("used = %v, want 1", got)
	}
}

func TestReadAheadUnclaimedIsDropped(t *testing.T) {
	up := newPagedUpstream(t, "v4", 2, nil)
	b := newAccelBridge(t, Upstream{URL: up.base(), RepeatTTL: 100 * time.Millisecond, ReadAhead: 1}, Options{})
	b.get(t, "GET", "alice", "/odata/s/Items?$skiptoken=0", nil)
	waitFor(t, func() bool {
		return b.metric(t, "bridge_relay_read_ahead_pages_total", "source", "s", "result", "wasted") == 1
	})
	waitFor(t, func() bool { return b.metric(t, "bridge_relay_held_bytes") == 0 })
}

func TestCloseEndsReadAhead(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	up := newPagedUpstream(t, "v4", 2, func(page, n int) bool {
		if page == 1 {
			<-release
		}
		return false
	})
	b := newAccelBridge(t, Upstream{URL: up.base(), ReadAhead: 1}, Options{})
	b.get(t, "GET", "alice", "/odata/s/Items?$skiptoken=0", nil)
	waitFor(t, func() bool { return len(up.requests(1)) == 1 })
	done := make(chan struct{})
	go func() { b.rl.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the read-ahead fetch")
	}
}

func TestMemoryBudgetHolds(t *testing.T) {
	const budget = 64 << 10
	page := strings.Repeat("x", 20<<10)
	u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		fmt.Fprintf(w, `{"n":%d,"pad":"%s","@odata.nextLink":"%sItems?n=%d"}`, n, page, u.base(), n+1)
	})
	b := newAccelBridge(t, Upstream{URL: u.base(), RepeatTTL: time.Hour, ReadAhead: 2}, Options{MemoryBudget: budget})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			status, _, body := b.get(t, "GET", "alice", fmt.Sprintf("/odata/s/Items?n=%d", i*10), nil)
			if status != 200 || !bytes.HasPrefix(body, fmt.Appendf(nil, `{"n":%d,"pad":"xx`, i*10)) || len(body) < len(page) {
				t.Errorf("request %d: status %d, body %.40s… (%d bytes)", i, status, body, len(body))
			}
			if held := b.rl.acc.held.Load(); held > budget {
				t.Errorf("held %d bytes, budget %d", held, budget)
			}
		})
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	if held := b.rl.acc.held.Load(); held > budget || held == 0 {
		t.Errorf("held %d bytes, want 0 < held <= %d", held, budget)
	}
	if got := b.metric(t, "bridge_relay_held_bytes"); got != float64(b.rl.acc.held.Load()) {
		t.Errorf("gauge = %v, held = %d", got, b.rl.acc.held.Load())
	}
	// A response larger than the budget streams whole and is not kept.
	big := strings.Repeat("y", 2*budget)
	u2 := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"pad":"%s"}`, big)
	})
	b2 := newAccelBridge(t, Upstream{URL: u2.base(), RepeatTTL: time.Hour}, Options{MemoryBudget: budget})
	for range 2 {
		if _, _, body := b2.get(t, "GET", "alice", "/odata/s/Big", nil); len(body) != len(big)+len(`{"pad":""}`) {
			t.Errorf("big body %d bytes, want %d", len(body), len(big)+10)
		}
	}
	if got := u2.hits.Load(); got != 2 {
		t.Errorf("upstream hits = %d, want 2: a response over the budget is not kept", got)
	}
	if held := b2.rl.acc.held.Load(); held != 0 {
		t.Errorf("held %d bytes after a response over the budget, want 0", held)
	}
}

func TestFindNext(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"v4", `{"value":[],"@odata.nextLink":"https:\/\/h\/s\/Items?$skiptoken=1"}`, "https://h/s/Items?$skiptoken=1"},
		{"v4 spaced", "{\"value\":[],\n  \"@odata.nextLink\" : \"Items?a=1\\u0026b=2\"\n}", "Items?a=1&b=2"},
		{"v3", `{"value":[],"odata.nextLink":"Items?$skiptoken=2"}`, "Items?$skiptoken=2"},
		{"v2", `{"d":{"results":[{"__next":"inner"}],"__next":"outer"}}`, "outer"},
		{"nested only", `{"value":[{"Orders@odata.nextLink":"Orders?x"}]}`, ""},
		{"atom", `<feed><link rel="next" href="Items?a=1&amp;b=2"/></feed>`, "Items?a=1&b=2"},
		{"atom, href first", `<feed><link href='Items?x' rel='next'></link></feed>`, "Items?x"},
		{"atom, none", `<feed><link rel="self" href="Items"/></feed>`, ""},
		{"none", `{"value":[]}`, ""},
		{"not a string", `{"@odata.nextLink":null}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := findNext([]byte(tt.body))
			if got != tt.want {
				t.Errorf("findNext = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		in   string
		path bool
		want string
	}{
		{"$skiptoken='a'", false, "$skiptoken='a'"},
		{"%24skiptoken=%27a%27", false, "$skiptoken='a'"},
		{"a=%2f%26", false, "a=%2F%26"},
		{"a=b c", false, "a=b%20c"},
		{"Items('a%2Fb')", true, "Items('a%2Fb')"},
		{"Items(%27a%27)", true, "Items('a')"},
		{"x?y", true, "x%3Fy"},
	}
	for _, tt := range tests {
		if got := canonical(tt.in, tt.path); got != tt.want {
			t.Errorf("canonical(%q, %v) = %q, want %q", tt.in, tt.path, got, tt.want)
		}
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func FuzzFindNext(f *testing.F) {
	for _, s := range []string{
		`{"value":[],"@odata.nextLink":"https:\/\/h\/s\/Items?$skiptoken=1"}`,
		`{"d":{"results":[],"__next":"outer"}}`,
		`<feed><link rel="next" href="Items?a=1&amp;b=2"/></feed>`,
		`{"odata.nextLink":"\u0041"`, `<link rel='next' href='`, `"@odata.nextLink"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		link, ok := findNext(b)
		if !ok && link != "" {
			t.Errorf("findNext = %q, false", link)
		}
	})
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"$skiptoken='a'", "%24skiptoken=%27a%27", "a=%2f%26", "a=b c", "Items('a%2Fb')", "%", "%zz", "%e2%82%ac"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, path bool) {
		c := canonical(s, path)
		if again := canonical(c, path); again != c {
			t.Errorf("canonical(%q) = %q, and again %q: not stable", s, c, again)
		}
		for i := 0; i < len(c); i++ {
			if c[i] != '%' && !rawOK(c[i], path) {
				t.Errorf("canonical(%q) = %q holds raw byte %q", s, c, c[i])
			}
		}
	})
}

package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// observation is one response seen during an outage.
type observation struct {
	what   string
	status int
	retry  string // Retry-After
	code   string // OData error code, or OAuth error
	err    error  // no response at all (a hang ends at the client's timeout)
}

// checkOutageAnswer says what is wrong with one answer given while a
// dependency fails: only success or 503 with Retry-After and an error body
// are fine.
func (o observation) problem() string {
	switch {
	case o.err != nil:
		return fmt.Sprintf("%s: no response: %v", o.what, o.err)
	case o.status == http.StatusOK || o.status == http.StatusCreated:
		return ""
	case o.status != http.StatusServiceUnavailable:
		return fmt.Sprintf("%s: status %d (%s), want 200 or 503", o.what, o.status, o.code)
	case o.retry == "":
		return fmt.Sprintf("%s: 503 without Retry-After", o.what)
	case o.code == "":
		return fmt.Sprintf("%s: 503 without an error body", o.what)
	}
	return ""
}

// observe sends a request and records the answer.
func observe(ctx context.Context, what, method, rawURL, auth string) observation {
	r, err := do(ctx, method, rawURL, auth, nil)
	o := observation{what: what, status: r.Status, err: err}
	if err == nil {
		o.retry = r.Header.Get("Retry-After")
		o.code = odataErrorCode(r.Body)
	}
	return o
}

// observeRefresh runs the refresh grant and records the answer; on success
// it returns the rotated tokens.
func observeRefresh(ctx context.Context, base string, tok tokens) (observation, tokens) {
	form := strings.NewReader("grant_type=refresh_token&client_id=powerbi&refresh_token=" + tok.Refresh)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth/token", form)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	o := observation{what: "refresh grant", err: err}
	if err != nil {
		return o, tok
	}
	defer resp.Body.Close()
	o.status, o.retry = resp.StatusCode, resp.Header.Get("Retry-After")
	var body struct {
		tokens
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	o.code = body.Error
	if resp.StatusCode == http.StatusOK {
		return o, body.tokens
	}
	return o, tok
}

// waitReady polls /readyz until it answers want or the deadline passes.
func waitReady(t *testing.T, br *bridge, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := get(t, br.URL+"/readyz", "")
		if r.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz of %s: status %d for %v, want %d: %s", br.URL, r.Status, within, want, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRedisKilledMidTraffic kills the token store's Redis with SIGKILL while
// clients read feeds, list keys and refresh across two bridges: every answer
// is a success or a 503 with Retry-After and an error body, never a 500 or a
// hang; /readyz turns 503; and when Redis is back (its append-only file
// synced on every write) both bridges recover without a restart and every
// session still works.
func TestRedisKilledMidTraffic(t *testing.T) {
	world := startWorld(t, demo.Options{})
	rs := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	keys := newEncryptionKeys("sys1")
	bridges := []*bridge{
		startBridge(t, bridgeConfig{World: world, RedisURL: rs.URL(), EncryptionKeys: keys}),
		startBridge(t, bridgeConfig{World: world, RedisURL: rs.URL(), EncryptionKeys: keys}),
	}
	const clients = 6
	sessions := make([]tokens, clients)
	for i := range sessions {
		sessions[i] = mustSignIn(t, bridges[i%2].URL, world.Users[i%len(world.Users)])
	}
	key := mustCreateKey(t, bridges[0].URL, sessions[0].Access)

	ctx, stop := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		seen []observation
		wg   sync.WaitGroup
	)
	record := func(o observation) {
		mu.Lock()
		seen = append(seen, o)
		mu.Unlock()
	}
	for i := range clients {
		wg.Go(func() {
			tok := sessions[i]
			for n := 0; ctx.Err() == nil; n++ {
				br := bridges[n%2]
				var o observation
				switch n % 4 {
				case 0:
					o = observe(context.Background(), "feed (bearer)", http.MethodGet, br.URL+"/odata/smartobjects/Customers?$top=5", bearer(tok.Access))
				case 1:
					o = observe(context.Background(), "feed (feed key)", http.MethodGet, br.URL+"/odata/smartobjects-v3/Customers?$top=5", basicKey(key.Key))
				case 2:
					o = observe(context.Background(), "list keys", http.MethodGet, br.URL+"/api/keys", bearer(tok.Access))
				case 3:
					if n%16 == 3 {
						o, tok = observeRefresh(context.Background(), br.URL, tok)
					} else {
						o = observe(context.Background(), "feed (bearer)", http.MethodGet, br.URL+"/odata/smartobjects/Orders?$top=20", bearer(tok.Access))
					}
				}
				record(o)
				time.Sleep(20 * time.Millisecond)
			}
			sessions[i] = tok
		})
	}

	time.Sleep(time.Second)
	rs.kill()
	killed := time.Now()
	// Past the hot cache, every request needs the store.
	time.Sleep(hotCacheTTL + 500*time.Millisecond)
	for _, br := range bridges {
		waitReady(t, br, http.StatusServiceUnavailable, 5*time.Second)
		r := get(t, br.URL+"/odata/smartobjects/Customers?$top=1", basicKey(key.Key))
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || odataErrorCode(r.Body) != "StoreUnavailable" {
			t.Errorf("feed on %s while Redis is down: status %d, Retry-After %q, body %s; want 503, Retry-After and an OData StoreUnavailable error",
				br.URL, r.Status, r.Header.Get("Retry-After"), r.Body)
		}
	}
	// Sign-in, the token endpoint and key creation need the store too.
	br := bridges[0]
	authorize := br.URL + "/oauth/authorize?response_type=code&client_id=powerbi&state=s&code_challenge_method=S256&code_challenge=" +
		strings.Repeat("A", 43) + "&redirect_uri=" + url.QueryEscape(powerBIRedirect)
	// Starting a sign-in stores nothing (the pending state is sealed in a
	// cookie); its end claims the state in the store, so a browser that
	// keeps cookies meets the outage at /oauth/callback.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	if resp, err := browser.Get(authorize); err != nil {
		t.Errorf("sign-in while Redis is down: %v", err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || resp.Request.URL.Path != "/oauth/callback" {
			t.Errorf("sign-in while Redis is down: %s answered %d, Retry-After %q; want /oauth/callback to answer 503 with Retry-After",
				resp.Request.URL.Path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	if o, _ := observeRefresh(context.Background(), br.URL, sessions[0]); o.status != http.StatusServiceUnavailable || o.retry == "" || o.code != "temporarily_unavailable" {
		t.Errorf("refresh grant while Redis is down: status %d, Retry-After %q, error %q; want 503, Retry-After, temporarily_unavailable", o.status, o.retry, o.code)
	}
	if status, _, err := createKey(context.Background(), br.URL, sessions[0].Access); err != nil || status != http.StatusServiceUnavailable {
		t.Errorf("creating a key while Redis is down: status %d, %v; want 503", status, err)
	}
	time.Sleep(time.Second)
	rs.restart(t)
	for _, br := range bridges {
		waitReady(t, br, http.StatusOK, 15*time.Second)
	}
	t.Logf("Redis was down for %v; both bridges ready again without a restart", time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()

	var unavailable, ok int
	for _, o := range seen {
		if p := o.problem(); p != "" {
			t.Error(p)
		}
		switch o.status {
		case http.StatusServiceUnavailable:
			unavailable++
		case http.StatusOK, http.StatusCreated:
			ok++
		}
	}
	t.Logf("%d answers during the run: %d successes, %d 503s", len(seen), ok, unavailable)
	if unavailable == 0 {
		t.Error("no request got a 503 while Redis was down; the outage was not exercised")
	}
	// Every session survived the crash.
	for i, tok := range sessions {
		br := bridges[i%2]
		if r := get(t, br.URL+"/odata/smartobjects/Customers?$top=1", bearer(tok.Access)); r.Status != http.StatusOK {
			t.Errorf("session %d after Redis came back: status %d: %s", i, r.Status, r.Body)
		}
		if status, _, _ := refreshGrant(context.Background(), br.URL, tok.Refresh); status != http.StatusOK {
			t.Errorf("session %d: refresh after Redis came back: status %d", i, status)
		}
	}
	if r := get(t, bridges[1].URL+"/odata/smartobjects/Customers?$top=1", basicKey(key.Key)); r.Status != http.StatusOK {
		t.Errorf("feed key after Redis came back: status %d", r.Status)
	}
}

// TestRedisAOFRestartKeepsSessions restarts Redis with append-only
// persistence: every session, refresh token and feed key survives, so no
// user signs in again.
func TestRedisAOFRestartKeepsSessions(t *testing.T) {
	world := startWorld(t, demo.Options{})
	rs := startRedis(t, "--appendonly", "yes")
	br := startBridge(t, bridgeConfig{World: world, RedisURL: rs.URL(), EncryptionKeys: newEncryptionKeys("sys1")})
	var sessions []tokens
	for i := range 20 {
		sessions = append(sessions, mustSignIn(t, br.URL, world.Users[i%len(world.Users)]))
	}
	key := mustCreateKey(t, br.URL, sessions[0].Access)

	rs.stop(t)
	if r := get(t, br.URL+"/readyz", ""); r.Status != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis stopped: status %d, want 503", r.Status)
	}
	rs.restart(t)
	waitReady(t, br, http.StatusOK, 15*time.Second)
	time.Sleep(hotCacheTTL) // nothing answers from the hot cache

	for i, tok := range sessions {
		if r := get(t, br.URL+"/odata/smartobjects/Customers?$top=1", bearer(tok.Access)); r.Status != http.StatusOK {
			t.Errorf("session %d after the restart: status %d: %s", i, r.Status, r.Body)
		}
		status, _, err := refreshGrant(context.Background(), br.URL, tok.Refresh)
		if err != nil || status != http.StatusOK {
			t.Errorf("session %d: refresh after the restart: status %d, %v", i, status, err)
		}
	}
	if r := get(t, br.URL+"/odata/smartobjects/Customers?$top=1", basicKey(key.Key)); r.Status != http.StatusOK {
		t.Errorf("feed key after the restart: status %d", r.Status)
	}
}

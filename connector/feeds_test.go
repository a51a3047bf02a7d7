package connector

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/idp"
)

func modeSources(p *idp.Provider) []Source {
	return []Source{
		{Name: "test", Kind: "odata", Auth: "user", Feed: feedFunc(echoFeed)},
		{Name: "ad", Kind: "odata", Auth: "basic-passthrough", Feed: feedFunc(echoFeed)},
		{Name: "service", Kind: "odata", Auth: "client-credentials", Feed: feedFunc(echoFeed), Service: p.ServiceTokens(nil, "")},
		{Name: "public", Kind: "odata", Auth: "none", Feed: feedFunc(echoFeed)},
	}
}

func upstreamAuth(t *testing.T, body string) string {
	t.Helper()
	var echo map[string]string
	if err := json.Unmarshal([]byte(body), &echo); err != nil {
		t.Fatalf("feed body %q: %v", body, err)
	}
	return echo["upstream_authorization"]
}

func TestBasicPassthrough(t *testing.T) {
	b := newBridge(t, modeSources)
	caller := "Basic " + base64.StdEncoding.EncodeToString([]byte(`DENALLIX\bob:pa:ss wörd`))
	resp, body := b.get(t, "/odata/ad/Things", http.Header{"Authorization": {caller}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	if got := upstreamAuth(t, body); got != caller {
		t.Errorf("upstream Authorization = %q, want exactly the caller's %q", got, caller)
	}
	for name, h := range map[string]http.Header{
		"no credentials": nil,
		"bearer":         bearer("abc"),
	} {
		resp, _ := b.get(t, "/odata/ad/Things", h)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: status %d, WWW-Authenticate %q; want 401 with a Basic challenge", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := b.idp.tokenCalls.Load(); n != 0 {
		t.Errorf("pass-through called the provider %d times, want 0: nothing is cached", n)
	}
}

func TestClientCredentialsOneTokenForAll(t *testing.T) {
	b := newBridge(t, modeSources)
	access, _ := b.signIn(t)
	before := b.idp.ccCalls.Load()
	var wg sync.WaitGroup
	auths := make([]string, 20)
	for i := range auths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, b.url+"/odata/service/Things", nil)
			req.Header.Set("Authorization", "Bearer "+access)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var echo map[string]string
			json.NewDecoder(resp.Body).Decode(&echo)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d", resp.StatusCode)
			}
			auths[i] = echo["upstream_authorization"]
		}()
	}
	wg.Wait()
	if n := b.idp.ccCalls.Load() - before; n != 1 {
		t.Errorf("client-credentials grants = %d for 20 concurrent callers, want 1", n)
	}
	for i, a := range auths {
		if a == "" || a != auths[0] {
			t.Fatalf("caller %d sent %q upstream, want the one shared service token", i, a)
		}
	}
	// Callers must still sign in to the bridge.
	if resp, _ := b.get(t, "/odata/service/Things", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("service source without bridge credentials: status %d, want 401", resp.StatusCode)
	}
}

func TestNoneSendsNothingUpstream(t *testing.T) {
	b := newBridge(t, modeSources)
	access, _ := b.signIn(t)
	resp, body := b.get(t, "/odata/public/Things", bearer(access))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	if got := upstreamAuth(t, body); got != "" {
		t.Errorf("upstream Authorization = %q, want none", got)
	}
}

func TestUnknownSource(t *testing.T) {
	b := newBridge(t, nil)
	resp, body := b.get(t, "/odata/nope/x", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "UnknownSource") {
		t.Errorf("status %d %s, want 404 UnknownSource", resp.StatusCode, body)
	}
}

func TestRateLimit(t *testing.T) {
	b := newBridge(t, nil, func(o *Options) { o.RateLimit = 40 })
	access, _ := b.signIn(t)
	limited := 0
	var retryAfter string
	for range 60 {
		resp, body := b.get(t, "/odata/test/x", bearer(access))
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			limited++
			retryAfter = resp.Header.Get("Retry-After")
			if !strings.Contains(body, "TooManyRequests") {
				t.Errorf("429 body %s, want an OData error", body)
			}
		default:
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
	}
	if limited != 20 {
		t.Errorf("%d of 60 requests limited at 40 a minute, want 20", limited)
	}
	if n, err := strconv.Atoi(retryAfter); err != nil || n < 1 || n > 60 {
		t.Errorf("Retry-After = %q, want seconds to the end of the window", retryAfter)
	}
	b.clock.Advance(time.Minute)
	if resp, _ := b.get(t, "/odata/test/x", bearer(access)); resp.StatusCode != http.StatusOK {
		t.Errorf("next window: status %d, want 200", resp.StatusCode)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	b := newBridge(t, nil, func(o *Options) { o.RateLimit = 20 })
	access, _ := b.signIn(t)
	sid, err := b.store.Authenticate(context.Background(), access)
	if err != nil {
		t.Fatal(err)
	}
	_, k1, err := b.store.CreateFeedKey(context.Background(), sid, "one")
	if err != nil {
		t.Fatal(err)
	}
	_, k2, err := b.store.CreateFeedKey(context.Background(), sid, "two")
	if err != nil {
		t.Fatal(err)
	}
	basic := func(k string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+k))}}
	}
	count := func(h http.Header) (ok int) {
		for range 30 {
			if resp, _ := b.get(t, "/odata/test/x", h); resp.StatusCode == http.StatusOK {
				ok++
			}
		}
		return ok
	}
	if n := count(basic(string(k1))); n != 20 {
		t.Errorf("key one: %d of 30 allowed at 20 a minute, want 20", n)
	}
	if n := count(basic(string(k2))); n != 20 {
		t.Errorf("key two of the same session: %d of 30 allowed, want its own 20", n)
	}
}

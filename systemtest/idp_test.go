package systemtest

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// shortAccessTTL is the demo provider's access-token lifetime in the
// refresh-fault tests: shorter than the bridge's refresh margin, so every
// feed request refreshes, and a token kept through a failed refresh has
// expired soon after.
const shortAccessTTL = 2 * time.Second

// TestIdentityProviderFaults makes the provider fail during refresh, with a
// 500 and then with refused connections: sessions are kept, callers get 503
// with Retry-After (an OData error on feeds, temporarily_unavailable on the
// token endpoint), and everything works again once the provider recovers.
// invalid_grant for one user ends that user's session only.
func TestIdentityProviderFaults(t *testing.T) {
	world := startWorld(t, demo.Options{AccessTTL: shortAccessTTL})
	proxy := startIdPProxy(t, world)
	keys := newEncryptionKeys("sys1")
	redisURL := startRedis(t).URL() // private: these sessions need no cleaning up
	bridges := []*bridge{
		startBridge(t, bridgeConfig{World: world, RedisURL: redisURL, EncryptionKeys: keys, TokenURL: proxy.URL()}),
		startBridge(t, bridgeConfig{World: world, RedisURL: redisURL, EncryptionKeys: keys, TokenURL: proxy.URL()}),
	}
	alice := mustSignIn(t, bridges[0].URL, "alice")
	bob := mustSignIn(t, bridges[1].URL, "bob")
	ctx := context.Background()
	feed := "/odata/smartobjects/Customers?$top=1"
	for _, br := range bridges {
		if r := get(t, br.URL+feed, bearer(alice.Access)); r.Status != http.StatusOK {
			t.Fatalf("feed before any fault: status %d: %s", r.Status, r.Body)
		}
	}
	if proxy.refreshes.Load() == 0 {
		t.Fatal("no refresh reached the provider; the faults below would not be exercised")
	}

	for _, fault := range []struct {
		name string
		mode idpMode
	}{
		{"500", idpFail},
		{"refused connections", idpRefuse},
	} {
		t.Run(fault.name, func(t *testing.T) {
			proxy.setMode(fault.mode)
			time.Sleep(shortAccessTTL + 200*time.Millisecond) // the last good token expires
			for _, br := range bridges {
				// Another request than before the fault: a repeat within the
				// source's repeat_ttl is answered from the relay's cache.
				r := get(t, br.URL+feed+"&$skip=0", bearer(alice.Access))
				if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || odataErrorCode(r.Body) != "ProviderUnavailable" {
					t.Errorf("feed on %s while the provider fails: status %d, Retry-After %q, body %s; want 503, Retry-After and an OData ProviderUnavailable error",
						br.URL, r.Status, r.Header.Get("Retry-After"), r.Body)
				}
				o, _ := observeRefresh(ctx, br.URL, alice)
				if o.status != http.StatusServiceUnavailable || o.retry == "" || o.code != "temporarily_unavailable" {
					t.Errorf("refresh grant on %s while the provider fails: status %d, Retry-After %q, error %q; want 503, Retry-After, temporarily_unavailable",
						br.URL, o.status, o.retry, o.code)
				}
			}
			proxy.setMode(idpPass)
			for _, br := range bridges {
				if r := get(t, br.URL+feed, bearer(alice.Access)); r.Status != http.StatusOK {
					t.Errorf("feed on %s after the provider recovered: status %d: %s", br.URL, r.Status, r.Body)
				}
			}
			o, rotated := observeRefresh(ctx, bridges[1].URL, alice)
			if o.status != http.StatusOK {
				t.Fatalf("refresh grant after the provider recovered: status %d %s", o.status, o.code)
			}
			alice = rotated
		})
	}

	t.Run("invalid_grant ends only that session", func(t *testing.T) {
		proxy.revoke("bob")
		time.Sleep(shortAccessTTL + 200*time.Millisecond)
		r := get(t, bridges[0].URL+feed, bearer(bob.Access))
		if r.Status != http.StatusUnauthorized || odataErrorCode(r.Body) != "SessionEnded" {
			t.Errorf("bob's feed after invalid_grant: status %d: %s; want 401 SessionEnded", r.Status, r.Body)
		}
		if o, _ := observeRefresh(ctx, bridges[1].URL, bob); o.status != http.StatusBadRequest || o.code != "invalid_grant" {
			t.Errorf("bob's refresh grant after invalid_grant: status %d %q; want 400 invalid_grant", o.status, o.code)
		}
		for _, br := range bridges {
			if r := get(t, br.URL+feed, bearer(alice.Access)); r.Status != http.StatusOK {
				t.Errorf("alice's feed on %s after bob's session ended: status %d: %s", br.URL, r.Status, r.Body)
			}
		}
		if o, _ := observeRefresh(ctx, bridges[0].URL, alice); o.status != http.StatusOK {
			t.Errorf("alice's refresh grant after bob's session ended: status %d %q", o.status, o.code)
		}
	})
}

// providerSlowDelay exceeds the token cache's refresh lock TTL (5s), so the
// lock must be renewed while the provider answers.
const providerSlowDelay = 7 * time.Second

// TestIdentityProviderSlowPastLockTTL refuses one session's provider token
// at the upstream while nine callers on three bridges use it at once, and
// the provider takes longer than the refresh lock's TTL to answer: exactly
// one refresh reaches the provider, and every caller gets the data.
func TestIdentityProviderSlowPastLockTTL(t *testing.T) {
	world := startWorld(t, demo.Options{})
	proxy := startIdPProxy(t, world)
	up := startFaultUpstream(t)
	keys := newEncryptionKeys("sys1")
	redisURL := startRedis(t).URL() // private: these sessions need no cleaning up
	sources := []source{{Name: "faulty", URL: up.Base(), Auth: "user"}}
	var bridges []*bridge
	for range 3 {
		bridges = append(bridges, startBridge(t, bridgeConfig{World: world, RedisURL: redisURL, EncryptionKeys: keys, TokenURL: proxy.URL(), Sources: sources}))
	}
	tok := mustSignIn(t, bridges[0].URL, "alice")
	proxy.setDelay(providerSlowDelay)
	proxy.setMode(idpSlow)
	before := proxy.refreshes.Load()

	var wg sync.WaitGroup
	statuses := make([]int, 9)
	start := time.Now()
	for i := range statuses {
		wg.Go(func() {
			r, err := do(context.Background(), http.MethodGet, bridges[i%3].URL+"/odata/faulty/Renewed", bearer(tok.Access), nil)
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
				return
			}
			statuses[i] = r.Status
		})
	}
	wg.Wait()
	t.Logf("nine callers on three bridges waited %v for one slow refresh", time.Since(start).Round(100*time.Millisecond))
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("caller %d: status %d, want 200 once the slow refresh is done", i, s)
		}
	}
	if got := proxy.refreshes.Load() - before; got != 1 {
		t.Errorf("refreshes at the provider: got %d, want 1 (one refresh per session across replicas)", got)
	}
}

package systemtest

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// lockTTL is the token cache's refresh lock TTL (tokencache.Options.LockTTL's
// default, which the bridge uses).
const lockTTL = 5 * time.Second

// TestRefreshLockHolderKilled: three bridges on one Redis, a provider that takes
// 3 s to refresh, and nine callers on one session whose provider token the upstream
// has just refused. The bridge that holds the session's refresh lock is killed with
// SIGKILL while it waits on the provider. Another bridge takes the lock when it lapses
// and completes the refresh within the lock's TTL plus one provider call; every caller
// gets 200 or 503 with Retry-After (the three whose bridge died get no answer from it
// and retry once on another, as a load balancer's client would); the session survives;
// the provider sees at most two refreshes, the killed one included.
func TestRefreshLockHolderKilled(t *testing.T) {
	const providerDelay = 3 * time.Second
	world := startWorld(t, demo.Options{})
	proxy := startIdPProxy(t, world)
	up := startFaultUpstream(t)
	keys := newEncryptionKeys("sys1")
	redisURL := startRedis(t).URL()
	sources := []source{{Name: "faulty", URL: up.Base(), Auth: "user"}}
	var bridges []*bridge
	for range 3 {
		bridges = append(bridges, startBridge(t, bridgeConfig{World: world, RedisURL: redisURL, EncryptionKeys: keys, TokenURL: proxy.URL(), Sources: sources}))
	}
	holder, survivors := bridges[0], bridges[1:]
	tok := mustSignIn(t, holder.URL, "alice")
	proxy.setDelay(providerDelay)
	proxy.setMode(idpSlow)
	before := proxy.refreshes.Load()

	type answer struct {
		obs   observation
		at    time.Duration // since the kill
		retry bool          // the first try's bridge died
	}
	answers := make([]answer, 9)
	var killedAt time.Time
	var mu sync.Mutex
	since := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		if killedAt.IsZero() {
			return 0
		}
		return time.Since(killedAt)
	}
	var wg sync.WaitGroup
	call := func(i int, br *bridge) {
		wg.Go(func() {
			ctx := context.Background()
			o := observe(ctx, "caller", http.MethodGet, br.URL+"/odata/faulty/Renewed", bearer(tok.Access))
			if o.err != nil && br == holder {
				answers[i].retry = true
				o = observe(ctx, "caller (retried)", http.MethodGet, survivors[i%2].URL+"/odata/faulty/Renewed", bearer(tok.Access))
			}
			answers[i].obs, answers[i].at = o, since()
		})
	}
	// The holder's callers first: it alone asks the provider, so it holds the lock.
	for i := range 3 {
		call(i, holder)
	}
	for deadline := time.Now().Add(5 * time.Second); proxy.refreshes.Load() == before; {
		if time.Now().After(deadline) {
			t.Fatal("no refresh reached the provider within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 3; i < 9; i++ {
		call(i, survivors[i%2])
	}
	time.Sleep(500 * time.Millisecond) // the others wait on the lock
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	if err := holder.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	bound := lockTTL + providerDelay + revocationSlack
	var last time.Duration
	for i, a := range answers {
		if p := a.obs.problem(); p != "" {
			t.Errorf("caller %d: %s", i, p)
		}
		if a.obs.status == http.StatusOK {
			last = max(last, a.at)
		}
		t.Logf("caller %d: status %d, %v after the kill, retried: %v", i, a.obs.status, a.at.Round(10*time.Millisecond), a.retry)
	}
	if last > bound {
		t.Errorf("the last caller got its data %v after the kill, want within the lock TTL plus one provider call (%v, with slack %v)", last, lockTTL+providerDelay, bound)
	}
	t.Logf("the refresh was completed by another bridge %v after the holder was killed (bound %v)", last.Round(10*time.Millisecond), lockTTL+providerDelay)
	t.Logf("refresh requests at the provider: %d", proxy.refreshes.Load()-before)
	if got := proxy.refreshes.Load() - before; got > 2 {
		t.Errorf("refreshes at the provider: %d, want at most 2 (the killed one and its successor)", got)
	}
	proxy.setMode(idpPass)
	for _, br := range survivors {
		if r := get(t, br.URL+"/odata/faulty/Renewed", bearer(tok.Access)); r.Status != http.StatusOK {
			t.Errorf("the session on %s after the kill: status %d: %s", br.URL, r.Status, r.Body)
		}
	}
	if status, _, err := refreshGrant(context.Background(), survivors[0].URL, tok.Refresh); err != nil || status != http.StatusOK {
		t.Errorf("the session's refresh token after the kill: status %d, %v", status, err)
	}
}

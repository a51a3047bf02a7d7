package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// TestSoak runs 200 clients for five minutes against three bridges on one
// Redis, mixing sign-ins, refresh grants, feed pages (through every bridge
// in turn) and feed-key creation. No response may be a 5xx, and each
// bridge's resident memory in the last minute may not exceed the first
// minute's by more than a quarter plus 16 MiB. It runs only with
// BRIDGE_SOAK=1; BRIDGE_SOAK_DURATION and BRIDGE_SOAK_CLIENTS change its size.
func TestSoak(t *testing.T) {
	if os.Getenv("BRIDGE_SOAK") != "1" {
		t.Skip("the five-minute soak runs with BRIDGE_SOAK=1")
	}
	duration := 5 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("BRIDGE_SOAK_DURATION")); err == nil && d > 0 {
		duration = d
	}
	clients := 200
	if n, err := fmt.Sscan(os.Getenv("BRIDGE_SOAK_CLIENTS"), &clients); n != 1 || err != nil {
		clients = 200
	}
	world := startWorld(t, demo.Options{})
	// Thousands of sessions: keep them off the shared server when a
	// private one can be started.
	redisURL := ""
	if _, err := exec.LookPath("redis-server"); err == nil {
		redisURL = startRedis(t).URL()
	} else {
		redisURL = storeRedisURL(t)
	}
	keys := newEncryptionKeys("soak")
	var bridges []*bridge
	for range 3 {
		bridges = append(bridges, startBridge(t, bridgeConfig{World: world, RedisURL: redisURL, EncryptionKeys: keys}))
	}

	var (
		counts    sync.Map // "op status" → *atomic.Int64
		latencyMu sync.Mutex
		latencies []time.Duration
		serverErr atomic.Int64
		failures  atomic.Int64
	)
	count := func(op string, status int, took time.Duration) {
		k := fmt.Sprintf("%s %d", op, status)
		v, _ := counts.LoadOrStore(k, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		if status >= 500 {
			if serverErr.Add(1) <= 10 {
				t.Errorf("%s: status %d", op, status)
			}
		}
		latencyMu.Lock()
		latencies = append(latencies, took)
		latencyMu.Unlock()
	}
	fail := func(format string, a ...any) {
		if failures.Add(1) <= 10 {
			t.Errorf(format, a...)
		}
	}

	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { soakClient(ctx, i, bridges, world, count, fail) })
	}

	// Memory: resident set of each bridge every five seconds (or a twentieth of a short run).
	type sample struct {
		at  time.Duration
		rss []int
		gor []int
	}
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(min(5*time.Second, duration/20))
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			s := sample{at: time.Since(start)}
			for _, br := range bridges {
				s.rss = append(s.rss, br.rssKiB(t))
				s.gor = append(s.gor, br.goroutines(t))
			}
			samples = append(samples, s)
		}
	}
	tick.Stop()
	wg.Wait()
	elapsed := time.Since(start)

	var total int64
	var lines []string
	counts.Range(func(k, v any) bool {
		n := v.(*atomic.Int64).Load()
		total += n
		lines = append(lines, fmt.Sprintf("%-22s %d", k, n))
		return true
	})
	slices.Sort(lines)
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(float64(len(latencies)-1)*p)]
	}
	t.Logf("soak: %d clients, 3 bridges, %v: %d requests (%.0f/s), latency p50 %v p99 %v max %v, 5xx %d",
		clients, elapsed.Round(time.Second), total, float64(total)/elapsed.Seconds(), pct(.5), pct(.99), pct(1), serverErr.Load())
	t.Logf("soak: by operation and status:\n  %s", strings.Join(lines, "\n  "))
	minute := min(time.Minute, duration/5)
	for b := range bridges {
		var first, last []int
		for _, s := range samples {
			switch {
			case s.at <= minute:
				first = append(first, s.rss[b])
			case s.at >= elapsed-minute:
				last = append(last, s.rss[b])
			}
		}
		if len(first) == 0 || len(last) == 0 {
			t.Fatalf("too few memory samples")
		}
		f, l := slices.Max(first), slices.Max(last)
		t.Logf("soak: bridge %d resident memory: first minute max %d MiB, last minute max %d MiB; goroutines at the end %d",
			b, f>>10, l>>10, samples[len(samples)-1].gor[b])
		if l > f+f/4+16<<10 {
			t.Errorf("bridge %d: resident memory grew from %d MiB to %d MiB", b, f>>10, l>>10)
		}
	}
}

// soakClient is one client of the soak: it signs in, then mostly reads
// feed pages, now and then refreshes, creates a feed key and reads with it,
// or signs in again.
func soakClient(ctx context.Context, id int, bridges []*bridge, world *demo.World,
	count func(string, int, time.Duration), fail func(string, ...any)) {
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	pick := func() *bridge { return bridges[rng.IntN(len(bridges))] }
	user := world.Users[id%len(world.Users)]
	var tok tokens
	signin := func() bool {
		start := time.Now()
		t, err := signIn(ctx, pick().URL, user)
		if err != nil {
			if ctx.Err() == nil {
				fail("client %d: sign in: %v", id, err)
			}
			return false
		}
		count("sign-in", 200, time.Since(start))
		tok = t
		return true
	}
	if !signin() {
		return
	}
	var key string
	next := ""
	for ctx.Err() == nil {
		start := time.Now()
		switch n := rng.IntN(100); {
		case n < 2:
			signin()
		case n < 7:
			status, rotated, err := refreshGrant(ctx, pick().URL, tok.Refresh)
			if err != nil {
				if ctx.Err() == nil {
					fail("client %d: refresh: %v", id, err)
				}
				continue
			}
			count("refresh", status, time.Since(start))
			if status == http.StatusOK {
				tok = rotated
			} else {
				fail("client %d: refresh: status %d", id, status)
			}
		case n < 9:
			status, k, err := createKey(ctx, pick().URL, tok.Access)
			if err != nil {
				if ctx.Err() == nil {
					fail("client %d: create key: %v", id, err)
				}
				continue
			}
			count("create key", status, time.Since(start))
			if status == http.StatusCreated {
				key = k.Key
			}
		default:
			auth := bearer(tok.Access)
			op := "feed (bearer)"
			if key != "" && n%2 == 0 {
				auth, op = basicKey(key), "feed (feed key)"
			}
			u := pick().URL + "/odata/smartobjects/Orders?$top=50"
			if next != "" {
				u = pick().URL + next[strings.Index(next, "/odata/"):]
			}
			r, err := do(ctx, http.MethodGet, u, auth, nil)
			if err != nil {
				if ctx.Err() == nil {
					fail("client %d: %s: %v", id, op, err)
				}
				continue
			}
			count(op, r.Status, time.Since(start))
			var page struct {
				Next string `json:"@odata.nextLink"`
			}
			if r.Status != http.StatusOK || json.Unmarshal(r.Body, &page) != nil {
				fail("client %d: %s: status %d", id, op, r.Status)
				next = ""
				continue
			}
			next = page.Next
		}
	}
}

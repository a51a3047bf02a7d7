package tokencache

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// sharedRedis returns a client of the test Redis (BRIDGE_TEST_REDIS_URL, or
// a private miniredis) for the rate-limit tests.
func rateRedis(t *testing.T) redis.UniversalClient {
	t.Helper()
	if u := os.Getenv("BRIDGE_TEST_REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		return c
	}
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAllowSharedAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	rdb := rateRedis(t)
	key := Key{ID: "rl", Secret: make([]byte, 32)}
	now := time.Date(2026, 11, 27, 10, 0, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	a, err := New(Options{Redis: rdb, Keys: []Key{key}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(Options{Redis: rdb, Keys: []Key{key}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	id := "caller-" + random(8) // a fresh caller: the test Redis is shared
	const limit = 60            // leases of 3
	allowed := 0
	var lastWait time.Duration
	for i := range 200 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wait, err := s.Allow(ctx, id, limit)
		if err != nil {
			t.Fatal(err)
		}
		if wait == 0 {
			allowed++
		} else {
			lastWait = wait
		}
	}
	if allowed > limit || allowed < limit-2*3 {
		t.Errorf("two replicas allowed %d of 200 requests, want between %d and %d", allowed, limit-6, limit)
	}
	if lastWait != 55*time.Second {
		t.Errorf("Retry-After = %v, want the rest of the window, 55s", lastWait)
	}

	// The next window starts afresh.
	now = now.Add(time.Minute)
	if wait, err := a.Allow(ctx, id, limit); err != nil || wait != 0 {
		t.Errorf("first request of the next window: wait %v, err %v; want allowed", wait, err)
	}
	// Another caller has its own count.
	if wait, _ := b.Allow(ctx, id+"-other", limit); wait != 0 {
		t.Error("another caller was limited")
	}
	// Off.
	for range 100 {
		if wait, _ := a.Allow(ctx, id, 0); wait != 0 {
			t.Fatal("a zero limit must turn the limit off")
		}
	}
}

func TestValues(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s, err := New(Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Value(ctx, "obo", "k"); err != ErrNotFound {
		t.Fatalf("missing value: %v, want ErrNotFound", err)
	}
	if err := s.PutValue(ctx, "obo", "k", []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Value(ctx, "obo", "k"); err != nil || string(got) != "v1" {
		t.Fatalf("Value = %q, %v; want v1", got, err)
	}
	if _, err := s.Value(ctx, "other", "k"); err != ErrNotFound {
		t.Errorf("another kind: %v, want ErrNotFound", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.Value(ctx, "obo", "k"); err != ErrNotFound {
		t.Errorf("expired value: %v, want ErrNotFound", err)
	}
}

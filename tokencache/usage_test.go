package tokencache

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ledgerPair returns two Ledgers (replicas) on one store: two on one Redis (real when
// BRIDGE_TEST_REDIS_URL is set, else miniredis; the Cluster for "cluster"), or, for
// memory, one Ledger twice.
func ledgerPair(t *testing.T, backend string, now func() time.Time) (*Ledger, *Ledger) {
	t.Helper()
	e := ledgerEnv(t, backend)
	a := e.ledger(t, LedgerOptions{Now: now, FlushInterval: -1})
	if e.client == nil {
		return a, a
	}
	return a, e.ledger(t, LedgerOptions{Now: now, FlushInterval: -1})
}

// ledgerEnv returns the env of a ledger backend: "memory", "redis" or "cluster" (skipped
// without BRIDGE_TEST_REDIS_CLUSTER).
func ledgerEnv(t *testing.T, backend string) *env {
	t.Helper()
	switch backend {
	case "memory":
		return &env{name: "memory"}
	case "cluster":
		e := clusterEnv(t)
		if e == nil {
			t.Skip("no Redis Cluster")
		}
		return e
	default:
		return redisEnv(t)
	}
}

// ledger makes a Ledger (a replica) of the env: on its Redis and prefix, with the shared
// test key unless opts has keys; in memory, on its own.
func (e *env) ledger(t testing.TB, opts LedgerOptions) *Ledger {
	t.Helper()
	if e.client != nil {
		opts.Redis, opts.Prefix = e.client, e.prefix
		if opts.Keys == nil {
			opts.Keys = []Key{sharedKey}
		}
	}
	l := NewLedger(opts)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLedgerUsageAddsUpAcrossReplicas(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 12, 1, 10, 15, 0, 0, time.UTC)
			a, b := ledgerPair(t, backend, func() time.Time { return now })
			uses := []struct {
				l *Ledger
				u Use
			}{
				{a, Use{Source: "k2", Subject: "alice", KeyID: "key1", Status: 200, Bytes: 100, Upstream: 5 * time.Millisecond}},
				{b, Use{Source: "k2", Subject: "alice", Status: 200, Bytes: 50, Upstream: 20 * time.Millisecond}},
				{b, Use{Source: "k2", Subject: "bob", Status: 404, Bytes: 10, Upstream: 30 * time.Millisecond}},
				{a, Use{Source: "k2", Subject: "bob", Status: 502, Bytes: 10, Upstream: 3 * time.Second}},
				{a, Use{Source: "wf", Subject: "alice", KeyID: "key1", Status: 200, Bytes: 1000, Upstream: time.Millisecond}},
			}
			for _, u := range uses {
				u.l.Record(u.u)
			}
			for _, l := range []*Ledger{a, b} {
				if err := l.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			hours, err := a.Hours(ctx, now.Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]SourceHour{}
			for _, h := range hours {
				got[h.Source] = h
			}
			k2 := got["k2"]
			if k2.Requests != 4 || k2.Bytes != 170 || k2.Errors4xx != 1 || k2.Errors5xx != 1 || k2.UpstreamUS != 3055000 {
				t.Errorf("k2 hour: got %+v, want 4 requests, 170 bytes, 1 4xx, 1 5xx, 3055000 µs", k2)
			}
			if want := now.Truncate(time.Hour); !k2.Hour.Equal(want) {
				t.Errorf("k2 hour: got %v, want %v", k2.Hour, want)
			}
			if got, want := P95(k2.Latency), 5*time.Second; got != want {
				t.Errorf("k2 p95: got %v, want %v (the bucket of the slowest of four)", got, want)
			}
			if wf := got["wf"]; wf.Requests != 1 || wf.Bytes != 1000 {
				t.Errorf("wf hour: got %+v, want 1 request of 1000 bytes", wf)
			}
			users, err := b.Days(ctx, now, false)
			if err != nil {
				t.Fatal(err)
			}
			wantUsers := map[string][2]int64{"alice": {3, 1150}, "bob": {2, 20}}
			if len(users) != len(wantUsers) {
				t.Errorf("users: got %+v, want %v", users, wantUsers)
			}
			for _, u := range users {
				if w := wantUsers[u.ID]; u.Requests != w[0] || u.Bytes != w[1] {
					t.Errorf("user %s: got %d requests %d bytes, want %v", u.ID, u.Requests, u.Bytes, w)
				}
			}
			keys, err := b.Days(ctx, now, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || keys[0].ID != "key1" || keys[0].Requests != 2 || keys[0].Bytes != 1100 {
				t.Errorf("keys: got %+v, want key1 with 2 requests and 1100 bytes", keys)
			}
			last, err := a.Last(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if last["k2"].Status != 502 && last["k2"].Status != 404 {
				t.Errorf("last k2 status: got %d, want the last one written (404 or 502)", last["k2"].Status)
			}
		})
	}
}

func TestP95(t *testing.T) {
	tests := []struct {
		counts map[int]int64
		want   time.Duration
	}{
		{map[int]int64{}, 0},
		{map[int]int64{0: 100}, 10 * time.Millisecond},
		{map[int]int64{0: 95, 5: 5}, 10 * time.Millisecond},
		{map[int]int64{0: 94, 5: 6}, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		var h [len(LatencyBounds) + 1]int64
		for i, n := range tt.counts {
			h[i] = n
		}
		if got := P95(h); got != tt.want {
			t.Errorf("P95(%v): got %v, want %v", tt.counts, got, tt.want)
		}
	}
}

func TestLedgerRetention(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := NewLedger(LedgerOptions{Now: func() time.Time { return now }, FlushInterval: -1})
	l.Record(Use{Source: "k2", Subject: "alice", Status: 200, Bytes: 1})
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	start := now
	now = start.Add(HourRetention - time.Hour)
	if h, _ := l.Hours(ctx, start); len(h) != 1 {
		t.Errorf("hours after %v: got %d, want 1", now.Sub(start), len(h))
	}
	now = start.Add(HourRetention + time.Minute)
	l.Record(Use{Source: "k2", Status: 200}) // a write sweeps the expired
	_ = l.Flush(ctx)
	if h, _ := l.Hours(ctx, start); len(h) != 1 || !h[0].Hour.Equal(now.Truncate(time.Hour)) {
		t.Errorf("hours after %v: got %+v, want only the new hour", now.Sub(start), h)
	}
	if d, _ := l.Days(ctx, start, false); len(d) != 1 {
		t.Errorf("days after %v: got %d, want 1 (kept 90 days)", now.Sub(start), len(d))
	}
	now = start.Add(DayRetention + time.Hour)
	l.Record(Use{Source: "k2", Status: 200})
	_ = l.Flush(ctx)
	if d, _ := l.Days(ctx, start, false); len(d) != 0 {
		t.Errorf("days after %v: got %+v, want none", now.Sub(start), d)
	}
}

func TestLedgerAuditTrail(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			a, b := ledgerPair(t, backend, func() time.Time { return now })
			for i := range 5 {
				l := a
				if i%2 == 1 {
					l = b
				}
				if err := l.Audit(ctx, Event{Kind: AuditKeyCreated, Subject: "alice", KeyID: fmt.Sprint("k", i)}); err != nil {
					t.Fatal(err)
				}
			}
			events, err := b.AuditTrail(ctx, 3)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range events {
				ids = append(ids, e.KeyID)
			}
			if got, want := strings.Join(ids, ","), "k4,k3,k2"; got != want {
				t.Errorf("newest first: got %s, want %s", got, want)
			}
			first, err := a.First(ctx, "x", time.Hour)
			if err != nil || !first {
				t.Errorf("First: got %v %v, want true", first, err)
			}
			if again, _ := b.First(ctx, "x", time.Hour); again {
				t.Errorf("First on the other replica: got true, want false")
			}
		})
	}
}

func TestLedgerAuditRingIsBounded(t *testing.T) {
	ctx := context.Background()
	l := NewLedger(LedgerOptions{FlushInterval: -1})
	for i := range AuditLen + 10 {
		_ = l.Audit(ctx, Event{Kind: AuditSignIn, Detail: fmt.Sprint(i)})
	}
	all, _ := l.AuditTrail(ctx, 2*AuditLen)
	if len(all) != AuditLen || all[0].Detail != fmt.Sprint(AuditLen+9) {
		t.Errorf("ring: got %d events, newest %q; want %d, newest %d", len(all), all[0].Detail, AuditLen, AuditLen+9)
	}
}

// TestRecordDoesNotAllocate: counting a request on the hot path costs map
// updates only, once its counters exist in the current bucket.
// With Redis as in memory: the subject is named and sealed by Flush, not here.
func TestRecordDoesNotAllocate(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			l := ledgerEnv(t, backend).ledger(t, LedgerOptions{FlushInterval: -1, Now: func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) }})
			u := Use{Source: "k2", Subject: "alice", KeyID: "key1", Status: 200, Bytes: 100, Upstream: time.Millisecond}
			l.Record(u)
			if n := testing.AllocsPerRun(100, func() { l.Record(u) }); n != 0 {
				t.Errorf("Record: got %v allocations, want 0", n)
			}
		})
	}
}

func BenchmarkRecord(b *testing.B) {
	l := NewLedger(LedgerOptions{FlushInterval: -1})
	u := Use{Source: "k2", Subject: "alice", KeyID: "key1", Status: 200, Bytes: 100, Upstream: time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Record(u)
		}
	})
}

// TestLedgerRedisKeys: the buckets expire with their retention, and the
// audit stream is trimmed.
func TestLedgerRedisKeys(t *testing.T) {
	ctx := context.Background()
	e := redisEnv(t)
	rdb, prefix := e.client, e.prefix
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := e.ledger(t, LedgerOptions{Now: func() time.Time { return now }, FlushInterval: -1})
	l.Record(Use{Source: "k2", Subject: "alice", KeyID: "key1", Status: 200, Bytes: 1})
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]time.Duration{
		prefix + "usage:h:" + fmt.Sprint(now.Unix()/3600):  HourRetention,
		prefix + "usage:u:" + fmt.Sprint(now.Unix()/86400): DayRetention,
		prefix + "usage:k:" + fmt.Sprint(now.Unix()/86400): DayRetention,
	} {
		got, err := rdb.TTL(ctx, name).Result()
		if err != nil || got <= want-time.Minute || got > want {
			t.Errorf("TTL of %s: got %v (%v), want %v", name, got, err, want)
		}
	}
	pipe := rdb.Pipeline()
	for i := range AuditLen + 500 {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: prefix + "audit", Values: []any{"e", fmt.Sprint(i)}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Audit(ctx, Event{Kind: AuditSignIn}); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.XLen(ctx, prefix+"audit").Result(); n > AuditLen+200 {
		t.Errorf("audit stream: %d entries, want about %d", n, AuditLen)
	}
}

// TestLedgerFlushesOnItsOwn: the flusher writes counts without a call to
// Flush, and Close stops it.
func TestLedgerFlushesOnItsOwn(t *testing.T) {
	ctx := context.Background()
	l := NewLedger(LedgerOptions{FlushInterval: 10 * time.Millisecond})
	l.Record(Use{Source: "k2", Status: 200, Bytes: 5})
	deadline := time.Now().Add(5 * time.Second)
	for {
		hours, _ := l.mem.readHours(ctx, l)
		if hours == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the flusher wrote nothing within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Record(Use{Source: "k2", Status: 200, Bytes: 5})
	time.Sleep(30 * time.Millisecond)
	if h, _ := l.mem.readHours(ctx, l); h != 1 {
		t.Errorf("after Close: got %d requests written, want 1 (no flusher)", h)
	}
}

// readHours counts the requests of the current hour already written to m.
func (m *memLedger) readHours(ctx context.Context, l *Ledger) (int64, error) {
	maps := m.read(l.now(), []string{l.prefix + "usage:h:" + fmt.Sprint(l.now().Unix()/3600)})
	var n int64
	fmt.Sscan(maps[0]["req|k2"], &n)
	return n, nil
}

// BenchmarkLedgerFlush: one flush of a second's counts of 1000 users, on Redis.
func BenchmarkLedgerFlush(b *testing.B) {
	ctx := context.Background()
	e := redisEnv(b)
	l := NewLedger(LedgerOptions{Redis: e.client, Prefix: e.prefix, Keys: []Key{sharedKey}, FlushInterval: -1})
	defer l.Close()
	subjects := make([]string, 1000)
	for i := range subjects {
		subjects[i] = fmt.Sprintf("user-%04d@example.com", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range subjects {
			l.Record(Use{Source: "k2", Subject: s, Status: 200, Bytes: 100})
		}
		if err := l.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLedgerAudit: one audit event written to Redis.
func BenchmarkLedgerAudit(b *testing.B) {
	ctx := context.Background()
	e := redisEnv(b)
	l := NewLedger(LedgerOptions{Redis: e.client, Prefix: e.prefix, Keys: []Key{sharedKey}, FlushInterval: -1})
	defer l.Close()
	ev := Event{Kind: AuditSignIn, Subject: "user-0001@example.com", Email: "user-0001@example.com", Session: "s3ss10n"}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Audit(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLedgerPages: 100 refreshes of one page each applied and written to Redis.
func BenchmarkLedgerPages(b *testing.B) {
	ctx := context.Background()
	e := redisEnv(b)
	l := NewLedger(LedgerOptions{Redis: e.client, Prefix: e.prefix, Keys: []Key{sharedKey}, FlushInterval: -1})
	defer l.Close()
	b.ReportAllocs()
	for b.Loop() {
		for i := range 100 {
			l.Page(Page{Source: "k2", Subject: fmt.Sprintf("user-%04d@example.com", i), EntitySet: "Orders", More: 0, Rows: 10, Status: 200, Bytes: 100})
		}
		if err := l.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

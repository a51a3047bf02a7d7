package tokencache

import (
	"context"
	"sync"
	"testing"
	"time"
)

var ledgerBackends = []string{"memory", "redis", "cluster"}

func TestLedgerRefreshRuns(t *testing.T) {
	for _, backend := range ledgerBackends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			l, _ := ledgerPair(t, backend, func() time.Time { return now })
			page := func(set string, following bool, more, status int) {
				now = now.Add(time.Second)
				l.Page(Page{Source: "k2", Subject: "alice", EntitySet: set, Following: following, More: more, Rows: 7, Status: status, Bytes: 10, Duration: 100 * time.Millisecond})
			}
			// Complete: three pages, the last without a next link; the first asked twice.
			page("Orders", false, 1, 200)
			page("Orders", false, 1, 200)
			page("Orders", true, 1, 200)
			page("Orders", true, 0, 200)
			// Abandoned: two pages with next links, then a pause.
			page("Items", false, 1, 200)
			page("Items", true, 1, 200)
			// Error.
			page("Tasks", false, 1, 200)
			page("Tasks", true, 1, 503)
			// Ended: the last page could not be read.
			page("Notes", false, 1, 200)
			page("Notes", true, -1, 200)
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			now = now.Add(2 * time.Minute)
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			runs, err := l.Refreshes(ctx, "k2")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]RefreshRun{}
			for _, r := range runs {
				got[r.EntitySet] = r
			}
			tests := []struct {
				set      string
				pages    int
				requests int // a repeated first page is one page, but its bytes were sent twice
				outcome  string
				status   int
			}{
				{"Orders", 3, 4, RefreshComplete, 0},
				{"Items", 2, 2, RefreshAbandoned, 0},
				{"Tasks", 2, 2, RefreshError, 503},
				{"Notes", 2, 2, RefreshEnded, 0},
			}
			if len(runs) != len(tests) {
				t.Errorf("runs: got %d, want %d: %+v", len(runs), len(tests), runs)
			}
			for _, tt := range tests {
				r := got[tt.set]
				if r.Pages != tt.pages || r.Outcome != tt.outcome || r.Status != tt.status || r.Subject != "alice" ||
					r.Bytes != int64(10*tt.requests) || r.Rows != int64(7*tt.pages) {
					t.Errorf("%s: got %+v, want %d pages of 7 rows, %d bytes, outcome %s, status %d", tt.set, r, tt.pages, 10*tt.requests, tt.outcome, tt.status)
				}
			}
			if o := got["Orders"]; o.Duration != 3*time.Second+100*time.Millisecond || !o.End.Equal(o.Start.Add(o.Duration)) {
				t.Errorf("Orders: got %v from %v to %v, want 3.1s: from the first page's start to the last page", o.Duration, o.Start, o.End)
			}
		})
	}
}

// A load balancer spreads one refresh's pages over replicas; the store follows it as one
// refresh, and a pause is noticed by whichever replica looks first.
func TestLedgerRefreshSpreadOverReplicas(t *testing.T) {
	for _, backend := range ledgerBackends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			a, b := ledgerPair(t, backend, func() time.Time { return now })
			replicas := []*Ledger{a, b}
			for i := range 6 {
				now = now.Add(time.Second)
				l := replicas[i%2]
				more := 1
				if i == 5 {
					more = 0
				}
				l.Page(Page{Source: "k2", Subject: "alice", EntitySet: "Orders", Following: i > 0, More: more, Rows: 100, Status: 200, Bytes: 1000})
				if err := l.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// Two pages on a, then a pause that b notices.
			for i := range 2 {
				now = now.Add(time.Second)
				a.Page(Page{Source: "k2", Subject: "bob", EntitySet: "Items", Following: i > 0, More: 1, Rows: 50, Status: 200, Bytes: 500})
			}
			if err := a.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			now = now.Add(2 * time.Minute)
			if err := b.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			runs, err := a.Refreshes(ctx, "k2")
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != 2 {
				t.Fatalf("runs: got %+v, want one refresh of Orders and one of Items", runs)
			}
			for _, r := range runs {
				switch r.EntitySet {
				case "Orders":
					if r.Pages != 6 || r.Rows != 600 || r.Bytes != 6000 || r.Outcome != RefreshComplete {
						t.Errorf("Orders: got %+v, want 6 pages, 600 rows, complete", r)
					}
				case "Items":
					if r.Pages != 2 || r.Rows != 100 || r.Outcome != RefreshAbandoned {
						t.Errorf("Items: got %+v, want 2 pages, 100 rows, abandoned once", r)
					}
				}
			}
		})
	}
}

// Two replicas applying pages of one refresh at the same moment lose none of them.
func TestLedgerRefreshConcurrentReplicas(t *testing.T) {
	for _, backend := range []string{"redis", "cluster"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			var mu sync.Mutex
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			clock := func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				now = now.Add(time.Millisecond)
				return now
			}
			a, b := ledgerPair(t, backend, clock)
			a.Page(Page{Source: "k2", Subject: "alice", EntitySet: "Orders", More: 1, Rows: 1, Status: 200})
			if err := a.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			const each = 40
			var wg sync.WaitGroup
			for _, l := range []*Ledger{a, b} {
				wg.Go(func() {
					for range each {
						l.Page(Page{Source: "k2", Subject: "alice", EntitySet: "Orders", Following: true, More: 1, Rows: 1, Status: 200})
						if err := l.Flush(ctx); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			b.Page(Page{Source: "k2", Subject: "alice", EntitySet: "Orders", Following: true, More: 0, Rows: 1, Status: 200})
			if err := b.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			runs, err := a.Refreshes(ctx, "k2")
			if err != nil {
				t.Fatal(err)
			}
			if want := 2*each + 2; len(runs) != 1 || runs[0].Pages != want || runs[0].Rows != int64(want) || runs[0].Outcome != RefreshComplete {
				t.Fatalf("runs: got %+v, want one complete refresh of %d pages", runs, want)
			}
		})
	}
}

// With Redis, a page is applied as soon as it is served, not with the counters.
func TestLedgerAppliesPagesPromptly(t *testing.T) {
	l := redisEnv(t).ledger(t, LedgerOptions{FlushInterval: time.Hour})
	l.Page(Page{Source: "k2", Subject: "alice", EntitySet: "Orders", More: 0, Rows: 3, Status: 200})
	deadline := time.Now().Add(10 * time.Second)
	for {
		runs, err := l.Refreshes(context.Background(), "k2")
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) == 1 && runs[0].Rows == 3 && runs[0].Outcome == RefreshComplete {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs: got %+v, want the one-page refresh written without a flush", runs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Rows are counted per source and hour beside requests and bytes.
func TestLedgerCountsRows(t *testing.T) {
	for _, backend := range ledgerBackends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 12, 1, 10, 15, 0, 0, time.UTC)
			a, b := ledgerPair(t, backend, func() time.Time { return now })
			a.Record(Use{Source: "k2", Status: 200, Bytes: 10, Rows: 100})
			b.Record(Use{Source: "k2", Status: 200, Bytes: 10, Rows: 20})
			b.Record(Use{Source: "k2", Status: 200, Bytes: 10, Rows: -1}) // not read
			for _, l := range []*Ledger{a, b} {
				if err := l.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			hours, err := a.Hours(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(hours) != 1 || hours[0].Rows != 120 || hours[0].Requests != 3 {
				t.Fatalf("hours: got %+v, want k2 with 3 requests and 120 rows", hours)
			}
		})
	}
}

// A refresh with a page whose rows were not counted has no row count, not a short one.
func TestLedgerRefreshRowsNotCounted(t *testing.T) {
	for _, backend := range ledgerBackends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			l, _ := ledgerPair(t, backend, func() time.Time { return now })
			for i, rows := range []int64{5, -1, 5} {
				now = now.Add(time.Second)
				more := 1
				if i == 2 {
					more = 0
				}
				l.Page(Page{Source: "k2", Subject: "alice", EntitySet: "Orders", Following: i > 0, More: more, Rows: rows, Status: 200})
			}
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			runs, err := l.Refreshes(ctx, "k2")
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != 1 || runs[0].Pages != 3 || runs[0].Rows != -1 || runs[0].Outcome != RefreshComplete {
				t.Fatalf("runs: got %+v, want one complete refresh of 3 pages whose rows are not known (-1)", runs)
			}
		})
	}
}

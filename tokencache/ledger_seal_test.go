package tokencache

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The people a ledger test names, and what must never be found in Redis in clear.
const (
	adaSubject = "sub-ada-5c1f9e"
	adaEmail   = "ada.lovelace@example.com"
	adaSession = "sessAda9k"
	bobSubject = "entra:tenant-77/oid-bob-31d4"
	bobMarker  = "rl-session:" + bobSubject + ":493000"
)

// ledgerScript writes through l and m (replicas) what the operators' page shows: usage
// of two users and a feed key, a finished refresh, one still in progress, audit events
// and a rate-limit marker, then flushes both.
func ledgerScript(t *testing.T, l, m *Ledger, now *time.Time) {
	t.Helper()
	ctx := context.Background()
	l.Record(Use{Source: "k2", Subject: adaSubject, KeyID: "key1", Status: 200, Bytes: 100})
	m.Record(Use{Source: "k2", Subject: adaSubject, Status: 200, Bytes: 50})
	m.Record(Use{Source: "wf", Subject: bobSubject, Status: 404, Bytes: 7})
	for i, more := range []int{1, 1, 0} {
		*now = now.Add(time.Second)
		l.Page(Page{Source: "k2", Subject: adaSubject, EntitySet: "Orders", Following: i > 0, More: more, Rows: 10, Status: 200, Bytes: 100})
	}
	*now = now.Add(time.Second)
	m.Page(Page{Source: "k2", Subject: bobSubject, EntitySet: "Items", More: 1, Rows: 5, Status: 200, Bytes: 50})
	for _, e := range []Event{
		{Kind: AuditSignIn, Subject: adaSubject, Email: adaEmail, Session: adaSession},
		{Kind: AuditKeyCreated, Subject: adaSubject, Email: adaEmail, Session: adaSession, KeyID: "key1"},
		{Kind: AuditRateLimited, Subject: bobSubject, Session: adaSession},
	} {
		if err := l.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if first, err := m.First(ctx, bobMarker, time.Hour); err != nil || !first {
		t.Fatalf("First: got %v, %v; want true", first, err)
	}
	for _, x := range []*Ledger{l, m} {
		if err := x.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// checkLedgerScript checks that r reads back what ledgerScript wrote.
func checkLedgerScript(t *testing.T, r *Ledger, now time.Time) {
	t.Helper()
	ctx := context.Background()
	users, err := r.Days(ctx, now, false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int64{}
	for _, u := range users {
		got[u.ID] = [2]int64{u.Requests, u.Bytes}
	}
	if want := map[string][2]int64{adaSubject: {2, 150}, bobSubject: {1, 7}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("users: got %v, want %v", got, want)
	}
	keys, err := r.Days(ctx, now, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ID != "key1" || keys[0].Requests != 1 {
		t.Errorf("keys: got %+v, want key1 with 1 request", keys)
	}
	runs, err := r.Refreshes(ctx, "k2")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Subject != adaSubject || runs[0].Pages != 3 || runs[0].Outcome != RefreshComplete {
		t.Errorf("refreshes: got %+v, want %s's complete refresh of 3 pages", runs, adaSubject)
	}
	events, err := r.AuditTrail(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind+" "+e.Subject+" "+e.Email+" "+e.Session)
	}
	want := []string{
		AuditRateLimited + " " + bobSubject + "  " + adaSession,
		AuditKeyCreated + " " + adaSubject + " " + adaEmail + " " + adaSession,
		AuditSignIn + " " + adaSubject + " " + adaEmail + " " + adaSession,
	}
	if strings.Join(kinds, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit trail:\ngot  %q\nwant %q", kinds, want)
	}
	if again, err := r.First(ctx, bobMarker, time.Hour); err != nil || again {
		t.Errorf("First again: got %v, %v; want false", again, err)
	}
}

// In Redis the operators' records name nobody: no key, field, member, value or stream
// entry holds a subject, an e-mail address or a session prefix, while the ledger reads
// them all back.
func TestLedgerNothingPersonalAtRest(t *testing.T) {
	for _, backend := range []string{"redis", "cluster"} {
		t.Run(backend, func(t *testing.T) {
			e := ledgerEnv(t, backend)
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			a := e.ledger(t, LedgerOptions{Now: clock, FlushInterval: -1})
			b := e.ledger(t, LedgerOptions{Now: clock, FlushInterval: -1})
			ledgerScript(t, a, b, &now)

			dump := e.dump(t)
			// The scan must have seen every kind of record, or finding nothing proves nothing.
			for _, want := range []string{"usage:u:", "usage:k:", "usage:h:", "audit", "refreshes:k2", "{runs}", "{runs}:last", "first:"} {
				found := false
				for k := range dump {
					found = found || strings.HasPrefix(k, e.prefix+want)
				}
				if !found {
					t.Errorf("no key %s%s* in the dump: the scan missed records", e.prefix, want)
				}
			}
			needles := map[string]string{
				"subject": adaSubject, "e-mail address": adaEmail, "session prefix": adaSession,
				"organizational caller": bobSubject, "caller's object ID": "oid-bob",
			}
			for k, v := range dump {
				for what, needle := range needles {
					if strings.Contains(k, needle) || bytes.Contains(v, []byte(needle)) {
						t.Errorf("%s found in clear under %q", what, k)
					}
				}
			}
			checkLedgerScript(t, b, now)
			// The refresh in progress is followed as well: a page on the other
			// replica completes it.
			now = now.Add(time.Second)
			a.Page(Page{Source: "k2", Subject: bobSubject, EntitySet: "Items", Following: true, More: 0, Rows: 5, Status: 200})
			if err := a.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			runs, _ := b.Refreshes(context.Background(), "k2")
			if len(runs) != 2 || runs[0].Subject != bobSubject || runs[0].Pages != 2 || runs[0].Outcome != RefreshComplete {
				t.Errorf("refreshes: got %+v, want %s's refresh of 2 pages first", runs, bobSubject)
			}
		})
	}
}

// Records sealed under key A are read by a ledger with keys [B, A], which writes under
// B; a ledger with B alone reads none of them.
func TestLedgerKeyRotation(t *testing.T) {
	for _, backend := range []string{"redis", "cluster"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := ledgerEnv(t, backend)
			keyA, keyB := testKey(t, "a"), testKey(t, "b")
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			old := e.ledger(t, LedgerOptions{Keys: []Key{keyA}, Now: clock, FlushInterval: -1})
			ledgerScript(t, old, old, &now)

			rotated := e.ledger(t, LedgerOptions{Keys: []Key{keyB, keyA}, Now: clock, FlushInterval: -1})
			checkLedgerScript(t, rotated, now)

			// A user counted under both names in one day is one user.
			rotated.Record(Use{Source: "k2", Subject: adaSubject, Status: 200, Bytes: 1})
			if err := rotated.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			users, err := rotated.Days(ctx, now, false)
			if err != nil {
				t.Fatal(err)
			}
			var ada []PartyDay
			for _, u := range users {
				if u.ID == adaSubject {
					ada = append(ada, u)
				}
			}
			if len(ada) != 1 || ada[0].Requests != 3 || ada[0].Bytes != 151 {
				t.Errorf("%s after the rotation: got %+v, want one day of 3 requests and 151 bytes", adaSubject, ada)
			}

			// The refresh in progress under A's name is not found under B's: a page
			// after the rotation starts another, and the old one ends as abandoned.
			now = now.Add(time.Second)
			rotated.Page(Page{Source: "k2", Subject: bobSubject, EntitySet: "Items", Following: true, More: 0, Rows: 5, Status: 200})
			now = now.Add(2 * time.Minute)
			if err := rotated.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			runs, err := rotated.Refreshes(ctx, "k2")
			if err != nil {
				t.Fatal(err)
			}
			outcomes := map[string]int{}
			for _, r := range runs {
				if r.Subject == bobSubject && r.EntitySet == "Items" {
					outcomes[r.Outcome]++
				}
			}
			if outcomes[RefreshComplete] != 1 || outcomes[RefreshAbandoned] != 1 {
				t.Errorf("Items after the rotation: got outcomes %v, want one complete and one abandoned", outcomes)
			}

			// Without A nothing of it opens: the sealing is real.
			stranger := e.ledger(t, LedgerOptions{Keys: []Key{keyB}, Now: clock, FlushInterval: -1})
			events, err := stranger.AuditTrail(ctx, 10)
			if err != nil || len(events) != 0 {
				t.Errorf("audit trail without key A: got %+v, %v; want none", events, err)
			}
			users, _ = stranger.Days(ctx, now, false)
			for _, u := range users {
				if u.ID == bobSubject {
					t.Errorf("users without key A: got %+v, want %s unnamed (counted under B only for %s)", users, bobSubject, adaSubject)
				}
			}
		})
	}
}

// What the release before sealing wrote, in clear, is still read, and a refresh it left
// in progress is ended.
func TestLedgerReadsPlainRecords(t *testing.T) {
	for _, backend := range []string{"redis", "cluster"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			e := ledgerEnv(t, backend)
			rdb, p := e.client, e.prefix
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			day := fmt.Sprint(now.Unix() / 86400)
			plainRun := func(v any) string {
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			field := "k2\x1f" + "alice" + "\x1fItems"
			pipe := rdb.Pipeline()
			pipe.HSet(ctx, p+"usage:u:"+day, "req|alice", 3, "bytes|alice", 30)
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: p + "audit", Values: []any{"e", plainRun(Event{Time: now, Kind: AuditSignIn, Subject: "alice", Email: "alice@example.com"})}})
			pipe.LPush(ctx, p+"refreshes:k2", plainRun(RefreshRun{Source: "k2", Subject: "alice", EntitySet: "Orders", Pages: 4, Outcome: RefreshComplete}))
			pipe.HSet(ctx, p+"{runs}", field, plainRun(run{RefreshRun: RefreshRun{Source: "k2", Subject: "alice", EntitySet: "Items", Start: now.Add(-time.Minute), Pages: 2, Rows: 9}, Last: now.Add(-30 * time.Second)}))
			pipe.ZAdd(ctx, p+"{runs}:last", redis.Z{Score: float64(now.Add(-30 * time.Second).UnixMilli()), Member: field})
			pipe.Set(ctx, p+"first:key:key1:", "1", time.Hour)
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}

			l := e.ledger(t, LedgerOptions{Now: func() time.Time { return now }, FlushInterval: -1})
			l.Record(Use{Source: "k2", Subject: "alice", Status: 200, Bytes: 5})
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			users, err := l.Days(ctx, now, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(users) != 1 || users[0].ID != "alice" || users[0].Requests != 4 || users[0].Bytes != 35 {
				t.Errorf("users: got %+v, want alice with 4 requests and 35 bytes (in clear and sealed)", users)
			}
			events, err := l.AuditTrail(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 1 || events[0].Subject != "alice" || events[0].Email != "alice@example.com" {
				t.Errorf("audit trail: got %+v, want alice's sign-in", events)
			}
			if first, err := l.First(ctx, "key:key1:", time.Hour); err != nil || first {
				t.Errorf("First of a marker set in clear: got %v, %v; want false", first, err)
			}

			now = now.Add(time.Minute) // the refresh in progress pauses past the gap
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			runs, err := l.Refreshes(ctx, "k2")
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != 2 || runs[0].EntitySet != "Items" || runs[0].Outcome != RefreshAbandoned || runs[0].Pages != 2 ||
				runs[1].EntitySet != "Orders" || runs[1].Subject != "alice" || runs[1].Pages != 4 {
				t.Errorf("refreshes: got %+v, want Items abandoned after 2 pages, then Orders of 4 pages", runs)
			}
			if n, err := rdb.HLen(ctx, p+"{runs}").Result(); err != nil || n != 0 {
				t.Errorf("runs in progress: got %d, %v; want the one in clear ended and gone", n, err)
			}
		})
	}
}

// A sealed record copied under another Redis key does not open there: it is left out.
func TestLedgerRecordMovedDoesNotOpen(t *testing.T) {
	for _, backend := range []string{"redis", "cluster"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			here := ledgerEnv(t, backend)
			there := &env{name: here.name, client: here.client, prefix: testPrefix()} // another bridge on the same Redis
			t.Cleanup(func() { there.cleanup(t) })
			rdb := here.client
			now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			src := here.ledger(t, LedgerOptions{Now: clock, FlushInterval: -1})
			dst := there.ledger(t, LedgerOptions{Now: clock, FlushInterval: -1})
			if err := src.Audit(ctx, Event{Kind: AuditSignIn, Subject: "mallory"}); err != nil {
				t.Fatal(err)
			}
			if err := dst.Audit(ctx, Event{Kind: AuditSignIn, Subject: "alice"}); err != nil {
				t.Fatal(err)
			}
			src.Page(Page{Source: "k2", Subject: "mallory", EntitySet: "Orders", More: 0, Status: 200})
			src.Record(Use{Source: "k2", Subject: "mallory", Status: 200})
			src.Record(Use{Source: "k2", Subject: "alice", Status: 200})
			if err := src.Flush(ctx); err != nil {
				t.Fatal(err)
			}

			msgs, err := rdb.XRange(ctx, here.prefix+"audit", "-", "+").Result()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("audit stream: got %v, %v; want one entry", msgs, err)
			}
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: there.prefix + "audit", Values: msgs[0].Values}).Err(); err != nil {
				t.Fatal(err)
			}
			events, err := dst.AuditTrail(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != 1 || events[0].Subject != "alice" {
				t.Errorf("audit trail with a moved event: got %+v, want alice's event only", events)
			}

			// A history entry moved to another source's list.
			hist, err := rdb.LRange(ctx, here.prefix+"refreshes:k2", 0, -1).Result()
			if err != nil || len(hist) != 1 {
				t.Fatalf("history: got %d entries, %v; want one", len(hist), err)
			}
			rdb.LPush(ctx, here.prefix+"refreshes:wf", hist[0])
			if runs, err := src.Refreshes(ctx, "wf"); err != nil || len(runs) != 0 {
				t.Errorf("refreshes of wf with k2's entry: got %+v, %v; want none", runs, err)
			}

			// A user's sealed subject moved to another user's name does not name them.
			bucket := here.prefix + "usage:u:" + fmt.Sprint(now.Unix()/86400)
			fields, err := rdb.HGetAll(ctx, bucket).Result()
			if err != nil {
				t.Fatal(err)
			}
			var whos []string
			for f := range fields {
				if strings.HasPrefix(f, "who|") {
					whos = append(whos, f)
				}
			}
			if len(whos) != 2 {
				t.Fatalf("who fields: got %v, want two", whos)
			}
			rdb.HSet(ctx, bucket, whos[0], fields[whos[1]])
			users, err := src.Days(ctx, now, false)
			if err != nil {
				t.Fatal(err)
			}
			named := 0
			for _, u := range users {
				if u.ID == "alice" || u.ID == "mallory" {
					named++
				}
			}
			if len(users) != 2 || named != 1 {
				t.Errorf("users after swapping a sealed subject: got %+v, want one named and one left as its HMAC", users)
			}
		})
	}
}

// With Redis and no keys the ledger keeps nothing rather than keep it in clear.
func TestLedgerWithoutKeysRefuses(t *testing.T) {
	ctx := context.Background()
	e := redisEnv(t)
	l := NewLedger(LedgerOptions{Redis: e.client, Prefix: e.prefix, FlushInterval: time.Millisecond})
	defer l.Close()
	l.Record(Use{Source: "k2", Subject: "alice", Status: 200})
	l.Page(Page{Source: "k2", Subject: "alice", EntitySet: "Orders", More: 0, Status: 200})
	if err := l.Audit(ctx, Event{Kind: AuditSignIn, Subject: "alice"}); err == nil {
		t.Error("Audit: got nil, want an error")
	}
	if _, err := l.First(ctx, "x", time.Hour); err == nil {
		t.Error("First: got nil, want an error")
	}
	if err := l.Flush(ctx); err == nil {
		t.Error("Flush: got nil, want an error")
	}
	if _, err := l.Days(ctx, time.Now(), false); err == nil {
		t.Error("Days: got nil, want an error")
	}
	if dump := e.dump(t); len(dump) != 0 {
		t.Errorf("Redis: got %d keys, want none", len(dump))
	}
}

// A user's sealed subject is written once a day per replica, and again within the hour
// when the store lost it (a failover to a replica that had not seen it).
func TestLedgerWritesWhoAgainWithinTheHour(t *testing.T) {
	ctx := context.Background()
	e := redisEnv(t)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := e.ledger(t, LedgerOptions{Now: func() time.Time { return now }, FlushInterval: -1})
	bucket := e.prefix + "usage:u:" + fmt.Sprint(now.Unix()/86400)
	record := func() {
		t.Helper()
		l.Record(Use{Source: "k2", Subject: "alice", Status: 200})
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	whoFields := func() []string {
		t.Helper()
		fields, err := e.client.HKeys(ctx, bucket).Result()
		if err != nil {
			t.Fatal(err)
		}
		return slices.DeleteFunc(fields, func(f string) bool { return !strings.HasPrefix(f, "who|") })
	}
	record()
	who := whoFields()
	if len(who) != 1 {
		t.Fatalf("who fields: got %v, want one", who)
	}
	e.client.HDel(ctx, bucket, who[0])
	now = now.Add(10 * time.Minute)
	record()
	if got := whoFields(); len(got) != 0 {
		t.Errorf("who fields in the same hour: got %v, want none (written once)", got)
	}
	now = now.Add(time.Hour)
	record()
	if got := whoFields(); len(got) != 1 || got[0] != who[0] {
		t.Errorf("who fields an hour later: got %v, want %v again", got, who)
	}
	users, err := l.Days(ctx, now, false)
	if err != nil || len(users) != 1 || users[0].ID != "alice" || users[0].Requests != 3 {
		t.Errorf("users: got %+v, %v; want alice with 3 requests", users, err)
	}
}

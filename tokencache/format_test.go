package tokencache

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Every value says its version; a replica reads both versions and writes valueV3 only
// once the minimum format says every replica reads it.
func TestValueVersionFollowsFormat(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		s := e.store(t, Options{HotCacheTTL: -1})
		other := e.store(t, Options{HotCacheTTL: -1})
		versionOf := func(sid string) byte {
			t.Helper()
			raw, err := s.b.get(ctx, s.sessionKey(sid))
			if err != nil {
				t.Fatal(err)
			}
			return raw[0]
		}
		wantFirst := valueV1
		if e.client == nil {
			wantFirst = valueV3 // no other replica: the newest at once
		}
		before := newSession(t, s, "sub-1")
		tok, err := s.Issue(ctx, before)
		if err != nil {
			t.Fatal(err)
		}
		if got := versionOf(before); got != wantFirst {
			t.Errorf("before the format is raised: a session value of version %d, want %d", got, wantFirst)
		}
		for _, f := range []int{FormatSetIndex, FormatVersioned} {
			e.setFormat(t, f, s, other)
		}
		after := newSession(t, s, "sub-1")
		if got := versionOf(after); got != valueV3 {
			t.Errorf("at format %d: a session value of version %d, want %d", FormatVersioned, got, valueV3)
		}
		// What the older version wrote still works everywhere, and is rewritten as the
		// newer version when it changes.
		rot, err := other.Rotate(ctx, string(tok.RefreshToken))
		if err != nil {
			t.Fatalf("rotating a family written before the raise: %v", err)
		}
		if sid, err := s.Authenticate(ctx, string(rot.AccessToken)); err != nil || sid != before {
			t.Errorf("Authenticate after the raise: %q, %v; want %q", sid, err, before)
		}
		if _, _, err := other.CreateFeedKey(ctx, before, "k"); err != nil {
			t.Fatal(err)
		}
		if got := versionOf(before); got != valueV3 {
			t.Errorf("a session written again after the raise: version %d, want %d", got, valueV3)
		}
		got, err := other.indexSIDs(ctx, "sub-1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sorted([]string{before, after}), got); diff != "" {
			t.Errorf("index across the raise (-want +got):\n%s", diff)
		}
		if err := other.EndSubject(ctx, "sub-1"); err != nil {
			t.Fatal(err)
		}
		for k := range e.dump(t) {
			if strings.Contains(k, "idx:") {
				t.Errorf("after EndSubject the index %q is left, with members of the other version", k)
			}
		}
	})
}

// The version is bound into what it seals: a value of one version does not open as
// another, nor does a version this release does not know.
func TestValueVersionIsAuthenticated(t *testing.T) {
	ring, err := newKeyring([]Key{sharedKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		write    byte
		relabel  byte // 0: keep
		wantOpen bool
	}{
		{"v1", valueV1, 0, true},
		{"v3", valueV3, 0, true},
		{"v3 relabelled v1", valueV3, valueV1, false},
		{"v1 relabelled v3", valueV1, valueV3, false},
		{"unknown version 2", valueV1, 2, false},
		{"unknown version 4", valueV3, 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ring.write.Store(uint32(tc.write))
			sealed := ring.seal([]byte("plain"), "bridge:k", "sub")
			if sealed[0] != tc.write {
				t.Fatalf("sealed with version %d, want %d", sealed[0], tc.write)
			}
			if tc.relabel != 0 {
				sealed[0] = tc.relabel
			}
			plain, err := ring.open(sealed, "bridge:k", "sub")
			if gotOpen := err == nil && string(plain) == "plain"; gotOpen != tc.wantOpen {
				t.Errorf("opened: %v (%v), want %v", gotOpen, err, tc.wantOpen)
			}
		})
	}
}

// The minimum format is only raised, never past what this release knows, and every
// replica follows a raise: at once through Format, otherwise within formatCheck.
func TestRaiseFormat(t *testing.T) {
	e := redisEnv(t)
	a := e.store(t, Options{})
	b := e.store(t, Options{})
	if got := b.minFormat(ctx); got != FormatListIndex {
		t.Errorf("with no format key: %d, want %d", got, FormatListIndex)
	}
	if err := a.RaiseFormat(ctx, FormatVersioned); err != nil {
		t.Fatal(err)
	}
	if err := a.RaiseFormat(ctx, FormatSetIndex); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Format(ctx); err != nil || got != FormatVersioned {
		t.Errorf("after raising to 3 and then to 2: %d, %v; want 3", got, err)
	}
	for _, f := range []int{0, CurrentFormat + 1} {
		if err := a.RaiseFormat(ctx, f); err == nil {
			t.Errorf("RaiseFormat(%d): no error", f)
		}
	}
	if got := b.minFormat(ctx); got != FormatListIndex {
		t.Errorf("b within formatCheck of its last read: %d, want the %d it read", got, FormatListIndex)
	}
	b.formatAt.Store(time.Now().Add(-formatCheck).UnixNano())
	if got := b.minFormat(ctx); got != FormatVersioned {
		t.Errorf("b after formatCheck: %d, want %d", got, FormatVersioned)
	}
	if got := b.ring.version(); got != valueV3 {
		t.Errorf("b writes version %d, want %d", got, valueV3)
	}
	e.client.Set(ctx, e.prefix+"format", "three", 0)
	if _, err := b.Format(ctx); err == nil {
		t.Errorf("Format over %q: no error", "three")
	}
	if got := b.ring.version(); got != valueV3 {
		t.Errorf("after an unreadable format key b writes version %d, want the last one, %d", got, valueV3)
	}
}

// oldEndSubject is EndSubject as the releases before the sorted-set index did it: the
// sessions of the subject are those of its list, and nothing else.
func oldEndSubject(t *testing.T, s *Store, subject string) {
	t.Helper()
	name := s.legacyIndexNames(subject)[0]
	raw, err := s.b.get(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var rec indexRecord
	if err := s.open(raw, name, subject, &rec); err != nil {
		t.Fatalf("the list does not open as those releases open it: %v", err)
	}
	for _, sid := range rec.SIDs {
		if err := s.b.del(ctx, s.sessionKey(sid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.b.del(ctx, name); err != nil {
		t.Fatal(err)
	}
}

// While the releases that read only the list may run, the list is kept beside the set,
// so either kind of replica ends every session of a subject, whoever created it.
func TestListIndexKeptUntilFormatRaised(t *testing.T) {
	e := redisEnv(t)
	clk := newClock()
	s := e.store(t, Options{Now: clk.Now, HotCacheTTL: -1})

	// An old replica ends sessions that the new one created or used.
	created := []string{newSession(t, s, "sub-1"), newSession(t, s, "sub-1")}
	used := newSession(t, s, "sub-1")
	if err := s.listRemove(ctx, "sub-1", []string{used}); err != nil { // as if an old replica lost it
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute)
	if _, err := s.Token(ctx, used); err != nil {
		t.Fatal(err)
	}
	oldEndSubject(t, s, "sub-1")
	for _, sid := range append(created, used) {
		if _, err := s.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
			t.Errorf("session %s outlived an old replica's EndSubject: %v", sid, err)
		}
	}

	// The new replica ends what an old one created (listed in the list only), and what
	// the new one ended leaves the list.
	oldOnes := []string{newSession(t, s, "sub-2"), newSession(t, s, "sub-2")}
	if err := s.unindex(ctx, "sub-2", oldOnes); err != nil {
		t.Fatal(err)
	}
	name := s.legacyIndexNames("sub-2")[0]
	if _, err := s.b.set(ctx, name, s.seal(&indexRecord{SIDs: oldOnes}, name, "sub-2"), time.Hour, setAlways); err != nil {
		t.Fatal(err)
	}
	mine := newSession(t, s, "sub-2")
	if err := s.EndSession(ctx, mine); err != nil {
		t.Fatal(err)
	}
	if got, err := s.listSIDs(ctx, "sub-2"); err != nil || slices.Contains(got, mine) {
		t.Errorf("the list after EndSession: %v, %v; want it without %s", got, err, mine)
	}
	if err := s.EndSubject(ctx, "sub-2"); err != nil {
		t.Fatal(err)
	}
	for _, sid := range oldOnes {
		if _, err := s.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
			t.Errorf("a session listed only in the list outlived EndSubject: %v", err)
		}
	}
	if _, err := s.b.get(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Errorf("the list after EndSubject: %v, want it deleted", err)
	}

	// Once raised, sign-ins and uses no longer write the list.
	e.setFormat(t, FormatSetIndex, s)
	sid := newSession(t, s, "sub-3")
	clk.Add(2 * time.Minute)
	if _, err := s.Token(ctx, sid); err != nil {
		t.Fatal(err)
	}
	if _, err := s.b.get(ctx, s.legacyIndexNames("sub-3")[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("a list at format %d: %v, want none", FormatSetIndex, err)
	}
}

// EndSession and EndSubject leave no key of what they end: not the session, its
// families, feed keys, lock or index entries, nor the lookup keys of its access and
// refresh tokens and feed keys, under any key of the ring and at every format.
func TestEndsLeaveNoKeys(t *testing.T) {
	for _, f := range []int{FormatListIndex, FormatVersioned} {
		forEachEnv(t, func(t *testing.T, e *env) {
			t.Logf("format %d", f)
			clk := newClock()
			k1, k2 := testKey(t, "2026a"), testKey(t, "2026b")
			old := e.store(t, Options{Now: clk.Now, HotCacheTTL: -1, Keys: []Key{k1}})
			s := e.store(t, Options{Now: clk.Now, HotCacheTTL: -1, Keys: []Key{k2, k1}})
			e.setFormat(t, f, old, s)
			bystander := newSession(t, s, "sub-other")
			if _, err := s.Issue(ctx, bystander); err != nil {
				t.Fatal(err)
			}
			before := e.dump(t)

			// A busy session: families issued under the old key and rotated under the new,
			// feed keys used under both, a refresh lock held.
			busy := func(subject string) string {
				sid := newSession(t, old, subject)
				tok, err := old.Issue(ctx, sid)
				if err != nil {
					t.Fatal(err)
				}
				_, fk, err := old.CreateFeedKey(ctx, sid, "a")
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					clk.Add(2 * time.Minute)
					if tok, err = s.Rotate(ctx, string(tok.RefreshToken)); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := s.FeedKey(ctx, string(fk)); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Issue(ctx, sid); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.CreateFeedKey(ctx, sid, "b"); err != nil {
					t.Fatal(err)
				}
				if _, err := s.b.set(ctx, s.lockKey(sid), []byte("held"), time.Minute, setNX); err != nil {
					t.Fatal(err)
				}
				return sid
			}
			one := busy("sub-1")
			if len(e.dump(t)) <= len(before)+8 {
				t.Fatalf("a busy session added only %d keys", len(e.dump(t))-len(before))
			}
			if err := s.EndSession(ctx, one); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(e.dump(t)))); diff != "" {
				t.Errorf("keys after EndSession (-before +after):\n%s", diff)
			}

			for range 3 {
				busy("sub-2")
			}
			if err := s.EndSubject(ctx, "sub-2"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(e.dump(t)))); diff != "" {
				t.Errorf("keys after EndSubject (-before +after):\n%s", diff)
			}
			if _, err := s.Session(ctx, bystander); err != nil {
				t.Errorf("another subject's session after the ends: %v", err)
			}
		})
	}
}

// Ending a session deletes only lookup keys under the store's prefix, whatever its
// lookups set holds.
func TestEndDeletesOnlyOwnLookups(t *testing.T) {
	e := redisEnv(t)
	s := e.store(t, Options{})
	sid := newSession(t, s, "sub-1")
	e.client.Set(ctx, "elsewhere", "x", time.Minute)
	t.Cleanup(func() { e.client.Del(ctx, "elsewhere") })
	if err := s.track(ctx, sid, time.Time{}, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	if err := s.EndSession(ctx, sid); err != nil {
		t.Fatal(err)
	}
	if n, err := e.client.Exists(ctx, "elsewhere").Result(); err != nil || n != 1 {
		t.Errorf("a key outside the prefix named in the lookups set: exists %d, %v; want kept", n, err)
	}
}

// A session's lookups set drops the access tokens that expired as new ones are issued,
// so a session that rotates all day keeps a short set.
func TestLookupsDropExpiredAccessTokens(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		s := e.store(t, Options{Now: clk.Now, HotCacheTTL: -1, AccessTTL: 10 * time.Minute})
		sid := newSession(t, s, "sub-1")
		tok, err := s.Issue(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			clk.Add(time.Minute)
			if tok, err = s.Rotate(ctx, string(tok.RefreshToken)); err != nil {
				t.Fatal(err)
			}
		}
		tracked, err := s.b.zall(ctx, s.lookupsKey(sid))
		if err != nil {
			t.Fatal(err)
		}
		// One refresh-token lookup, ten live access tokens, and what the last pushes
		// have not checked yet.
		if len(tracked) > 1+10+2*pruneBatch {
			t.Errorf("after 200 rotations the lookups set holds %d names, want at most %d", len(tracked), 1+10+2*pruneBatch)
		}
	})
}

// A replica that cannot read the format keeps the last one and tries again only after
// formatCheck, so an outage costs no extra round trip per request.
func TestFormatReadFailureBacksOff(t *testing.T) {
	e := redisEnv(t)
	s := e.store(t, Options{})
	e.setFormat(t, FormatVersioned, s)
	down := &failingGets{backend: s.b}
	s.b = down
	s.formatAt.Store(time.Now().Add(-formatCheck).UnixNano())
	for range 3 {
		if got := s.minFormat(ctx); got != FormatVersioned {
			t.Errorf("minFormat after a failed read: %d, want the last one, %d", got, FormatVersioned)
		}
	}
	if got := down.calls.Load(); got != 1 {
		t.Errorf("reads of the format key in three calls after a failure: %d, want 1", got)
	}
}

// failingGets is a backend whose reads fail, as while Redis is down; it counts them.
type failingGets struct {
	backend
	calls atomic.Int64
}

func (f *failingGets) get(context.Context, string) ([]byte, error) {
	f.calls.Add(1)
	return nil, unavailable(errors.New("connection refused"))
}

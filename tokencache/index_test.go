package tokencache

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// spy records what the Store asks of its backend: the keys it reads and how many
// session keys it checks for existence.
type spy struct {
	backend
	mu      sync.Mutex
	reads   []string
	checked int
}

func (p *spy) note(keys ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads = append(p.reads, keys...)
}

func (p *spy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads, p.checked = nil, 0
}

func (p *spy) get(ctx context.Context, key string) ([]byte, error) {
	p.note(key)
	return p.backend.get(ctx, key)
}

func (p *spy) mget(ctx context.Context, keys ...string) ([][]byte, error) {
	p.note(keys...)
	return p.backend.mget(ctx, keys...)
}

func (p *spy) zall(ctx context.Context, key string) ([][]byte, error) {
	p.note(key)
	return p.backend.zall(ctx, key)
}

func (p *spy) exists(ctx context.Context, key string) (bool, error) {
	p.mu.Lock()
	p.checked++
	p.mu.Unlock()
	return p.backend.exists(ctx, key)
}

func (p *spy) existing(ctx context.Context, keys ...string) ([]bool, error) {
	p.mu.Lock()
	p.checked += len(keys)
	p.mu.Unlock()
	return p.backend.existing(ctx, keys...)
}

func spyOn(s *Store) *spy {
	p := &spy{backend: s.b}
	s.b = p
	return p
}

func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}

// The ordered set under the index behaves the same on every backend, binary members
// included.
func TestOrderedSet(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		s := e.store(t, Options{})
		key := e.prefix + "idx:test"
		a, b, c, gone := []byte{0, 'a', 0xff}, []byte("b\r\n"), []byte("c"), []byte("gone")
		str := func(ms [][]byte) []string {
			out := []string{}
			for _, m := range ms {
				out = append(out, string(m))
			}
			return out
		}
		check := func(step string, want ...[]byte) {
			t.Helper()
			got, err := s.b.zall(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(str(want), str(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", step, diff)
			}
		}
		head, err := s.b.zpush(ctx, key, [][]byte{a, b, c}, time.Hour, 2)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(str([][]byte{a, b}), str(head)); diff != "" {
			t.Errorf("head after the first push (-want +got):\n%s", diff)
		}
		if _, err := s.b.zpush(ctx, key, [][]byte{a}, time.Hour, 0); err != nil {
			t.Fatal(err)
		}
		check("a pushed again moves to the end", b, c, a)
		if err := s.b.zsettle(ctx, key, [][]byte{b, gone}, [][]byte{c}); err != nil {
			t.Fatal(err)
		}
		check("settle drops c, moves b to the end, does not add gone", a, b)
		if head, _ = s.b.zpush(ctx, key, nil, time.Hour, 10); len(head) != 2 {
			t.Errorf("head of a 2-member set: got %d members", len(head))
		}
		if err := s.b.zsettle(ctx, key, nil, [][]byte{a, b}); err != nil {
			t.Fatal(err)
		}
		check("emptied")
		if ok, _ := s.b.exists(ctx, key); ok {
			t.Error("an emptied set is still stored")
		}
		sk := s.sessionKey(newSession(t, s, "sub-1"))
		got, err := s.b.existing(ctx, sk, key, sk)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]bool{true, false, true}, got); diff != "" {
			t.Errorf("existing (-want +got):\n%s", diff)
		}
	})
}

// An index member is found again by its session alone, opens only where it was written
// and says nothing readable.
func TestIndexMember(t *testing.T) {
	s, err := New(Options{Keys: []Key{sharedKey}})
	if err != nil {
		t.Fatal(err)
	}
	sid := random(16)
	name := s.indexNames("sub-1")[0]
	m := s.member(0, name, "sub-1", sid)
	if !bytes.Equal(m, s.member(0, name, "sub-1", sid)) {
		t.Error("one session gave two members")
	}
	if bytes.Equal(m, s.member(0, name, "sub-1", random(16))) {
		t.Error("two sessions gave one member")
	}
	if got, ok := s.entrySID(m, name, "sub-1"); !ok || got != sid {
		t.Errorf("entrySID: got %q, %v; want %q", got, ok, sid)
	}
	other := s.indexNames("sub-2")[0]
	if _, ok := s.entrySID(m, other, "sub-2"); ok {
		t.Error("a member copied to another subject's index opens")
	}
	if _, ok := s.entrySID(m, name, "sub-2"); ok {
		t.Error("a member opens for another subject")
	}
	if bytes.Contains(m, []byte(sid)) || bytes.Contains(m, []byte("sub-1")) {
		t.Error("the member holds the session ID or subject in clear")
	}
}

// A sign-in checks at most pruneBatch sessions however many its subject has, and still
// every dead session leaves the index within ceil(n/pruneBatch) sign-ins.
func TestSignInPrunesBoundedBatches(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		s := e.store(t, Options{})
		e.setFormat(t, FormatSetIndex, s) // the list of FormatListIndex is read whole, as its releases did
		const n = 40
		var all, live []string
		for range n {
			all = append(all, newSession(t, s, "sub-1"))
		}
		for i, sid := range all {
			if i%3 == 0 || i == n-1 {
				if err := s.b.del(ctx, s.sessionKey(sid)); err != nil { // as a TTL would
					t.Fatal(err)
				}
			} else {
				live = append(live, sid)
			}
		}
		p := spyOn(s)
		for round := range (n + pruneBatch - 1) / pruneBatch {
			p.reset()
			live = append(live, newSession(t, s, "sub-1"))
			if p.checked > pruneBatch {
				t.Errorf("sign-in %d checked %d sessions, want at most %d", round+1, p.checked, pruneBatch)
			}
			for _, k := range p.reads {
				if strings.Contains(k, "idx:") || strings.Contains(k, "sub:") {
					t.Errorf("sign-in %d read the index %q", round+1, k)
				}
			}
		}
		got, err := s.indexSIDs(ctx, "sub-1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sorted(live), got); diff != "" {
			t.Errorf("index after %d sign-ins (-want +got):\n%s", (n+pruneBatch-1)/pruneBatch, diff)
		}
	})
}

// A use of a session never reads its subject's index, yet lists the session there again
// if it was lost, and keeps the index alive past RefreshTTL for as long as it is used.
func TestUseKeepsIndexWithoutReadingIt(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		s := e.store(t, Options{Now: clk.Now, HotCacheTTL: -1, RefreshTTL: time.Hour})
		e.setFormat(t, FormatSetIndex, s) // the list of FormatListIndex is read, as its releases did
		sid := newSession(t, s, "sub-1")
		for range 20 {
			newSession(t, s, "sub-1")
		}
		if err := s.unindex(ctx, "sub-1", []string{sid}); err != nil { // as if lost
			t.Fatal(err)
		}
		p := spyOn(s)
		for range 3 { // 150 minutes, each use within RefreshTTL of the last
			clk.Add(50 * time.Minute)
			p.reset()
			if _, err := s.Token(ctx, sid); err != nil {
				t.Fatal(err)
			}
			for _, k := range p.reads {
				if strings.Contains(k, "idx:") || strings.Contains(k, "sub:") {
					t.Errorf("a use read the index %q", k)
				}
			}
		}
		s.b = p.backend
		got, err := s.indexSIDs(ctx, "sub-1")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(got, sid) {
			t.Errorf("index after uses: %v lacks the used session %s", got, sid)
		}
		if err := s.EndSubject(ctx, "sub-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
			t.Errorf("EndSubject missed the used session: %v", err)
		}
	})
}

// EndSubject ends every session of a subject after many sign-ins on two replicas, with
// sessions used, ended, expired and holding feed keys, and leaves no index behind.
func TestEndSubjectAfterManySignIns(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		a := e.store(t, Options{Now: clk.Now, HotCacheTTL: -1})
		b := e.store(t, Options{Now: clk.Now, HotCacheTTL: -1})
		other := newSession(t, a, "sub-2")
		var sids []string
		var keys []Secret
		for i := range 120 {
			r := a
			if i%2 == 1 {
				r = b
			}
			sid := newSession(t, r, "sub-1")
			sids = append(sids, sid)
			switch i % 10 {
			case 1:
				_, key, err := r.CreateFeedKey(ctx, sid, "k")
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, key)
			case 3:
				clk.Add(2 * time.Minute)
				if _, err := r.Token(ctx, sids[i/2]); err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			case 5:
				if err := r.EndSession(ctx, sids[i/3]); err != nil {
					t.Fatal(err)
				}
			case 7:
				if err := r.b.del(ctx, r.sessionKey(sids[i-4])); err != nil { // as a TTL would
					t.Fatal(err)
				}
			}
		}
		if err := b.EndSubject(ctx, "sub-1"); err != nil {
			t.Fatal(err)
		}
		for _, sid := range sids {
			if _, err := a.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
				t.Errorf("session %s outlived EndSubject: %v", sid, err)
			}
		}
		for i, key := range keys {
			if _, err := a.FeedKey(ctx, string(key)); !errors.Is(err, ErrNotFound) {
				t.Errorf("feed key %d outlived EndSubject: %v", i, err)
			}
		}
		if got, err := a.indexSIDs(ctx, "sub-1"); err != nil || len(got) != 0 {
			t.Errorf("index after EndSubject: %v, %v; want none", got, err)
		}
		for k := range e.dump(t) {
			if k == a.indexNames("sub-1")[0] {
				t.Errorf("the ended subject's index %q is still stored", k)
			}
		}
		if _, err := a.Session(ctx, other); err != nil {
			t.Errorf("another subject's session: %v", err)
		}
	})
}

// An index written by earlier versions (one sealed list under bridge:sub:, possibly
// under an older key) is still honoured: listed, ended, and moved into the set.
func TestLegacyIndex(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		k1, k2 := testKey(t, "2026a"), testKey(t, "2026b")
		old := e.store(t, Options{Keys: []Key{k1}})
		s1, s2, s3 := newSession(t, old, "sub-1"), newSession(t, old, "sub-1"), newSession(t, old, "sub-1")
		_, key, err := old.CreateFeedKey(ctx, s3, "k")
		if err != nil {
			t.Fatal(err)
		}
		dead := random(16)
		// As an earlier version left them: listed in the old form only.
		if err := old.unindex(ctx, "sub-1", []string{s1, s2, s3}); err != nil {
			t.Fatal(err)
		}
		legacy := old.legacyIndexNames("sub-1")[0]
		val := old.seal(&indexRecord{SIDs: []string{s1, s2, s3, dead}}, legacy, "sub-1")
		if _, err := old.b.set(ctx, legacy, val, time.Hour, setAlways); err != nil {
			t.Fatal(err)
		}

		s := e.store(t, Options{Keys: []Key{k2, k1}})
		if list, err := s.FeedKeys(ctx, "sub-1"); err != nil || len(list) != 1 {
			t.Errorf("FeedKeys through an old list: %v, %v; want one key", list, err)
		}
		if _, err := s.b.get(ctx, legacy); !errors.Is(err, ErrNotFound) {
			t.Errorf("the old list after a listing: %v, want it moved", err)
		}
		if err := s.EndSession(ctx, s1); err != nil {
			t.Fatal(err)
		}
		got, err := s.indexSIDs(ctx, "sub-1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sorted([]string{s2, s3}), got); diff != "" {
			t.Errorf("index after FeedKeys and EndSession (-want +got):\n%s", diff)
		}

		// EndSession moves an old list too, and EndSubject ends what it lists.
		s4 := newSession(t, old, "sub-1")
		if err := old.unindex(ctx, "sub-1", []string{s4}); err != nil {
			t.Fatal(err)
		}
		val = old.seal(&indexRecord{SIDs: []string{s2, s4}}, legacy, "sub-1")
		if _, err := old.b.set(ctx, legacy, val, time.Hour, setAlways); err != nil {
			t.Fatal(err)
		}
		if err := s.EndSession(ctx, s2); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.indexSIDs(ctx, "sub-1"); !slices.Contains(got, s4) || slices.Contains(got, s2) {
			t.Errorf("index after EndSession over an old list: %v; want %s and not %s", got, s4, s2)
		}
		if err := s.EndSubject(ctx, "sub-1"); err != nil {
			t.Fatal(err)
		}
		for _, sid := range []string{s1, s2, s3, s4} {
			if _, err := s.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
				t.Errorf("session %s outlived EndSubject: %v", sid, err)
			}
		}
		if _, err := s.FeedKey(ctx, string(key)); !errors.Is(err, ErrNotFound) {
			t.Errorf("feed key outlived EndSubject: %v", err)
		}
	})
}

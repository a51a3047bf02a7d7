package tokencache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

// The behaviour suite: every test runs against the memory store, Redis (real when
// BRIDGE_TEST_REDIS_URL is set, miniredis otherwise) and a real Redis Cluster when
// BRIDGE_TEST_REDIS_CLUSTER is set.
func forEachEnv(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, e := range envs(t) {
		t.Run(e.name, func(t *testing.T) { fn(t, e) })
	}
}

var ctx = context.Background()

func newSession(t testing.TB, s *Store, subject string) string {
	t.Helper()
	sid, err := s.CreateSession(ctx, Session{
		Subject: subject, Name: "Ada Lovelace", Email: "ada@example.com",
		AccessToken: "provider-at-" + Secret(random(8)), RefreshToken: "provider-rt-" + Secret(random(8)),
		Expiry: s.now().Add(30 * 24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

func TestSessionRoundTrip(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		s := e.store(t, Options{Now: clk.Now})
		in := Session{ID: "ignored", Subject: "sub-1", Name: "Ada", Email: "ada@example.com",
			AccessToken: "eyJhbGciOi.x.y", RefreshToken: "0.AXoA-rt", Expiry: clk.Now().Add(time.Hour)}
		sid, err := s.CreateSession(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if sid == in.ID || !validID(sid, sessionIDLen) {
			t.Fatalf("session ID %q: want a fresh random one", sid)
		}
		got, err := s.Session(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		want := in
		want.ID, want.CreatedAt, want.LastUsed = sid, clk.Now(), clk.Now()
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Session (-want +got):\n%s", diff)
		}
		other, _ := s.CreateSession(ctx, in)
		if other == sid {
			t.Errorf("two sessions got the same ID")
		}
		for _, id := range []string{"", "nope", strings.Repeat("A", 22), "{x}" + sid[3:]} {
			if _, err := s.Session(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Session(%q): got %v, want ErrNotFound", id, err)
			}
		}
		if _, err := s.CreateSession(ctx, Session{}); err == nil {
			t.Errorf("CreateSession without subject: got no error")
		}
		// Sliding lifetime: unused for RefreshTTL, the session is gone.
		short := e.store(t, Options{Now: clk.Now, RefreshTTL: time.Hour})
		sid2 := newSession(t, short, "sub-2")
		clk.Add(59 * time.Minute)
		if _, err := short.Token(ctx, sid2); err != nil { // a use slides it
			t.Fatal(err)
		}
		clk.Add(59 * time.Minute)
		if _, err := short.Session(ctx, sid2); err != nil {
			t.Fatalf("after a use the session should live on: %v", err)
		}
		clk.Add(61 * time.Minute)
		if _, err := short.Session(ctx, sid2); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unused for longer than RefreshTTL: got %v, want ErrNotFound", err)
		}
	})
}

func TestIssueAuthenticateRotate(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		s := e.store(t, Options{Now: clk.Now, ReuseGrace: 30 * time.Second})
		sid := newSession(t, s, "sub-1")
		first, err := s.Issue(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		if first.SessionID != sid || first.ExpiresIn != time.Hour || first.AccessToken == "" || first.RefreshToken == "" {
			t.Fatalf("Issue: got %+v", first)
		}
		if got, err := s.Authenticate(ctx, string(first.AccessToken)); err != nil || got != sid {
			t.Fatalf("Authenticate: got %q, %v; want %q", got, err, sid)
		}
		second, err := s.Rotate(ctx, string(first.RefreshToken))
		if err != nil {
			t.Fatal(err)
		}
		if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
			t.Fatalf("Rotate returned the old tokens")
		}
		if got, err := s.Authenticate(ctx, string(second.AccessToken)); err != nil || got != sid {
			t.Fatalf("Authenticate(rotated): got %q, %v", got, err)
		}
		// A retried request inside the grace window gets the same answer again.
		clk.Add(29 * time.Second)
		again, err := s.Rotate(ctx, string(first.RefreshToken))
		if err != nil || again != second {
			t.Fatalf("retry inside the grace window: got %v, %v; want the first answer", again, err)
		}
		third, err := s.Rotate(ctx, string(second.RefreshToken))
		if err != nil {
			t.Fatal(err)
		}
		// Replaying a used token after the grace window revokes family and session.
		clk.Add(2 * time.Second)
		if _, err := s.Rotate(ctx, string(first.RefreshToken)); !errors.Is(err, ErrReused) {
			t.Fatalf("replay after the grace window: got %v, want ErrReused", err)
		}
		if _, err := s.Rotate(ctx, string(third.RefreshToken)); !errors.Is(err, ErrNotFound) {
			t.Errorf("the family's newest token after a replay: got %v, want ErrNotFound", err)
		}
		if _, err := s.Authenticate(ctx, string(third.AccessToken)); !errors.Is(err, ErrNotFound) {
			t.Errorf("Authenticate after a replay: got %v, want ErrNotFound", err)
		}
		if _, err := s.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
			t.Errorf("Session after a replay: got %v, want ErrNotFound", err)
		}
		// Forged and malformed tokens are unknown, not replays.
		sid2 := newSession(t, s, "sub-1")
		tok, _ := s.Issue(ctx, sid2)
		forged := []byte(tok.RefreshToken)
		forged[len(forged)-2] ^= 1
		for _, rt := range []string{"", "obr_", string(forged), string(tok.AccessToken), strings.Repeat("x", len(forged))} {
			if _, err := s.Rotate(ctx, rt); !errors.Is(err, ErrNotFound) {
				t.Errorf("Rotate(malformed): got %v, want ErrNotFound", err)
			}
		}
		if _, err := s.Session(ctx, sid2); err != nil {
			t.Errorf("a forged token must not revoke the session: %v", err)
		}
		// Access tokens expire after AccessTTL.
		clk.Add(time.Hour)
		if _, err := s.Authenticate(ctx, string(tok.AccessToken)); !errors.Is(err, ErrNotFound) {
			t.Errorf("Authenticate after AccessTTL: got %v, want ErrNotFound", err)
		}
	})
}

// Power Query may send the same refresh request twice at once: both get one answer.
func TestRotateConcurrentRetries(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		a, b := e.store(t, Options{}), e.store(t, Options{})
		sid := newSession(t, a, "sub-1")
		tok, err := a.Issue(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		const n = 20
		results := make([]Tokens, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				s := a
				if i%2 == 1 {
					s = b
				}
				results[i], errs[i] = s.Rotate(ctx, string(tok.RefreshToken))
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || results[i] != results[0] {
				t.Fatalf("retry %d: got %v, %v; want the same answer as the first", i, results[i], errs[i])
			}
		}
	})
}

func TestRevoke(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		s := e.store(t, Options{})
		for _, which := range []string{"access", "refresh"} {
			sid := newSession(t, s, "sub-1")
			tok, err := s.Issue(ctx, sid)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Authenticate(ctx, string(tok.AccessToken)); err != nil { // warm the hot cache
				t.Fatal(err)
			}
			revoke := tok.AccessToken
			if which == "refresh" {
				revoke = tok.RefreshToken
			}
			if err := s.Revoke(ctx, string(revoke)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Authenticate(ctx, string(tok.AccessToken)); !errors.Is(err, ErrNotFound) {
				t.Errorf("revoked by %s token: Authenticate got %v, want ErrNotFound", which, err)
			}
			if _, err := s.Rotate(ctx, string(tok.RefreshToken)); !errors.Is(err, ErrNotFound) {
				t.Errorf("revoked by %s token: Rotate got %v, want ErrNotFound", which, err)
			}
			if _, err := s.Token(ctx, sid); !errors.Is(err, ErrNotFound) {
				t.Errorf("revoked by %s token: Token got %v, want ErrNotFound", which, err)
			}
		}
		for _, tok := range []string{"", "whatever", "oba_" + random(32), "obr_" + random(40)} {
			if err := s.Revoke(ctx, tok); err != nil {
				t.Errorf("Revoke(unknown): got %v, want nil", err)
			}
		}
		if err := s.EndSession(ctx, random(16)); err != nil {
			t.Errorf("EndSession(unknown): got %v, want nil", err)
		}
	})
}

func TestFeedKeys(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		s := e.store(t, Options{Now: clk.Now})
		sid := newSession(t, s, "sub-1")
		info1, key1, err := s.CreateFeedKey(ctx, sid, "Excel on my laptop")
		if err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
		info2, key2, err := s.CreateFeedKey(ctx, sid, "Power BI")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(key1), "obk_") || len(key1) != 47 || key1 == key2 {
			t.Fatalf("feed keys: want two distinct obk_ + 43 characters")
		}
		clk.Add(time.Minute)
		if got, err := s.FeedKey(ctx, string(key1)); err != nil || got != sid {
			t.Fatalf("FeedKey: got %q, %v; want %q", got, err, sid)
		}
		list, err := s.FeedKeys(ctx, "sub-1")
		if err != nil {
			t.Fatal(err)
		}
		want := []KeyInfo{
			{ID: info1.ID, Name: "Excel on my laptop", CreatedAt: info1.CreatedAt, LastUsedAt: clk.Now()},
			{ID: info2.ID, Name: "Power BI", CreatedAt: info2.CreatedAt},
		}
		if diff := cmp.Diff(want, list); diff != "" {
			t.Errorf("FeedKeys (-want +got):\n%s", diff)
		}
		if list, _ := s.FeedKeys(ctx, "sub-2"); len(list) != 0 {
			t.Errorf("another subject's keys: got %v, want none", list)
		}
		if err := s.RevokeFeedKey(ctx, "sub-2", info1.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeFeedKey by another subject: got %v, want ErrNotFound", err)
		}
		if err := s.RevokeFeedKey(ctx, "sub-1", info1.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FeedKey(ctx, string(key1)); !errors.Is(err, ErrNotFound) {
			t.Errorf("FeedKey after revocation: got %v, want ErrNotFound (the hot cache must not keep it)", err)
		}
		if got, err := s.FeedKey(ctx, string(key2)); err != nil || got != sid {
			t.Errorf("the other key: got %q, %v", got, err)
		}
		if err := s.RevokeFeedKey(ctx, "sub-1", info1.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeFeedKey twice: got %v, want ErrNotFound", err)
		}
		for _, k := range []string{"", "obk_", "obk_" + random(32), string(key2) + "x"} {
			if _, err := s.FeedKey(ctx, k); !errors.Is(err, ErrNotFound) {
				t.Errorf("FeedKey(unknown): got %v, want ErrNotFound", err)
			}
		}
		// Ending the session ends its keys.
		if err := s.EndSession(ctx, sid); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FeedKey(ctx, string(key2)); !errors.Is(err, ErrNotFound) {
			t.Errorf("FeedKey after EndSession: got %v, want ErrNotFound", err)
		}
		if list, _ := s.FeedKeys(ctx, "sub-1"); len(list) != 0 {
			t.Errorf("FeedKeys after EndSession: got %v, want none", list)
		}
	})
}

func TestEndSubject(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		a, b := e.store(t, Options{}), e.store(t, Options{})
		s1, s2, other := newSession(t, a, "sub-1"), newSession(t, b, "sub-1"), newSession(t, a, "sub-2")
		_, key, err := a.CreateFeedKey(ctx, s2, "k")
		if err != nil {
			t.Fatal(err)
		}
		_, otherKey, _ := a.CreateFeedKey(ctx, other, "k")
		if err := b.EndSubject(ctx, "sub-1"); err != nil {
			t.Fatal(err)
		}
		for _, sid := range []string{s1, s2} {
			if _, err := a.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
				t.Errorf("session of the ended subject: got %v, want ErrNotFound", err)
			}
		}
		if _, err := a.FeedKey(ctx, string(key)); !errors.Is(err, ErrNotFound) {
			t.Errorf("feed key of the ended subject: got %v, want ErrNotFound", err)
		}
		if _, err := a.Session(ctx, other); err != nil {
			t.Errorf("another subject's session: %v", err)
		}
		if _, err := a.FeedKey(ctx, string(otherKey)); err != nil {
			t.Errorf("another subject's feed key: %v", err)
		}
	})
}

func TestOnce(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		s := e.store(t, Options{Now: clk.Now})
		h, err := s.PutOnce(ctx, "code", []byte("session-1"), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) < 22 || strings.ContainsAny(string(h), "+/=") {
			t.Fatalf("handle: want >= 128 bits, URL-safe; got %d characters", len(h))
		}
		if _, err := s.TakeOnce(ctx, "state", string(h)); !errors.Is(err, ErrNotFound) {
			t.Errorf("TakeOnce of another kind: got %v, want ErrNotFound", err)
		}
		got, err := s.TakeOnce(ctx, "code", string(h))
		if err != nil || string(got) != "session-1" {
			t.Fatalf("first take: got %q, %v", got, err)
		}
		got, err = s.TakeOnce(ctx, "code", string(h))
		if !errors.Is(err, ErrUsed) || string(got) != "session-1" {
			t.Fatalf("second take: got %q, %v; want the first value and ErrUsed", got, err)
		}
		if _, err := s.TakeOnce(ctx, "code", random(32)); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown handle: got %v, want ErrNotFound", err)
		}
		h2, _ := s.PutOnce(ctx, "code", []byte("v"), time.Minute)
		clk.Add(time.Minute)
		if _, err := s.TakeOnce(ctx, "code", string(h2)); !errors.Is(err, ErrNotFound) {
			t.Errorf("expired: got %v, want ErrNotFound", err)
		}
	})
}

// Exactly one of 100 concurrent takers over two replicas wins.
func TestOnceConcurrentTakers(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		a, b := e.store(t, Options{}), e.store(t, Options{})
		h, err := a.PutOnce(ctx, "code", []byte("value"), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		wins, used := 0, 0
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				s := a
				if i%2 == 1 {
					s = b
				}
				v, err := s.TakeOnce(ctx, "code", string(h))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && string(v) == "value":
					wins++
				case errors.Is(err, ErrUsed) && string(v) == "value":
					used++
				default:
					t.Errorf("take: got %q, %v", v, err)
				}
			})
		}
		wg.Wait()
		if wins != 1 || used != 99 {
			t.Errorf("got %d winners and %d ErrUsed, want 1 and 99", wins, used)
		}
	})
}

// rotatingRefresher is a provider in miniature for the unit tests that do not need a
// real one: it rotates the refresh token and counts calls.
type rotatingRefresher struct {
	mu     sync.Mutex
	calls  int
	used   []string
	noRT   bool
	err    error
	expiry time.Time
}

func (r *rotatingRefresher) Refresh(_ context.Context, rt string) (*oauth2.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.used = append(r.used, rt)
	if r.err != nil {
		return nil, r.err
	}
	tok := &oauth2.Token{AccessToken: fmt.Sprintf("at-%d", r.calls), Expiry: r.expiry}
	if !r.noRT {
		tok.RefreshToken = fmt.Sprintf("rt-%d", r.calls)
	}
	return tok, nil
}

func TestTokenRefresh(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		r := &rotatingRefresher{expiry: clk.Now().Add(time.Hour)}
		s := e.store(t, Options{Now: clk.Now, Refresher: r})
		sid, err := s.CreateSession(ctx, Session{Subject: "sub-1", AccessToken: "at-0", RefreshToken: "rt-0", Expiry: clk.Now().Add(3 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.Token(ctx, sid); err != nil || got != "at-0" {
			t.Fatalf("fresh token: got %q, %v", string(got), err)
		}
		clk.Add(61 * time.Second) // inside the 2-minute margin
		if got, err := s.Token(ctx, sid); err != nil || got != "at-1" {
			t.Fatalf("token inside the margin: got %q, %v; want a refreshed one", string(got), err)
		}
		sess, _ := s.Session(ctx, sid)
		if sess.RefreshToken != "rt-1" || !sess.Expiry.Equal(r.expiry) {
			t.Errorf("after refresh the session holds %q until %v", string(sess.RefreshToken), sess.Expiry)
		}
		// A provider that returns no refresh token keeps the old one.
		r.noRT = true
		clk.Add(59 * time.Minute)
		if got, err := s.Token(ctx, sid); err != nil || got != "at-2" {
			t.Fatalf("second refresh: got %q, %v", string(got), err)
		}
		if sess, _ := s.Session(ctx, sid); sess.RefreshToken != "rt-1" {
			t.Errorf("no refresh token in the answer: the session holds %q, want the old rt-1", string(sess.RefreshToken))
		}
		if diff := cmp.Diff([]string{"rt-0", "rt-1"}, r.used); diff != "" {
			t.Errorf("refresh tokens sent (-want +got):\n%s", diff)
		}
		// Renew refreshes a token the upstream refused, and only that token.
		r.expiry = clk.Now().Add(time.Hour)
		got, err := s.Renew(ctx, sid, "at-2")
		if err != nil || got != "at-3" {
			t.Fatalf("Renew(current): got %q, %v; want a new token", string(got), err)
		}
		got, err = s.Renew(ctx, sid, "at-2")
		if err != nil || got != "at-3" || r.calls != 3 {
			t.Fatalf("Renew(already replaced): got %q, %v after %d calls; want at-3 without a refresh", string(got), err, r.calls)
		}
	})
}

func TestTokenProviderErrors(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		p := startProvider(t)
		clk := newClock()
		s := e.store(t, Options{Now: clk.Now, Refresher: p.refresher()})
		signIn := func() (string, *oauth2.Token) {
			tok := p.signIn(t)
			sid, err := s.CreateSession(ctx, Session{Subject: "sub-1", AccessToken: Secret(tok.AccessToken),
				RefreshToken: Secret(tok.RefreshToken), Expiry: clk.Now().Add(-time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			return sid, tok
		}

		// 503: the session stays, the caller gets ErrProviderUnavailable.
		sid, tok := signIn()
		p.status.Store(http.StatusServiceUnavailable)
		_, err := s.Token(ctx, sid)
		p.status.Store(0)
		if !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("503: got %v, want ErrProviderUnavailable", err)
		}
		if strings.Contains(err.Error(), tok.RefreshToken) || strings.Contains(err.Error(), tok.AccessToken) {
			t.Errorf("the error text holds a token: %v", err)
		}
		if _, err := s.Session(ctx, sid); err != nil {
			t.Fatalf("after a 503 the session must stay: %v", err)
		}
		if _, err := s.Token(ctx, sid); err != nil {
			t.Fatalf("once the provider is back: %v", err)
		}

		// invalid_grant: the session ends. Revoking the refresh token at the provider
		// makes it answer so.
		sid, tok = signIn()
		if err := p.storage.RevokeToken(ctx, tok.RefreshToken, "id1", "bridge"); err != nil {
			t.Fatal(err)
		}
		_, err = s.Token(ctx, sid)
		if !errors.Is(err, ErrSessionEnded) {
			t.Fatalf("invalid_grant: got %v, want ErrSessionEnded", err)
		}
		if _, err := s.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
			t.Errorf("after invalid_grant: Session got %v, want ErrNotFound", err)
		}

		// Unreachable provider: ErrProviderUnavailable.
		down := &oauth2.Config{ClientID: "x", Endpoint: oauth2.Endpoint{TokenURL: "http://127.0.0.1:1/token"}}
		s2 := e.store(t, Options{Now: clk.Now, Refresher: ConfigRefresher{Config: down}})
		sid, _ = signIn()
		if _, err := s2.Token(ctx, sid); !errors.Is(err, ErrProviderUnavailable) {
			t.Errorf("refused connection: got %v, want ErrProviderUnavailable", err)
		}
	})
}

// An unreachable Redis surfaces as ErrUnavailable from every call, never a raw error.
func TestRedisDown(t *testing.T) {
	c, err := NewRedisClient(RedisConfig{URL: "redis://127.0.0.1:1/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := New(Options{Redis: c, Keys: []Key{sharedKey}})
	if err != nil {
		t.Fatal(err)
	}
	sid := random(16)
	calls := map[string]func() error{
		"Ping":          func() error { return s.Ping(ctx) },
		"CreateSession": func() error { _, err := s.CreateSession(ctx, Session{Subject: "x"}); return err },
		"Session":       func() error { _, err := s.Session(ctx, sid); return err },
		"Token":         func() error { _, err := s.Token(ctx, sid); return err },
		"Authenticate":  func() error { _, err := s.Authenticate(ctx, "oba_"+random(32)); return err },
		"FeedKey":       func() error { _, err := s.FeedKey(ctx, "obk_"+random(32)); return err },
		"TakeOnce":      func() error { _, err := s.TakeOnce(ctx, "code", random(32)); return err },
		"PutOnce":       func() error { _, err := s.PutOnce(ctx, "code", nil, time.Minute); return err },
		"EndSubject":    func() error { return s.EndSubject(ctx, "x") },
	}
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Go(func() {
			if err := call(); !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s: got %v, want ErrUnavailable", name, err)
			}
		})
	}
	wg.Wait()
	if _, err := New(Options{Redis: c}); err == nil {
		t.Errorf("New with Redis and no keys: got no error")
	}
}

// The hot cache serves repeated lookups without the store, for HotCacheTTL at most.
func TestHotCacheBound(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		a := e.store(t, Options{Now: clk.Now, HotCacheTTL: 5 * time.Second})
		b := e.store(t, Options{Now: clk.Now, HotCacheTTL: 5 * time.Second})
		sid := newSession(t, a, "sub-1")
		tok, _ := a.Issue(ctx, sid)
		if _, err := a.Authenticate(ctx, string(tok.AccessToken)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Token(ctx, sid); err != nil {
			t.Fatal(err)
		}
		if err := b.EndSession(ctx, sid); err != nil { // revoked on another replica
			t.Fatal(err)
		}
		clk.Add(4 * time.Second)
		if got, err := a.Authenticate(ctx, string(tok.AccessToken)); err != nil || got != sid {
			t.Errorf("inside HotCacheTTL the cached answer stands: got %q, %v", got, err)
		}
		if _, err := a.Token(ctx, sid); err != nil {
			t.Errorf("inside HotCacheTTL the cached token stands: %v", err)
		}
		clk.Add(time.Second)
		if _, err := a.Authenticate(ctx, string(tok.AccessToken)); !errors.Is(err, ErrNotFound) {
			t.Errorf("after HotCacheTTL the revocation reaches this replica: got %v", err)
		}
		if _, err := a.Token(ctx, sid); !errors.Is(err, ErrNotFound) {
			t.Errorf("after HotCacheTTL Token: got %v, want ErrNotFound", err)
		}
	})
}

// A value is bound to its key: copied under another key it does not decrypt.
func TestValueMovedToAnotherKey(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		s := e.store(t, Options{})
		victim, attacker := newSession(t, s, "victim"), newSession(t, s, "attacker")
		raw, err := s.b.get(ctx, s.sessionKey(victim))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.b.set(ctx, s.sessionKey(attacker), raw, time.Hour, setAlways); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(ctx, attacker); !errors.Is(err, ErrNotFound) {
			t.Errorf("a value moved to another key: got %v, want ErrNotFound", err)
		}
		if got, err := s.Session(ctx, victim); err != nil || got.Subject != "victim" {
			t.Errorf("the original: got %v, %v", got.Subject, err)
		}
	})
}

// With keys [new, old], everything written under old stays readable, and what is
// written again is sealed and named under new, so old can be dropped afterwards.
func TestKeyRotation(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		k1, k2 := testKey(t, "2026a"), testKey(t, "2026b")
		old := e.store(t, Options{Keys: []Key{k1}, Now: clk.Now})
		sid := newSession(t, old, "sub-1")
		tok, _ := old.Issue(ctx, sid)
		info, key, _ := old.CreateFeedKey(ctx, sid, "k")
		h, _ := old.PutOnce(ctx, "state", []byte("v"), time.Hour)

		both := e.store(t, Options{Keys: []Key{k2, k1}, Now: clk.Now})
		if _, err := both.Session(ctx, sid); err != nil {
			t.Fatalf("Session under [new, old]: %v", err)
		}
		if got, err := both.Authenticate(ctx, string(tok.AccessToken)); err != nil || got != sid {
			t.Fatalf("Authenticate under [new, old]: %v", err)
		}
		if v, err := both.TakeOnce(ctx, "state", string(h)); err != nil || string(v) != "v" {
			t.Fatalf("TakeOnce under [new, old]: %q, %v", v, err)
		}
		if list, err := both.FeedKeys(ctx, "sub-1"); err != nil || len(list) != 1 || list[0].ID != info.ID {
			t.Fatalf("FeedKeys under [new, old]: %v, %v", list, err)
		}
		// Use rewrites: the session (touched), the family (rotated), the feed key.
		clk.Add(2 * time.Minute)
		if _, err := both.FeedKey(ctx, string(key)); err != nil {
			t.Fatal(err)
		}
		next, err := both.Rotate(ctx, string(tok.RefreshToken))
		if err != nil {
			t.Fatal(err)
		}
		if err := both.ensureIndexed(ctx, "sub-1", sid); err != nil {
			t.Fatal(err)
		}

		onlyNew := e.store(t, Options{Keys: []Key{k2}, Now: clk.Now})
		if _, err := onlyNew.Session(ctx, sid); err != nil {
			t.Errorf("Session under [new] after use: %v", err)
		}
		if got, err := onlyNew.FeedKey(ctx, string(key)); err != nil || got != sid {
			t.Errorf("FeedKey under [new] after use: %q, %v", got, err)
		}
		if _, err := onlyNew.Rotate(ctx, string(next.RefreshToken)); err != nil {
			t.Errorf("Rotate under [new] after use: %v", err)
		}
		if list, err := onlyNew.FeedKeys(ctx, "sub-1"); err != nil || len(list) != 1 {
			t.Errorf("FeedKeys under [new] after use: %v, %v", list, err)
		}
		if err := onlyNew.EndSubject(ctx, "sub-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := old.Session(ctx, sid); !errors.Is(err, ErrNotFound) {
			t.Errorf("EndSubject under [new] missed the session: %v", err)
		}
		// A store without the key that sealed a value cannot read it.
		stranger := e.store(t, Options{Keys: []Key{testKey(t, "other")}, Now: clk.Now})
		sid2 := newSession(t, old, "sub-3")
		if _, err := stranger.Session(ctx, sid2); !errors.Is(err, ErrNotFound) {
			t.Errorf("a foreign key: got %v, want ErrNotFound", err)
		}
	})
}

// At rest: after a sign-in, no key or value holds a bridge token, a feed key, a one-time
// handle, a provider token or anything JWT-shaped.
func TestNothingInClearAtRest(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		s := e.store(t, Options{})
		providerAT := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl"
		providerRT := "0.AXoA" + random(64)
		sid, err := s.CreateSession(ctx, Session{Subject: "ada@example.com", Name: "Ada", Email: "ada@example.com",
			AccessToken: Secret(providerAT), RefreshToken: Secret(providerRT), Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := s.Issue(ctx, sid)
		tok2, _ := s.Rotate(ctx, string(tok.RefreshToken))
		_, key, _ := s.CreateFeedKey(ctx, sid, "k")
		h, _ := s.PutOnce(ctx, "code", []byte(sid), time.Minute)
		secrets := map[string]string{
			"provider access token": providerAT, "provider refresh token": providerRT,
			"bridge access token": string(tok.AccessToken), "bridge refresh token": string(tok.RefreshToken),
			"rotated access token": string(tok2.AccessToken), "rotated refresh token": string(tok2.RefreshToken),
			"feed key": string(key), "one-time handle": string(h), "subject": "ada@example.com",
			// Any JWT: its header starts {"alg": or {"typ":. Three bytes ("eyJ") would
			// also match a random base64url lookup name about once in 13,000 keys.
			"JWT": "eyJhbGciOi", "JWT typ-first": "eyJ0eXAiOi",
		}
		dump := e.dump(t)
		if len(dump) < 6 {
			t.Fatalf("dump has %d keys; the scan missed the store", len(dump))
		}
		for k, v := range dump {
			for what, secret := range secrets {
				if strings.Contains(k, secret) || bytes.Contains(v, []byte(secret)) {
					t.Errorf("%s found in clear under %q", what, k)
				}
				// The token without its prefix must not appear either.
				if i := strings.IndexByte(secret, '_'); i == 3 && bytes.Contains(v, []byte(secret[4:])) {
					t.Errorf("%s body found in clear under %q", what, k)
				}
			}
		}
	})
}

// Sessions that expire on their own leave the subject index on the next sign-in.
func TestIndexPrunesExpiredSessions(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		s := e.store(t, Options{})
		sid1 := newSession(t, s, "sub-1")
		if err := s.b.del(ctx, s.sessionKey(sid1)); err != nil { // as a TTL would
			t.Fatal(err)
		}
		sid2 := newSession(t, s, "sub-1")
		got, err := s.indexSIDs(ctx, "sub-1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{sid2}, got); diff != "" {
			t.Errorf("index (-want +got):\n%s", diff)
		}
	})
}

// A claim is single-use across replicas until its ttl ends; a deleted value
// is gone for every replica.
func TestClaimAndDeleteValue(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		a := e.store(t, Options{Now: clk.Now})
		b := e.store(t, Options{Now: clk.Now})
		if err := a.Claim(ctx, "state", "s1", time.Minute); err != nil {
			t.Fatalf("first claim: %v", err)
		}
		if err := b.Claim(ctx, "state", "s1", time.Minute); !errors.Is(err, ErrUsed) {
			t.Errorf("second claim on another replica: got %v, want ErrUsed", err)
		}
		if err := a.Claim(ctx, "other", "s1", time.Minute); err != nil {
			t.Errorf("claim of another kind: %v, want nil", err)
		}
		clk.Add(2 * time.Minute)
		if err := b.Claim(ctx, "state", "s1", time.Minute); err != nil {
			t.Errorf("claim after the ttl: %v, want nil", err)
		}

		if err := a.PutValue(ctx, "page", "p1", []byte("sid"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Value(ctx, "page", "p1"); err != nil || string(got) != "sid" {
			t.Fatalf("Value before delete = %q, %v", got, err)
		}
		if err := b.DeleteValue(ctx, "page", "p1"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Value(ctx, "page", "p1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Value after delete: got %v, want ErrNotFound", err)
		}
		if err := a.DeleteValue(ctx, "page", "p1"); err != nil {
			t.Errorf("deleting a missing value: %v, want nil", err)
		}
	})
}

package tokencache

import (
	"sync"
	"testing"
	"time"
)

// tokenStorm makes n concurrent Token calls on one session, alternating between the
// given replicas, released at once.
func tokenStorm(t *testing.T, sid string, n int, replicas ...*Store) []Secret {
	t.Helper()
	got := make([]Secret, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], errs[i] = replicas[i%len(replicas)].Token(ctx, sid)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	return got
}

// 50 concurrent Token calls on an expired session, over two replicas sharing the store,
// cause exactly one refresh at a provider that rotates refresh tokens (so a second
// refresh would fail with invalid_grant), and all 50 succeed with the new token.
func TestTokenStampede(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		p := startProvider(t)
		a := e.store(t, Options{Refresher: p.refresher()})
		b := e.store(t, Options{Refresher: p.refresher()})
		tok := p.signIn(t)
		sid, err := a.CreateSession(ctx, Session{Subject: "sub-1", AccessToken: Secret(tok.AccessToken),
			RefreshToken: Secret(tok.RefreshToken), Expiry: time.Now().Add(-time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		got := tokenStorm(t, sid, 50, a, b)
		if n := p.refreshs.Load(); n != 1 {
			t.Errorf("refreshes at the provider: got %d, want 1", n)
		}
		for i, g := range got {
			if g != got[0] || string(g) == tok.AccessToken {
				t.Fatalf("caller %d got another token than caller 0, or the expired one", i)
			}
		}
		// The rotated provider refresh token was stored: the next refresh works.
		if _, err := b.Renew(ctx, sid, got[0]); err != nil {
			t.Fatalf("a later refresh with the stored refresh token: %v", err)
		}
		if n := p.refreshs.Load(); n != 2 {
			t.Errorf("refreshes after Renew: got %d, want 2", n)
		}
	})
}

// A token endpoint slower than the lock lease still sees one refresh: the lease is
// renewed while the provider works.
func TestTokenSlowProvider(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		p := startProvider(t)
		// 2.5 leases long; a lease of 1 s survives a busy CI machine's scheduling stalls.
		p.delay.Store(int64(2500 * time.Millisecond))
		opts := Options{Refresher: p.refresher(), LockTTL: time.Second}
		a, b := e.store(t, opts), e.store(t, opts)
		tok := p.signIn(t)
		sid, err := a.CreateSession(ctx, Session{Subject: "sub-1", AccessToken: Secret(tok.AccessToken),
			RefreshToken: Secret(tok.RefreshToken), Expiry: time.Now().Add(-time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		got := tokenStorm(t, sid, 20, a, b)
		if n := p.refreshs.Load(); n != 1 {
			t.Errorf("refreshes at a provider slower than the lock lease: got %d, want 1", n)
		}
		for i, g := range got {
			if g != got[0] {
				t.Fatalf("caller %d got another token than caller 0", i)
			}
		}
	})
}

package idp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/idp/idptest"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestKeySetRotation: a new signing key is fetched once the last fetch is
// a minute old; a key the set no longer lists stops verifying; a failed
// refresh keeps the keys held.
func TestKeySetRotation(t *testing.T) {
	p := idptest.NewEntra(t)
	clk := &clock{now: time.Now()}
	ks := &keySet{uri: p.URL + "/common/discovery/v2.0/keys", client: p.Server.Client(), now: clk.Now}
	ctx := context.Background()
	verify := func(tok string) error {
		if err := ks.ensure(ctx, tok); err != nil {
			return err
		}
		_, err := ks.VerifySignature(ctx, tok)
		return err
	}
	first := p.Token(t, idptest.TenantA, "alice", "aud", nil)
	if err := verify(first); err != nil {
		t.Fatalf("first key: %v", err)
	}

	second, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.Set(func(p *idptest.Entra) { p.Key, p.KID = second, "test-key-2" })
	rotated := p.Token(t, idptest.TenantA, "alice", "aud", nil)
	if err := verify(rotated); !errors.Is(err, errUnknownKey) {
		t.Errorf("new key within a minute of the last fetch: %v, want errUnknownKey", err)
	}
	if n := p.KeyReads.Load(); n != 1 {
		t.Errorf("key set fetched %d times within the minute, want 1", n)
	}
	clk.Advance(keyRefreshMin)
	if err := verify(rotated); err != nil {
		t.Errorf("new key a minute later: %v", err)
	}
	if err := verify(first); !errors.Is(err, errUnknownKey) {
		t.Errorf("a key the set no longer lists: %v, want errUnknownKey", err)
	}

	// Down at the daily refresh: the keys held stay in use.
	p.Set(func(p *idptest.Entra) { p.KeysDown = true })
	clk.Advance(keyRefreshMax)
	if err := verify(rotated); err != nil {
		t.Errorf("key set down with keys held: %v, want the held key to verify", err)
	}

	// A token that is not a compact RS256 JWS never fetches.
	before := p.KeyReads.Load()
	for _, tok := range []string{"a.b.c", idptest.Unsigned(p.Claims(idptest.TenantA, "x", "aud"))} {
		if err := verify(tok); err == nil {
			t.Errorf("%q verified", tok)
		}
	}
	hs := p.Sign(t, p.Claims(idptest.TenantA, "x", "aud"), "HS256", []byte("0123456789abcdef0123456789abcdef"))
	if err := verify(hs); err == nil {
		t.Error("an HS256 token verified")
	}
	if n := p.KeyReads.Load(); n != before {
		t.Errorf("malformed tokens fetched the key set %d times", n-before)
	}
}

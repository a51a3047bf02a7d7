package connector

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// signedBy is a token of tenant A's alice signed with key under key ID kid.
func signedBy(t *testing.T, p *entraIdP, aud, kid string, key *rsa.PrivateKey) string {
	t.Helper()
	var saved string
	var savedKey *rsa.PrivateKey
	p.set(func(p *entraIdP) { saved, savedKey, p.kid, p.key = p.kid, p.key, kid, key })
	defer p.set(func(p *entraIdP) { p.kid, p.key = saved, savedKey })
	return p.token(t, tenantA, "alice", aud, nil)
}

// TestOrgAccountUnknownKeysDoNotReachEntra: tokens with made-up key IDs,
// however many, cost no more than the one fetch of the key set.
func TestOrgAccountUnknownKeysDoNotReachEntra(t *testing.T) {
	b := newEntraBridge(t, nil)
	if resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(b.idp.token(t, tenantA, "alice", b.url, nil))); resp.StatusCode != http.StatusOK {
		t.Fatalf("valid token: status %d %s", resp.StatusCode, body)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		tok := signedBy(t, b.idp, b.url, fmt.Sprintf("made-up-%d", i), other)
		if resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(tok)); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token with an unknown key: status %d %s, want 401", resp.StatusCode, body)
		}
	}
	if n := b.idp.keyReads.Load(); n != 1 {
		t.Errorf("the key set was fetched %d times, want once", n)
	}
}

// TestOrgAccountKeySetDown: with the key set unreachable and no keys held,
// an organizational-account caller gets 503, not 401, and is served once
// the key set answers.
func TestOrgAccountKeySetDown(t *testing.T) {
	b := newEntraBridge(t, nil)
	b.idp.set(func(p *entraIdP) { p.keysDown = true })
	tok := bearer(b.idp.token(t, tenantA, "alice", b.url, nil))
	resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", tok)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("key set down: status %d (Retry-After %q) %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	b.idp.set(func(p *entraIdP) { p.keysDown = false })
	if resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("key set back: status %d %s, want 200", resp.StatusCode, body)
	}
}

// TestKeySetRotation: a new signing key is fetched once the last fetch is
// a minute old; a key the set no longer lists stops verifying; a failed
// refresh keeps the keys held.
func TestKeySetRotation(t *testing.T) {
	p := newEntraIdP(t)
	clk := &clock{now: time.Now()}
	ks := &keySet{uri: p.srv.URL + "/common/discovery/v2.0/keys", client: p.srv.Client(), now: clk.Now}
	ctx := context.Background()
	verify := func(tok string) error {
		if err := ks.ensure(ctx, tok); err != nil {
			return err
		}
		_, err := ks.VerifySignature(ctx, tok)
		return err
	}
	first := p.token(t, tenantA, "alice", "aud", nil)
	if err := verify(first); err != nil {
		t.Fatalf("first key: %v", err)
	}

	second, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.set(func(p *entraIdP) { p.key, p.kid = second, "test-key-2" })
	rotated := p.token(t, tenantA, "alice", "aud", nil)
	if err := verify(rotated); !errors.Is(err, errUnknownKey) {
		t.Errorf("new key within a minute of the last fetch: %v, want errUnknownKey", err)
	}
	if n := p.keyReads.Load(); n != 1 {
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
	p.set(func(p *entraIdP) { p.keysDown = true })
	clk.Advance(keyRefreshMax)
	if err := verify(rotated); err != nil {
		t.Errorf("key set down with keys held: %v, want the held key to verify", err)
	}

	// A token that is not a compact RS256 JWS never fetches.
	before := p.keyReads.Load()
	for _, tok := range []string{"a.b.c", unsigned(p.claims(tenantA, "x", "aud"))} {
		if err := verify(tok); err == nil {
			t.Errorf("%q verified", tok)
		}
	}
	hs := p.sign(t, p.claims(tenantA, "x", "aud"), jose.HS256, []byte("0123456789abcdef0123456789abcdef"))
	if err := verify(hs); err == nil {
		t.Error("an HS256 token verified")
	}
	if n := p.keyReads.Load(); n != before {
		t.Errorf("malformed tokens fetched the key set %d times", n-before)
	}
}

package connector

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"testing"

	"github.com/odata-bridge/bridge/idp/idptest"
)

// signedBy is a token of tenant A's alice signed with key under key ID kid.
func signedBy(t *testing.T, p *idptest.Entra, aud, kid string, key *rsa.PrivateKey) string {
	t.Helper()
	var saved string
	var savedKey *rsa.PrivateKey
	p.Set(func(p *idptest.Entra) { saved, savedKey, p.KID, p.Key = p.KID, p.Key, kid, key })
	defer p.Set(func(p *idptest.Entra) { p.KID, p.Key = saved, savedKey })
	return p.Token(t, tenantA, "alice", aud, nil)
}

// TestOrgAccountUnknownKeysDoNotReachEntra: tokens with made-up key IDs,
// however many, cost no more than the one fetch of the key set.
func TestOrgAccountUnknownKeysDoNotReachEntra(t *testing.T) {
	b := newEntraBridge(t, nil)
	if resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", bearer(b.idp.Token(t, tenantA, "alice", b.url, nil))); resp.StatusCode != http.StatusOK {
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
	if n := b.idp.KeyReads.Load(); n != 1 {
		t.Errorf("the key set was fetched %d times, want once", n)
	}
}

// TestOrgAccountKeySetDown: with the key set unreachable and no keys held,
// an organizational-account caller gets 503, not 401, and is served once
// the key set answers.
func TestOrgAccountKeySetDown(t *testing.T) {
	b := newEntraBridge(t, nil)
	b.idp.Set(func(p *idptest.Entra) { p.KeysDown = true })
	tok := bearer(b.idp.Token(t, tenantA, "alice", b.url, nil))
	resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", tok)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("key set down: status %d (Retry-After %q) %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	b.idp.Set(func(p *idptest.Entra) { p.KeysDown = false })
	if resp, body := b.do(t, http.MethodGet, "/odata/k2/Items", tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("key set back: status %d %s, want 200", resp.StatusCode, body)
	}
}

package demo

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
)

// signed returns a JWT with the access-token claims mockoidc issues,
// changed by edit, signed by kp.
func signed(t *testing.T, kp *mockoidc.Keypair, edit func(*jwt.RegisteredClaims)) string {
	t.Helper()
	now := time.Now()
	c := &jwt.RegisteredClaims{
		Audience:  jwt.ClaimStrings{world.ClientID},
		ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		ID:        "forged",
		IssuedAt:  jwt.NewNumericDate(now),
		Issuer:    world.Issuer,
		NotBefore: jwt.NewNumericDate(now),
		Subject:   "alice",
	}
	if edit != nil {
		edit(c)
	}
	tok, err := kp.SignJWT(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestUpstreamsRefuseMissingAndBadTokens covers every service with no
// credentials and with tokens the provider did not issue as access tokens.
func TestUpstreamsRefuseMissingAndBadTokens(t *testing.T) {
	own := world.provider.m.Keypair
	published, err := mockoidc.DefaultKeypair()
	if err != nil {
		t.Fatal(err)
	}
	signIn, err := world.SignIn(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	good := signed(t, own, nil)

	credentials := []struct {
		name, auth string
		invalid    bool // an error="invalid_token" challenge is expected
	}{
		{"none", "", false},
		{"basic", "Basic YWxpY2U6c2VjcmV0", false},
		{"empty bearer", "Bearer ", false},
		{"garbage", "Bearer not.a.jwt", true},
		{"published mockoidc key", "Bearer " + signed(t, published, nil), true},
		{"other issuer", "Bearer " + signed(t, own, func(c *jwt.RegisteredClaims) { c.Issuer = "http://127.0.0.1:1/oidc" }), true},
		{"other audience", "Bearer " + signed(t, own, func(c *jwt.RegisteredClaims) { c.Audience = jwt.ClaimStrings{"someone-else"} }), true},
		{"expired", "Bearer " + signed(t, own, func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
			c.NotBefore = c.IssuedAt
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-50 * time.Minute))
		}), true},
		{"refresh token", "Bearer " + signIn.RefreshToken, true},
		{"tampered", "Bearer " + good[:len(good)-4] + "AAAA", true},
	}
	urls := []string{
		world.ODataV4URL, world.ODataV4URL + "$metadata", world.ODataV4URL + "Orders",
		world.ODataV3URL, world.ODataV3URL + "$metadata", world.ODataV3URL + "Orders",
		world.WorkflowURL + "workflows", world.WorkflowURL + "tasks",
	}
	for _, c := range credentials {
		for _, u := range urls {
			t.Run(c.name+" "+strings.TrimPrefix(u, world.UpstreamURL), func(t *testing.T) {
				r := get(t, u, c.auth)
				if r.status != 401 {
					t.Fatalf("status = %d, want 401", r.status)
				}
				challenge := r.header.Get("WWW-Authenticate")
				if !strings.HasPrefix(challenge, "Bearer ") || strings.Contains(challenge, `error="invalid_token"`) != c.invalid {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge, invalid_token=%v", challenge, c.invalid)
				}
				var body map[string]any
				if err := json.Unmarshal(r.body, &body); err != nil {
					t.Fatalf("401 body is not JSON: %s", r.body)
				}
				switch {
				case strings.HasPrefix(u, world.ODataV4URL):
					checkErrorShape(t, services()[0], body)
				case strings.HasPrefix(u, world.ODataV3URL):
					checkErrorShape(t, services()[1], body)
				default:
					if body["message"] == nil {
						t.Errorf("workflow 401 body = %v, want {message}", body)
					}
				}
			})
		}
	}
	// The control: the same key and claims as the forged ones, and a real
	// sign-in, are accepted, so the refusals above are about the token.
	for _, auth := range []string{"Bearer " + good, "Bearer " + signIn.AccessToken, "bearer " + signIn.AccessToken} {
		if r := get(t, world.ODataV4URL, auth); r.status != 200 {
			t.Errorf("valid token refused: %d %s", r.status, r.body)
		}
	}
}

// TestAdvanceExpiresTokens moves a world's clock past the access-token
// lifetime: the old token is refused and a refreshed one is accepted.
func TestAdvanceExpiresTokens(t *testing.T) {
	ctx := context.Background()
	w, err := Start(ctx, Options{AccessTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tok, err := w.SignIn(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if r := get(t, w.WorkflowURL+"tasks", "Bearer "+tok.AccessToken); r.status != 200 {
		t.Fatalf("fresh token: status %d", r.status)
	}
	w.Advance(2 * time.Minute)
	if r := get(t, w.WorkflowURL+"tasks", "Bearer "+tok.AccessToken); r.status != 401 {
		t.Fatalf("after Advance: status %d, want 401", r.status)
	}
	cfg := w.OAuth2Config("http://127.0.0.1/oauth/callback")
	tok.Expiry = time.Now().Add(-time.Second) // make the token source refresh
	fresh, err := cfg.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if fresh.AccessToken == tok.AccessToken {
		t.Fatalf("refresh returned the old access token")
	}
	if r := get(t, w.WorkflowURL+"tasks", "Bearer "+fresh.AccessToken); r.status != 200 {
		t.Errorf("refreshed token: status %d, want 200", r.status)
	}
}

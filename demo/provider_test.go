package demo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// noRedirects is a client that returns redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorizeURL is an authorization request of w's client with extra parameters.
func authorizeURL(w *World, redirect string, extra ...string) string {
	v := url.Values{
		"response_type": {"code"}, "client_id": {w.ClientID}, "redirect_uri": {redirect},
		"scope": {"openid profile email offline_access"}, "state": {"s1"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return w.provider.m.AuthorizationEndpoint() + "?" + v.Encode()
}

// subjectOf verifies an ID token with the discovered provider and returns
// its subject and name claims.
func subjectOf(t *testing.T, w *World, tok *oauth2.Token) (sub, name string) {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	p, err := oidc.NewProvider(context.Background(), w.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	id, err := p.Verifier(&oidc.Config{ClientID: w.ClientID}).Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("verify ID token: %v", err)
	}
	var c struct {
		Name string `json:"name"`
	}
	if err := id.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return id.Subject, c.Name
}

// codeFlow follows one authorization request to the callback and redeems the code.
func codeFlow(t *testing.T, w *World, extra ...string) *oauth2.Token {
	t.Helper()
	redirect := "http://127.0.0.1:9/oauth/callback"
	resp, err := noRedirects.Get(authorizeURL(w, redirect, extra...))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize = %d, want 302", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("state") != "s1" || !strings.HasPrefix(loc.String(), redirect+"?") {
		t.Fatalf("redirect to %s, want %s with the state", loc.Redacted(), redirect)
	}
	tok, err := w.OAuth2Config(redirect).Exchange(context.Background(), loc.Query().Get("code"))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func TestDiscoveryMatchesIssuer(t *testing.T) {
	p, err := oidc.NewProvider(context.Background(), world.Issuer)
	if err != nil {
		t.Fatalf("oidc.NewProvider(%s): %v", world.Issuer, err)
	}
	var meta struct {
		Grants []string `json:"grant_types_supported"`
		PKCE   []string `json:"code_challenge_methods_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"authorization_code", "refresh_token"} {
		if !strings.Contains(strings.Join(meta.Grants, " "), want) {
			t.Errorf("grant_types_supported %v lacks %s", meta.Grants, want)
		}
	}
	if !strings.Contains(strings.Join(meta.PKCE, " "), "S256") {
		t.Errorf("code_challenge_methods_supported %v lacks S256", meta.PKCE)
	}
	if got, want := p.Endpoint().TokenURL, world.provider.m.TokenEndpoint(); got != want {
		t.Errorf("token endpoint = %s, want %s", got, want)
	}
}

// TestUserSelection covers how the provider picks the user: login_hint,
// then UseUser's queue in order, then the first demo user.
func TestUserSelection(t *testing.T) {
	w, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, name := range []string{"bob", "carol"} {
		if err := w.UseUser(name); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		hint, wantSub, wantName string
	}{
		{"carol", "carol", "Carol Chen"}, // a hint wins and leaves the queue alone
		{"", "bob", "Bob Baker"},
		{"", "carol", "Carol Chen"},
		{"", "alice", "Alice Andrews"}, // queue empty: the first demo user
		{"mallory", "alice", "Alice Andrews"},
	}
	for i, s := range steps {
		var extra []string
		if s.hint != "" {
			extra = []string{"login_hint", s.hint}
		}
		sub, name := subjectOf(t, w, codeFlow(t, w, extra...))
		if sub != s.wantSub || name != s.wantName {
			t.Errorf("step %d (hint %q): signed in as %s (%s), want %s (%s)", i, s.hint, sub, name, s.wantSub, s.wantName)
		}
	}
	if err := w.UseUser("mallory"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("UseUser(mallory) = %v, want ErrUnknownUser", err)
	}
	if _, err := w.AccessToken(context.Background(), "mallory"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("AccessToken(mallory) = %v, want ErrUnknownUser", err)
	}
}

// TestScopesBeyondMockoidc checks that scopes mockoidc does not know, such
// as offline_access or an API scope, do not fail the sign-in.
func TestScopesBeyondMockoidc(t *testing.T) {
	for _, scope := range []string{"openid offline_access profile email", "api://k2/.default offline_access", ""} {
		resp, err := noRedirects.Get(authorizeURL(world, "http://127.0.0.1/oauth/callback", "scope", scope, "login_hint", "alice"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Errorf("scope %q: authorize = %d, want 302", scope, resp.StatusCode)
			continue
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		tok, err := world.OAuth2Config("http://127.0.0.1/oauth/callback").Exchange(context.Background(), loc.Query().Get("code"))
		if err != nil || tok.RefreshToken == "" {
			t.Errorf("scope %q: exchange = %v, refresh token present %v", scope, err, tok != nil && tok.RefreshToken != "")
		}
	}
}

func TestChooserPage(t *testing.T) {
	w, err := Start(context.Background(), Options{ChooseUser: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	resp, err := noRedirects.Get(authorizeURL(w, "http://localhost:8080/oauth/callback"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("authorize without a hint = %d %s, want the chooser page", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	page := string(body)
	for _, u := range w.Users {
		if !strings.Contains(page, "login_hint="+u) || !strings.Contains(page, `id="user-`+u+`"`) {
			t.Errorf("chooser page has no link for %s", u)
		}
	}
	if strings.Contains(strings.ToLower(page), "password\"") || strings.Contains(page, "<input") {
		t.Errorf("chooser page asks for input; the demo signs in without a password form")
	}
	// With a hint the chooser is skipped.
	sub, _ := subjectOf(t, w, codeFlow(t, w, "login_hint", "bob"))
	if sub != "bob" {
		t.Errorf("hinted sign-in as %s, want bob", sub)
	}
}

func TestRedirectURIs(t *testing.T) {
	w, err := Start(context.Background(), Options{RedirectURIs: []string{"https://bridge.example.com/oauth/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tests := []struct {
		redirect string
		want     int
	}{
		{"http://127.0.0.1:8080/oauth/callback", http.StatusFound},
		{"http://127.0.0.1:54321/oauth/callback", http.StatusFound},
		{"http://127.0.0.1/oauth/callback", http.StatusFound},
		{"http://localhost:8080/oauth/callback", http.StatusFound},
		{"http://[::1]:8080/oauth/callback", http.StatusFound},
		{"https://bridge.example.com/oauth/callback", http.StatusFound},
		{"https://evil.example/oauth/callback", http.StatusBadRequest},
		{"http://127.0.0.1.evil.example/oauth/callback", http.StatusBadRequest},
		{"http://127.0.0.1:8080/other", http.StatusBadRequest},
		{"https://127.0.0.1:8080/oauth/callback", http.StatusBadRequest},
		{"http://user@127.0.0.1:8080/oauth/callback", http.StatusBadRequest},
		{"", http.StatusBadRequest},
	}
	for _, tc := range tests {
		resp, err := noRedirects.Get(authorizeURL(w, tc.redirect))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("redirect_uri %q: status %d, want %d", tc.redirect, resp.StatusCode, tc.want)
		}
		if tc.want != http.StatusFound && resp.Header.Get("Location") != "" {
			t.Errorf("redirect_uri %q: redirected to %s", tc.redirect, resp.Header.Get("Location"))
		}
	}
}

// TestTokenEndpoint covers both client authentication methods, expires_in
// in seconds, the refresh grant and errors that echo no credential.
func TestTokenEndpoint(t *testing.T) {
	ctx := context.Background()
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cfg := world.OAuth2Config("http://127.0.0.1/oauth/callback")
		cfg.Endpoint.AuthStyle = style
		verifier := oauth2.GenerateVerifier()
		resp, err := noRedirects.Get(cfg.AuthCodeURL("s1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", "carol")))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		before := time.Now()
		tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("auth style %d: exchange: %v", style, err)
		}
		// expires_in is seconds: the expiry lands near now + AccessTTL, not centuries away.
		if d := tok.Expiry.Sub(before); d < 9*time.Minute || d > 11*time.Minute {
			t.Errorf("auth style %d: token expires in %v, want about 10m", style, d)
		}
		if tok.RefreshToken == "" || tok.Extra("id_token") == nil {
			t.Errorf("auth style %d: no refresh or ID token", style)
		}
		// RFC 6749 §4.1.2: a code is single use.
		if _, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier)); err == nil {
			t.Errorf("auth style %d: a code was redeemed twice", style)
		}

		tok.Expiry = time.Now().Add(-time.Second)
		fresh, err := cfg.TokenSource(ctx, tok).Token()
		if err != nil {
			t.Fatalf("auth style %d: refresh grant: %v", style, err)
		}
		if r := get(t, world.WorkflowURL+"tasks", "Bearer "+fresh.AccessToken); r.status != 200 {
			t.Errorf("auth style %d: refreshed access token refused upstream: %d", style, r.status)
		}
	}

	const wrongSecret = "wrong-secret-1234567890"
	for _, form := range []url.Values{
		{"grant_type": {"authorization_code"}, "code": {"no-such-code-abcdef"}, "client_id": {world.ClientID}, "client_secret": {world.ClientSecret}},
		{"grant_type": {"refresh_token"}, "refresh_token": {"no-such-refresh-abcdef"}, "client_id": {world.ClientID}, "client_secret": {world.ClientSecret}},
		{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {world.ClientID}, "client_secret": {wrongSecret}},
	} {
		resp, err := http.PostForm(world.provider.m.TokenEndpoint(), form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		if resp.StatusCode < 400 || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("token %s: %d %s, want an RFC 6749 error", form.Get("grant_type"), resp.StatusCode, body)
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("token error Cache-Control = %q, want no-store", resp.Header.Get("Cache-Control"))
		}
		for _, secret := range []string{"no-such-code-abcdef", "no-such-refresh-abcdef", wrongSecret} {
			if strings.Contains(string(body), secret) {
				t.Errorf("token error body echoes a credential: %s", body)
			}
		}
	}

	// client_secret_basic with a wrong secret is refused too.
	req, _ := http.NewRequest(http.MethodPost, world.provider.m.TokenEndpoint(), strings.NewReader("grant_type=authorization_code&code=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(world.ClientID+":"+wrongSecret)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("basic auth with a wrong secret: %d, want 401", resp.StatusCode)
	}
}

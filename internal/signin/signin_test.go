package signin_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
	"github.com/odata-bridge/bridge/internal/signin"
	"github.com/odata-bridge/bridge/powerbi"
)

// fakeBridge is the bridge's side of the connector's sign-in, strict where
// the client could go wrong: the exact client and redirect URI, a browser
// cookie set at /oauth/authorize and required at /oauth/callback, the code
// redeemed at the real demo provider, and PKCE checked at /oauth/token.
type fakeBridge struct {
	world *demo.World
	srv   *httptest.Server
	// mode breaks one step: "state" changes the state returned, "loop"
	// redirects authorize to itself, "refuse" makes the token endpoint refuse.
	mode string

	mu        sync.Mutex
	state     string // the connector's state
	challenge string
	inner     string // the bridge's own state at the provider
	binding   string
	codes     map[string]string // bridge code → the subject the provider signed in
}

func newFakeBridge(t *testing.T, world *demo.World, mode string) *fakeBridge {
	b := &fakeBridge{world: world, mode: mode, codes: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth/authorize", b.authorize)
	mux.HandleFunc("GET /oauth/callback", b.callback)
	mux.HandleFunc("POST /oauth/token", b.token)
	b.srv = httptest.NewServer(mux)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *fakeBridge) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != powerbi.DefaultClientID || q.Get("redirect_uri") != powerbi.RedirectURI ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	if b.mode == "loop" {
		http.Redirect(w, r, r.URL.String(), http.StatusFound)
		return
	}
	b.mu.Lock()
	b.state, b.challenge, b.inner, b.binding = q.Get("state"), q.Get("code_challenge"), rand.Text(), rand.Text()
	inner, binding := b.inner, b.binding
	b.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "binding", Value: binding, Path: "/oauth/", HttpOnly: true})
	cfg := b.world.OAuth2Config(b.srv.URL + "/oauth/callback")
	http.Redirect(w, r, cfg.AuthCodeURL(inner), http.StatusFound)
}

func (b *fakeBridge) callback(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	state, inner, binding := b.state, b.inner, b.binding
	b.mu.Unlock()
	if c, err := r.Cookie("binding"); err != nil || c.Value != binding {
		http.Error(w, "no browser binding", http.StatusBadRequest)
		return
	}
	if r.URL.Query().Get("state") != inner {
		http.Error(w, "state", http.StatusBadRequest)
		return
	}
	cfg := b.world.OAuth2Config(b.srv.URL + "/oauth/callback")
	tok, err := cfg.Exchange(r.Context(), r.URL.Query().Get("code"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	// The provider signed the ID token; the claims are all this fake needs.
	var claims struct {
		Subject string `json:"sub"`
	}
	idToken, _ := tok.Extra("id_token").(string)
	if parts := strings.Split(idToken, "."); len(parts) != 3 || json.Unmarshal(decodeSegment(parts[1]), &claims) != nil {
		http.Error(w, "no ID token", http.StatusBadGateway)
		return
	}
	if b.mode == "state" {
		state += "x"
	}
	code := rand.Text()
	b.mu.Lock()
	b.codes[code] = claims.Subject
	b.mu.Unlock()
	http.Redirect(w, r, powerbi.RedirectURI+"?"+url.Values{"code": {code}, "state": {state}}.Encode(), http.StatusFound)
}

func (b *fakeBridge) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	b.mu.Lock()
	defer b.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	if b.mode == "refuse" || r.PostFormValue("grant_type") != "authorization_code" || b.codes[r.PostFormValue("code")] == "" ||
		r.PostFormValue("client_id") != powerbi.DefaultClientID || r.PostFormValue("redirect_uri") != powerbi.RedirectURI ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != b.challenge {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	subject := b.codes[r.PostFormValue("code")]
	delete(b.codes, r.PostFormValue("code"))
	json.NewEncoder(w).Encode(map[string]any{"access_token": "bridge-access-of-" + subject, "token_type": "Bearer", "expires_in": 3600, "refresh_token": "bridge-refresh"})
}

func decodeSegment(s string) []byte {
	b, _ := base64.RawURLEncoding.DecodeString(s)
	return b
}

func TestSignIn(t *testing.T) {
	world, err := demo.Start(context.Background(), demo.Options{ChooseUser: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { world.Close() })
	user := world.Users[len(world.Users)-1]

	tests := []struct {
		name    string
		mode    string
		hint    string
		wantErr string // a part of the error; empty: the sign-in succeeds
	}{
		{name: "login hint picks the user", hint: user},
		{name: "no hint where the provider asks", wantErr: "answered 200"},
		{name: "state changed on the way", mode: "state", hint: user, wantErr: "state did not come back"},
		{name: "endless redirects", mode: "loop", hint: user, wantErr: "redirects"},
		{name: "token endpoint refuses", mode: "refuse", hint: user, wantErr: "answered 400 invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFakeBridge(t, world, tt.mode)
			c := &signin.Client{BaseURL: b.srv.URL, LoginHint: tt.hint, HTTPClient: &http.Client{Timeout: 10 * time.Second}}
			tok, err := c.SignIn(context.Background())
			if tt.wantErr != "" {
				if !errors.Is(err, signin.ErrSignIn) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SignIn() error = %v, want an ErrSignIn saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("SignIn() error = %v", err)
			}
			if tok.AccessToken != "bridge-access-of-"+user || tok.RefreshToken != "bridge-refresh" || tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 {
				t.Errorf("SignIn() = %+v, want the bridge's tokens", tok)
			}
		})
	}
}

// TestConfig covers the defaults: the connector's client and redirect URI.
func TestConfig(t *testing.T) {
	tests := []struct {
		c                              signin.Client
		wantID, wantRedirect, wantAuth string
	}{
		{signin.Client{BaseURL: "http://127.0.0.1:8080/"}, powerbi.DefaultClientID, powerbi.RedirectURI, "http://127.0.0.1:8080/oauth/authorize"},
		{signin.Client{BaseURL: "https://b.example/x", ClientID: "other", RedirectURL: "https://c.example/cb"}, "other", "https://c.example/cb", "https://b.example/x/oauth/authorize"},
	}
	for _, tt := range tests {
		cfg := tt.c.Config()
		if cfg.ClientID != tt.wantID || cfg.RedirectURL != tt.wantRedirect || cfg.Endpoint.AuthURL != tt.wantAuth {
			t.Errorf("Config() of %+v = %s, %s, %s; want %s, %s, %s", tt.c, cfg.ClientID, cfg.RedirectURL, cfg.Endpoint.AuthURL, tt.wantID, tt.wantRedirect, tt.wantAuth)
		}
	}
}

// TestFollow opens an authorization URL built elsewhere, as the connector's
// StartLogin builds one, and stops at the redirect URI without opening it.
func TestFollow(t *testing.T) {
	world, err := demo.Start(context.Background(), demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { world.Close() })
	b := newFakeBridge(t, world, "")
	c := &signin.Client{BaseURL: b.srv.URL}
	start := b.srv.URL + "/oauth/authorize?" + url.Values{
		"response_type": {"code"}, "client_id": {powerbi.DefaultClientID}, "redirect_uri": {powerbi.RedirectURI},
		"state": {"state-42"}, "code_challenge": {strings.Repeat("A", 43)}, "code_challenge_method": {"S256"},
	}.Encode()
	got, err := c.Follow(context.Background(), start)
	if err != nil {
		t.Fatalf("Follow() error = %v", err)
	}
	if before, _, _ := strings.Cut(got.String(), "?"); before != powerbi.RedirectURI || got.Query().Get("state") != "state-42" || got.Query().Get("code") == "" {
		t.Errorf("Follow() = %s, want the redirect URI with state-42 and a code", got)
	}
}

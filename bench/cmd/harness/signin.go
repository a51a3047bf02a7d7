package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/odata-bridge/bridge/internal/signin"
	"github.com/odata-bridge/bridge/powerbi"
)

// errSignIn means a sign-in through the bridge did not yield a token.
var errSignIn = errors.New("sign-in failed")

// signIn runs the connector's OAuth flow (PKCE S256) against the bridge at
// public, through the demo identity provider, and returns a bridge access token.
func signIn(ctx context.Context, client *http.Client, public string) (string, error) {
	tok, err := (&signin.Client{BaseURL: public, HTTPClient: client}).SignIn(ctx)
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// feedKey creates a feed key with a bridge access token and returns the key.
func feedKey(ctx context.Context, client *http.Client, public, token string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, public+"/api/keys", strings.NewReader(`{"name":"bench"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("create key: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Key string `json:"key"`
	}
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&out) != nil || out.Key == "" {
		return "", fmt.Errorf("create key: status %d: %w", resp.StatusCode, errSignIn)
	}
	return out.Key, nil
}

// revoke ends the session behind a bridge access token (RFC 7009), so a run
// leaves no session behind in a shared Redis.
func revoke(ctx context.Context, client *http.Client, public, token string) error {
	form := url.Values{"token": {token}, "client_id": {powerbi.DefaultClientID}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, public+"/oauth/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

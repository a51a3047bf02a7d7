package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
)

// powerBIRedirect is the redirect URI of Power BI's OAuth custom connectors.
const powerBIRedirect = "https://oauth.powerbi.com/views/oauthredirect.html"

// errSignIn means a sign-in through the bridge did not yield a token.
var errSignIn = errors.New("sign-in failed")

// signIn runs the connector's OAuth flow (PKCE S256) against the bridge at
// public, through the demo identity provider, and returns a bridge access token.
func signIn(ctx context.Context, client *http.Client, public string) (string, error) {
	verifier := make([]byte, 32)
	rand.Read(verifier)
	v := base64.RawURLEncoding.EncodeToString(verifier)
	sum := sha256.Sum256([]byte(v))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {"powerbi"},
		"redirect_uri":          {powerBIRedirect},
		"state":                 {"bench"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	jar, _ := cookiejar.New(nil)
	var final *url.URL
	c := &http.Client{Transport: client.Transport, Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), powerBIRedirect) {
			final = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, public+"/oauth/authorize?"+q.Encode(), nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("authorize: %w", err)
	}
	resp.Body.Close()
	if final == nil || final.Query().Get("code") == "" {
		return "", fmt.Errorf("authorize: no code came back: %w", errSignIn)
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {final.Query().Get("code")},
		"redirect_uri":  {powerBIRedirect},
		"client_id":     {"powerbi"},
		"code_verifier": {v},
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, public+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = client.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tr) != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("token: status %d: %w", resp.StatusCode, errSignIn)
	}
	return tr.AccessToken, nil
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
	form := url.Values{"token": {token}, "client_id": {"powerbi"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, public+"/oauth/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

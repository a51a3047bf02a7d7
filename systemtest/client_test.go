package systemtest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/internal/signin"
	"github.com/odata-bridge/bridge/powerbi"
)

// powerBIRedirect is the redirect URI of Power BI's custom connectors,
// registered for the bridge's default client.
const powerBIRedirect = powerbi.RedirectURI

// client is the tests' HTTP client. Its timeout is the bound of "never a
// hang": every request a test makes ends within it.
var client = &http.Client{Timeout: 20 * time.Second}

// tokens are a bridge access and refresh token pair.
type tokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
	Type    string `json:"token_type"`
	Expires int64  `json:"expires_in"`
}

// signIn signs in through the bridge at base as the demo user, the way
// Power BI's connector does (PKCE S256), naming the user to the demo
// provider with a login hint.
func signIn(ctx context.Context, base, user string) (tokens, error) {
	tok, err := (&signin.Client{BaseURL: base, LoginHint: user, HTTPClient: client}).SignIn(ctx)
	if err != nil {
		return tokens{}, err
	}
	return tokens{Access: tok.AccessToken, Refresh: tok.RefreshToken, Type: tok.TokenType, Expires: tok.ExpiresIn}, nil
}

// mustSignIn is signIn that fails the test.
func mustSignIn(t testing.TB, base, user string) tokens {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := signIn(ctx, base, user)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenRequest POSTs a form to the bridge's token endpoint.
func tokenRequest(ctx context.Context, base string, form url.Values) (int, tokens, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return 0, tokens{}, err
	}
	defer resp.Body.Close()
	var tok tokens
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &tok); err != nil {
			return resp.StatusCode, tok, fmt.Errorf("token response is not JSON: %w", err)
		}
	}
	return resp.StatusCode, tok, nil
}

// refreshGrant runs the refresh_token grant as Power Query's Refresh does.
func refreshGrant(ctx context.Context, base, refreshToken string) (int, tokens, error) {
	return tokenRequest(ctx, base, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
		"client_id":     {powerbi.DefaultClientID},
	})
}

// feedKey is a created feed key.
type feedKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// createKey creates a feed key with a bridge bearer token.
func createKey(ctx context.Context, base, access string) (int, feedKey, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/keys", strings.NewReader(`{"name":"system test"}`))
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, feedKey{}, err
	}
	defer resp.Body.Close()
	var k feedKey
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(raw, &k); err != nil {
			return resp.StatusCode, k, err
		}
	}
	return resp.StatusCode, k, nil
}

func mustCreateKey(t testing.TB, base, access string) feedKey {
	t.Helper()
	status, k, err := createKey(context.Background(), base, access)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create key at %s: status %d, %v", base, status, err)
	}
	return k
}

// bearer and basicKey are Authorization header values.
func bearer(access string) string { return "Bearer " + access }
func basicKey(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("excel:"+key))
}

// response is a read response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends one request with an optional Authorization header and reads the
// whole response.
func do(ctx context.Context, method, rawURL, auth string, body io.Reader) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return response{}, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}, err
}

// get is do for GET that fails the test when no response comes.
func get(t testing.TB, rawURL, auth string) response {
	t.Helper()
	r, err := do(context.Background(), http.MethodGet, rawURL, auth, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	return r
}

// odataErrorCode returns the code of an OData JSON error body in the v4
// ({"error":{"code"}}), v3 ({"odata.error":{"code"}}) or v2 shape, or "".
func odataErrorCode(body []byte) string {
	var e map[string]struct {
		Code    string          `json:"code"`
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	for _, k := range []string{"error", "odata.error"} {
		if v, ok := e[k]; ok && v.Code != "" && len(v.Message) > 0 {
			return v.Code
		}
	}
	return ""
}

// followFeed reads an OData v4 feed to its end through @odata.nextLink and
// returns the number of rows and pages. Every next link must stay on base.
func followFeed(t testing.TB, start, auth string, bases ...string) (rows, pages int) {
	t.Helper()
	next := start
	for next != "" {
		if pages++; pages > 500 {
			t.Fatal("more than 500 pages")
		}
		r := get(t, next, auth)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: status %d: %s", next, r.Status, r.Body)
		}
		var page struct {
			Value []json.RawMessage `json:"value"`
			Next  string            `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatalf("GET %s: not JSON: %v", next, err)
		}
		rows += len(page.Value)
		next = page.Next
		if next != "" && len(bases) > 0 {
			// Page through the bridges in turn, as a load balancer would.
			base := bases[pages%len(bases)]
			i := strings.Index(next, "/odata/")
			if i < 0 {
				t.Fatalf("next link %q is not on a bridge", next)
			}
			next = base + next[i:]
		}
	}
	return rows, pages
}

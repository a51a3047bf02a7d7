// Package signin signs in through the bridge's OAuth endpoints the way the
// Power BI custom connector does, for tests, the benchmark harness and the
// demo: /oauth/authorize, the identity provider, /oauth/callback, then the
// code redeemed at /oauth/token with PKCE (RFC 7636, S256).
package signin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/odata-bridge/bridge/powerbi"
)

// ErrSignIn means a sign-in did not yield a bridge token; the wrapped
// message says which step failed.
var ErrSignIn = errors.New("sign-in failed")

// maxHops bounds the redirects of one sign-in: the bridge, the provider, the
// bridge's callback, plus room for a provider that redirects within itself.
const maxHops = 10

// Client signs in through one bridge as the connector and the browser window
// Power Query opens for it. The zero value of every field but BaseURL works.
type Client struct {
	// BaseURL is the bridge's public URL, such as "http://127.0.0.1:8080".
	BaseURL string
	// ClientID is the bridge client the connector signs in as; empty means
	// powerbi.DefaultClientID.
	ClientID string
	// RedirectURL is the connector's redirect URI, where the sign-in ends;
	// empty means powerbi.RedirectURI.
	RedirectURL string
	// LoginHint, when set, is added to the identity provider's authorization
	// request (OpenID Connect Core §3.1.2.1), so that the demo provider and
	// the tests' providers sign in that user without asking; empty sends none.
	LoginHint string
	// HTTPClient's Transport and Timeout carry every request; nil means
	// http.DefaultClient. Its Jar and CheckRedirect are not used: each
	// sign-in keeps its own cookies, as one browser window would, and
	// follows the redirects itself.
	HTTPClient *http.Client
}

// Config is the connector's OAuth client configuration against the bridge.
func (c *Client) Config() *oauth2.Config {
	base := strings.TrimSuffix(c.BaseURL, "/")
	cfg := &oauth2.Config{
		ClientID:    c.ClientID,
		RedirectURL: c.RedirectURL,
		Endpoint: oauth2.Endpoint{
			AuthURL:  base + "/oauth/authorize",
			TokenURL: base + "/oauth/token",
			// The connector is a public client: client_id in the form, no secret.
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	if cfg.ClientID == "" {
		cfg.ClientID = powerbi.DefaultClientID
	}
	if cfg.RedirectURL == "" {
		cfg.RedirectURL = powerbi.RedirectURI
	}
	return cfg
}

// SignIn runs one whole sign-in and returns the bridge's tokens.
func (c *Client) SignIn(ctx context.Context) (*oauth2.Token, error) {
	cfg := c.Config()
	verifier := oauth2.GenerateVerifier()
	code, err := c.authorize(ctx, cfg, verifier)
	if err != nil {
		return nil, err
	}
	tok, err := cfg.Exchange(context.WithValue(ctx, oauth2.HTTPClient, c.httpClient()), code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("%w: token endpoint answered %d %s", ErrSignIn, re.Response.StatusCode, re.ErrorCode)
		}
		return nil, fmt.Errorf("%w: token: %w", ErrSignIn, err)
	}
	return tok, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

// authorize opens the bridge's authorization endpoint and returns the code
// that comes back to the connector's redirect URI.
func (c *Client) authorize(ctx context.Context, cfg *oauth2.Config, verifier string) (string, error) {
	state := rand.Text()
	back, err := c.Follow(ctx, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		return "", err
	}
	q := back.Query()
	// RFC 6749 §10.12: the state must come back unchanged.
	if q.Get("state") != state {
		return "", fmt.Errorf("%w: state did not come back", ErrSignIn)
	}
	if q.Get("code") == "" {
		return "", fmt.Errorf("%w: no code came back: %s", ErrSignIn, q.Get("error"))
	}
	return q.Get("code"), nil
}

// Follow is the sign-in window: it opens start, an authorization URL such
// as the connector's StartLogin builds, and follows the redirects with one
// cookie jar until one reaches the redirect URI, which it returns unopened;
// its query carries the code and state, or the error.
func (c *Client) Follow(ctx context.Context, start string) (*url.URL, error) {
	cfg := c.Config()
	bridge, err := url.Parse(cfg.Endpoint.AuthURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignIn, err)
	}
	next, err := url.Parse(start)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignIn, err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	base := c.httpClient()
	window := &http.Client{
		Transport:     base.Transport,
		Timeout:       base.Timeout,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for range maxHops {
		if c.LoginHint != "" && next.Host != bridge.Host && strings.HasSuffix(next.Path, "/authorize") {
			q := next.Query()
			q.Set("login_hint", c.LoginHint)
			next.RawQuery = q.Encode()
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next.String(), nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSignIn, err)
		}
		resp, err := window.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSignIn, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// RFC 6749 §4.1.2 and OpenID Connect Core §3.1.2.5 redirect with 302
		// Found; 303 See Other means the same for a GET.
		loc, err := resp.Location()
		if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther || err != nil {
			return nil, fmt.Errorf("%w: GET %s%s answered %d", ErrSignIn, next.Host, next.Path, resp.StatusCode)
		}
		if before, _, _ := strings.Cut(loc.String(), "?"); before == cfg.RedirectURL {
			return loc, nil
		}
		next = loc
	}
	return nil, fmt.Errorf("%w: more than %d redirects", ErrSignIn, maxHops)
}

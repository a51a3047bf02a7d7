package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// powerBIRedirect is the redirect URI of Power BI's OAuth custom connectors.
const powerBIRedirect = "https://oauth.powerbi.com/views/oauthredirect.html"

// runDemo starts the demo world and the bridge in front of it.
func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	listen, err := demoListen(args, getenv)
	if err != nil {
		return err
	}
	world, err := demo.Start(ctx, demo.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ChooseUser: true})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer world.Close()

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("demo: listen on %s: %w (choose another with --listen 127.0.0.1:PORT)", listen, err)
	}
	public := "http://" + ln.Addr().String()
	cfg, err := demoConfig(world, public)
	if err != nil {
		ln.Close()
		return err
	}

	// Sign in once through the bridge's own OAuth endpoint, as the Power BI
	// connector would, and create a feed key, so curl works at once.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		key, err := demoFeedKey(ctx, public, world, "alice")
		upstream, _ := world.AccessToken(ctx, "alice")
		printDemo(stdout, cfg, world, key, err, upstream)
	}()
	err = serve(ctx, cfg, stdout, ln)
	wg.Wait()
	return err
}

// demoConfig is the bridge's config for the demo world.
func demoConfig(world *demo.World, public string) (*Config, error) {
	cfg, err := loadConfig(nil, func(string) string { return "" })
	if err != nil {
		return nil, err
	}
	cfg.Listen = strings.TrimPrefix(public, "http://")
	cfg.PublicURL = public
	cfg.Log.Format = "text"
	cfg.IdP.Issuer = world.Issuer
	cfg.IdP.ClientID = world.ClientID
	cfg.IdP.ClientSecret = world.ClientSecret
	cfg.Sources = []SourceConfig{
		{Name: "smartobjects", Title: "K2 SmartObjects (OData v4)", Kind: "odata", URL: world.ODataV4URL, Auth: "user", HeaderTimeout: Duration(60 * time.Second)},
		{Name: "smartobjects-v3", Title: "K2 SmartObjects (OData v3)", Kind: "odata", URL: world.ODataV3URL, Auth: "user", HeaderTimeout: Duration(60 * time.Second)},
		{Name: "workflow", Title: "K2 Workflow", Kind: "rest", Preset: "k2-workflow", URL: world.WorkflowURL, Auth: "user", HeaderTimeout: Duration(60 * time.Second)},
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo config: %w", err)
	}
	return cfg, nil
}

func printDemo(w io.Writer, cfg *Config, world *demo.World, key string, keyErr error, upstreamToken string) {
	p := cfg.PublicURL
	fmt.Fprintf(w, "\nOData Bridge demo is running at %s\n\n", p)
	fmt.Fprintf(w, "  Sign-in page:   %s/   (choose %s at the demo identity provider, no password)\n", p, strings.Join(world.Users, " or "))
	for _, s := range cfg.Sources {
		fmt.Fprintf(w, "  Feed %-16s %s/odata/%s/\n", s.Name+":", p, s.Name)
	}
	fmt.Fprintf(w, "  Sources (JSON): %s/api/sources\n", p)
	fmt.Fprintf(w, "  Health:         %s/healthz  %s/readyz  %s/metrics\n", p, p, p)
	if keyErr != nil {
		fmt.Fprintf(w, "\n  (No demo feed key: %v. Create one on the sign-in page.)\n", keyErr)
	} else {
		fmt.Fprintf(w, "\nA feed key for alice was created. Read a feed through the bridge with it:\n")
		fmt.Fprintf(w, "  curl -u alice:%s '%s/odata/smartobjects/Customers?$top=3'\n", key, p)
		fmt.Fprintf(w, "In Excel: Data > Get Data > From OData Feed, paste a feed URL, choose Basic,\nany user name, and the key as the password.\n")
	}
	fmt.Fprintf(w, "\nThe sample upstream (needs a token from the demo identity provider):\n")
	fmt.Fprintf(w, "  OData v4: %s\n  OData v3: %s\n  Workflow: %s\n", world.ODataV4URL, world.ODataV3URL, world.WorkflowURL)
	if upstreamToken != "" {
		fmt.Fprintf(w, "A token of alice from the demo identity provider (valid for 10 minutes) reads it directly:\n")
		fmt.Fprintf(w, "  curl -H 'Authorization: Bearer %s' '%sCustomers?$top=3'\n", upstreamToken, world.ODataV4URL)
	}
	fmt.Fprintf(w, "\nPress Ctrl-C to stop.\n\n")
}

// demoFeedKey signs in as user through the bridge's OAuth endpoint, exactly
// as Power BI's connector does (PKCE S256), and creates a feed key.
func demoFeedKey(ctx context.Context, public string, world *demo.World, user string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := world.UseUser(user); err != nil {
		return "", err
	}
	tok, err := signInAsConnector(ctx, public)
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, public+"/api/keys", strings.NewReader(`{"name":"demo key"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Key string `json:"key"`
	}
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return "", fmt.Errorf("create key: status %d", resp.StatusCode)
	}
	return out.Key, nil
}

// signInAsConnector runs flow A against the bridge and returns a bridge
// access token.
func signInAsConnector(ctx context.Context, public string) (string, error) {
	verifier := make([]byte, 32)
	rand.Read(verifier)
	v := base64.RawURLEncoding.EncodeToString(verifier)
	sum := sha256.Sum256([]byte(v))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {"powerbi"},
		"redirect_uri":          {powerBIRedirect},
		"state":                 {"demo"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	jar, _ := cookiejar.New(nil)
	var final *url.URL
	client := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), powerBIRedirect) {
			final = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, public+"/oauth/authorize?"+q.Encode(), nil)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("sign in: %w", err)
	}
	resp.Body.Close()
	if final == nil || final.Query().Get("code") == "" {
		return "", errors.New("sign in: no code came back")
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
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&tr) != nil {
		return "", fmt.Errorf("token: status %d", resp.StatusCode)
	}
	return tr.AccessToken, nil
}

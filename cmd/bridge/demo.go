package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/odata-bridge/bridge/demo"
	"github.com/odata-bridge/bridge/internal/signin"
	"github.com/odata-bridge/bridge/odata"
)

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
	// /metrics on a free loopback port of its own, never on the public listener.
	if cfg.MetricsListen, err = freeLoopbackAddr(); err != nil {
		ln.Close()
		return fmt.Errorf("demo: metrics listener: %w", err)
	}

	// Sign in once through the bridge's own OAuth endpoint, as the Power BI
	// connector would, and create a feed key, so curl works at once.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		key, err := demoFeedKey(ctx, public, "alice")
		upstream, _ := world.AccessToken(ctx, "alice")
		printDemo(stdout, cfg, world, key, err, upstream)
	}()
	err = serve(ctx, cfg, stdout, ln)
	wg.Wait()
	return err
}

// freeLoopbackAddr returns a loopback address with a port that was free a
// moment ago.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
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
	cfg.Admins = world.Users[:1] // the demo provider's subject is the user name
	cfg.Sources = []SourceConfig{
		{Name: "smartobjects", Title: "K2 SmartObjects (OData v4)", Kind: "odata", URL: world.ODataV4URL, Auth: "user", HeaderTimeout: Duration(60 * time.Second),
			ODataVersion: odata.Version4, RepeatTTL: Duration(30 * time.Second), ReadAhead: 1},
		{Name: "smartobjects-v3", Title: "K2 SmartObjects (OData v3)", Kind: "odata", URL: world.ODataV3URL, Auth: "user", HeaderTimeout: Duration(60 * time.Second),
			ODataVersion: odata.Version3, RepeatTTL: Duration(30 * time.Second), ReadAhead: 1},
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
	if len(cfg.Admins) > 0 {
		fmt.Fprintf(w, "  Operators:      %s/admin   (sign in as %s)\n", p, strings.Join(cfg.Admins, " or "))
	}
	fmt.Fprintf(w, "  Health:         %s/healthz  %s/readyz\n", p, p)
	fmt.Fprintf(w, "  Metrics:        http://%s/metrics   (a listener of its own, on loopback)\n", cfg.MetricsListen)
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
// as Power BI's connector does (PKCE S256), and creates a feed key. The
// login hint names the user to the demo provider, which would otherwise
// show its chooser.
func demoFeedKey(ctx context.Context, public, user string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tok, err := (&signin.Client{BaseURL: public, LoginHint: user}).SignIn(ctx)
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, public+"/api/keys", strings.NewReader(`{"name":"demo key"}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
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

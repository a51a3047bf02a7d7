package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/odata-bridge/bridge/powerbi"
)

// printConfig writes the effective config as YAML, secrets redacted.
func printConfig(w io.Writer, cfg *Config) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(cfg.Redacted()); err != nil {
		return err
	}
	return enc.Close()
}

// writeConnector writes the custom connector for the configured public_url.
func writeConnector(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("connector", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", "", "directory to write ODataBridge.mez into")
	var rest []string
	// --out is this command's own; the others (--config, --listen) are the config's.
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--out" || a == "-out":
			if i+1 >= len(args) {
				return usageError("connector: --out needs a directory")
			}
			*out = args[i+1]
			i++
		case strings.HasPrefix(a, "--out=") || strings.HasPrefix(a, "-out="):
			*out = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	if *out == "" {
		return usageError("connector: --out DIR is required")
	}
	cfg, err := configFor(rest, getenv)
	if err != nil {
		return err
	}
	c := powerbi.Connector{PublicURL: cfg.PublicURL, ClientID: connectorClientID(cfg)}
	mez, err := c.Mez()
	if err != nil {
		return fmt.Errorf("connector: %w", err)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("connector: %w", err)
	}
	path := filepath.Join(*out, "ODataBridge.mez")
	if err := os.WriteFile(path, mez, 0o644); err != nil {
		return fmt.Errorf("connector: %w", err)
	}
	fmt.Fprintln(stdout, "wrote", path)
	return nil
}

// connectorClientID is the OAuth client that the generated connector uses:
// the one registered with Power BI's redirect URI.
func connectorClientID(cfg *Config) string {
	for _, c := range cfg.Clients {
		for _, r := range c.RedirectURIs {
			if r == powerbi.RedirectURI {
				return c.ID
			}
		}
	}
	return powerbi.DefaultClientID
}

// Command bridge runs OData Bridge: the OAuth endpoint of Power BI's custom
// connector, an encrypted token cache, and a streaming OData relay.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// usage is the top-level help.
const usage = `bridge: OAuth sign-in and a streaming OData relay for Power BI and Excel.

Usage:
  bridge [serve] [--config FILE] [--listen ADDR] [--pprof ADDR]
                                                    run the bridge (the default)
  bridge demo [--listen ADDR]                       run the bridge with a sample upstream and identity provider
  bridge check-config [--config FILE]               print the effective config, secrets redacted; exit 0 or 2
  bridge connector --out DIR [--config FILE]        write the Power BI custom connector (.mez) for this bridge
  bridge consent-url --tenant T [--config FILE]     print Entra ID's admin-consent URL for tenant T
  bridge version                                    print the version

The config file may also be named by BRIDGE_CONFIG, and every setting can be
overridden by a BRIDGE_* environment variable (see README.md).
`

// exitError carries a process exit code; 2 means a bad config or bad usage.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// run is the whole program, testable: it returns when ctx ends or on error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return help(cmd, stdout)
		}
	}
	switch cmd {
	case "serve":
		cfg, err := configFor(args, getenv)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stdout, nil)
	case "demo":
		return runDemo(ctx, args, getenv, stdout)
	case "check-config":
		cfg, err := configFor(args, getenv)
		if err != nil {
			return err
		}
		return printConfig(stdout, cfg)
	case "connector":
		return writeConnector(args, getenv, stdout)
	case "consent-url":
		return printConsentURL(args, getenv, stdout)
	case "version":
		fmt.Fprintln(stdout, "bridge", version())
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError("unknown command %q; run 'bridge --help'", cmd)
}

// configFor loads and validates the config; any problem exits 2.
func configFor(args []string, getenv func(string) string) (*Config, error) {
	cfg, err := loadConfig(args, getenv)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	if err := cfg.Validate(); err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return cfg, nil
}

func help(cmd string, w io.Writer) error {
	switch cmd {
	case "serve":
		fmt.Fprint(w, "bridge serve [--config FILE] [--listen ADDR] [--pprof ADDR]\n\nRuns the bridge with the config file (or BRIDGE_CONFIG) and BRIDGE_* overrides.\nIt shuts down gracefully on SIGINT or SIGTERM within shutdown_timeout.\n\n--pprof 127.0.0.1:6060 serves Go's profiler (net/http/pprof) on that loopback\naddress only, on a listener of its own; off by default.\n")
	case "demo":
		fmt.Fprint(w, "bridge demo [--listen ADDR]\n\nStarts a sample K2-like upstream (SmartObject OData v4 and v3, Workflow REST),\nan embedded OIDC identity provider and the bridge with the in-memory store,\nall on loopback, and prints what to open. Default listen address: 127.0.0.1:8080.\n")
	case "check-config":
		fmt.Fprint(w, "bridge check-config [--config FILE]\n\nValidates the config, prints the effective config with secrets redacted,\nand exits 0 when it is valid or 2 with every problem when it is not.\n")
	case "connector":
		fmt.Fprint(w, "bridge connector --out DIR [--config FILE]\n\nWrites ODataBridge.mez, the Power BI custom connector for this bridge's\npublic_url, into DIR.\n")
	case "consent-url":
		fmt.Fprint(w, "bridge consent-url --tenant TENANT [--config FILE]\n\nPrints the URL at which a tenant administrator grants the bridge's Entra ID\napp registration its permissions (admin consent) for TENANT, a tenant ID or\ndomain name: exactly where GET /admin/consent?tenant=TENANT redirects.\n")
	case "version":
		fmt.Fprint(w, "bridge version\n\nPrints the version of this build.\n")
	default:
		fmt.Fprint(w, usage)
	}
	return nil
}

// version is the module version stamped by the Go toolchain.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

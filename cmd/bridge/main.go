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
	cmd, named := "serve", false
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args, named = args[0], args[1:], true
	}
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			if !named {
				cmd = "help" // bare `bridge --help` lists the commands
			}
			return help(cmd, stdout)
		}
	}
	switch cmd {
	case "serve":
		cfg, err := configFor(args, getenv)
		if err != nil {
			return err
		}
		tr, err := startTracing(ctx, getenv)
		if err != nil {
			return err
		}
		return serveTraced(ctx, cfg, stdout, nil, tr)
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
		if len(args) > 0 {
			return usageError("version: unexpected argument %q", args[0])
		}
		bi, ok := debug.ReadBuildInfo()
		fmt.Fprintln(stdout, versionLine(bi, ok))
		return nil
	case "help":
		if len(args) > 1 {
			return usageError("help: one command at most; run 'bridge help'")
		}
		if len(args) == 1 {
			return help(args[0], stdout)
		}
		return help("help", stdout)
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

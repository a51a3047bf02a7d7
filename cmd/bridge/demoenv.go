// The demo's command line: its one flag and the one BRIDGE_* variable it honours.

package main

import (
	"flag"
	"io"
	"os"
	"slices"
	"strings"
)

// demoDefaultListen keeps the demo on loopback unless told otherwise: its
// identity provider signs anyone in without a password.
const demoDefaultListen = "127.0.0.1:8080"

// demoEnv are the BRIDGE_* variables the demo honours; it refuses every other
// one rather than ignore it. BRIDGE_TEST_* belong to the tests and pass silently.
var demoEnv = []string{"BRIDGE_LISTEN"}

// demoFlags declares the demo's flags on fs.
func demoFlags(fs *flag.FlagSet) (listen *string) {
	return fs.String("listen", "", "the bridge listens on `ADDR`; overrides BRIDGE_LISTEN; without either, "+demoDefaultListen)
}

// demoListen is demoListenFrom with the process's environment.
func demoListen(args []string, getenv func(string) string) (string, error) {
	return demoListenFrom(args, getenv, os.Environ())
}

// demoListenFrom reads the demo's command line and environment and returns the
// address to listen on: --listen, else BRIDGE_LISTEN, else loopback port 8080.
// As in loadConfig, environ only names the variables and getenv reads them,
// and an empty variable counts as unset.
func demoListenFrom(args []string, getenv func(string) string, environ []string) (string, error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := demoFlags(fs)
	if err := fs.Parse(args); err != nil {
		return "", usageError("demo: %v", err)
	}
	if fs.NArg() > 0 {
		return "", usageError("demo: unexpected argument %q", fs.Arg(0))
	}
	var ignored []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || strings.HasPrefix(name, "BRIDGE_TEST_") ||
			slices.Contains(demoEnv, name) || getenv(name) == "" || slices.Contains(ignored, name) {
			continue
		}
		ignored = append(ignored, name)
	}
	if len(ignored) > 0 {
		slices.Sort(ignored)
		return "", usageError("demo: the demo runs on a configuration of its own and honours only %s, so it would ignore %s; unset %s, or use 'bridge serve'",
			strings.Join(demoEnv, ", "), strings.Join(ignored, ", "), pronoun(len(ignored)))
	}
	switch {
	case *listen != "":
		return *listen, nil
	case getenv("BRIDGE_LISTEN") != "":
		return getenv("BRIDGE_LISTEN"), nil
	}
	return demoDefaultListen, nil
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

// The command line's help: the list of commands, each command's flags, and the version.

package main

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"text/tabwriter"
)

// command is one subcommand of bridge as its help describes it.
type command struct {
	name    string
	summary string // one line in the list of commands
	usage   string // the synopsis after "bridge "
	about   string // what it does, after the synopsis
	// flags declares the command's flags on fs, for the help; nil when it has none.
	flags func(fs *flag.FlagSet)
}

// Flags that several commands share, declared the way loadConfig reads them.
func configFlag(fs *flag.FlagSet) {
	fs.String("config", "", "read the YAML configuration from `FILE`; without it BRIDGE_CONFIG names the file, and no file is fine")
}

func listenFlag(fs *flag.FlagSet) {
	fs.String("listen", "", "listen on `ADDR`, e.g. :8080; overrides listen and BRIDGE_LISTEN")
}

// commands are every subcommand, in the order the help lists them.
var commands = []command{
	{
		name:    "serve",
		summary: "run the bridge (the default command)",
		usage:   "serve [--config FILE] [--listen ADDR] [--pprof ADDR]",
		about: `Runs the bridge with the config file (or BRIDGE_CONFIG) and BRIDGE_* overrides.
It shuts down gracefully on SIGINT or SIGTERM within shutdown_timeout.
The whole config is validated first; every problem is printed and the exit status is 2.`,
		flags: func(fs *flag.FlagSet) {
			configFlag(fs)
			listenFlag(fs)
			fs.String("pprof", "", "serve Go's profiler (net/http/pprof) on this loopback `ADDR`, e.g. 127.0.0.1:6060, on a listener of its own; off by default")
		},
	},
	{
		name:    "demo",
		summary: "run the bridge with a sample upstream and identity provider, no config needed",
		usage:   "demo [--listen ADDR]",
		about: `Starts a sample K2-like upstream (SmartObject OData v4 and v3, Workflow REST),
an embedded OIDC identity provider and the bridge with the in-memory store,
and prints what to open. The demo has a configuration of its own: of the
BRIDGE_* variables it honours BRIDGE_LISTEN only, and it refuses to start
(exit status 2) while any other is set, rather than ignore it.`,
		flags: func(fs *flag.FlagSet) { demoFlags(fs) },
	},
	{
		name:    "check-config",
		summary: "validate the config and print it, secrets redacted; exit 0 or 2",
		usage:   "check-config [--config FILE] [--listen ADDR]",
		about: `Validates the config (file, BRIDGE_* variables and flags, as serve reads them),
prints the effective config with secrets redacted, and exits 0 when it is
valid or 2 with every problem when it is not.`,
		flags: func(fs *flag.FlagSet) {
			configFlag(fs)
			listenFlag(fs)
		},
	},
	{
		name:    "connector",
		summary: "write the Power BI custom connector (.mez) for this bridge",
		usage:   "connector --out DIR [--config FILE]",
		about:   `Writes ODataBridge.mez, the Power BI custom connector for this bridge's public_url, into DIR.`,
		flags: func(fs *flag.FlagSet) {
			fs.String("out", "", "write ODataBridge.mez into the directory `DIR`; required")
			configFlag(fs)
		},
	},
	{
		name:    "consent-url",
		summary: "print Entra ID's admin-consent URL for a tenant",
		usage:   "consent-url --tenant TENANT [--config FILE]",
		about: `Prints the URL at which a tenant administrator grants the bridge's Entra ID
app registration its permissions (admin consent) for TENANT: exactly where
GET /admin/consent?tenant=TENANT redirects.`,
		flags: func(fs *flag.FlagSet) {
			fs.String("tenant", "", "the `TENANT` ID or domain name; required")
			configFlag(fs)
		},
	},
	{
		name:    "version",
		summary: "print the version and the source revision of this build",
		usage:   "version",
		about:   `Prints the module version, and the VCS revision and commit time the Go toolchain stamped into the binary.`,
	},
	{
		name:    "help",
		summary: "list the commands, or show one command's help",
		usage:   "help [COMMAND]",
		about:   `Without COMMAND, lists the commands; 'bridge COMMAND --help' shows the same as 'bridge help COMMAND'.`,
	},
}

// lookupCommand finds a command by name.
func lookupCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// help writes the list of commands for "help", or the named command's help.
func help(name string, w io.Writer) error {
	if name == "help" {
		writeCommandList(w)
		return nil
	}
	c, ok := lookupCommand(name)
	if !ok {
		return usageError("unknown command %q; run 'bridge help'", name)
	}
	fmt.Fprintf(w, "Usage: bridge %s\n\n%s\n", c.usage, c.about)
	if c.flags != nil {
		fmt.Fprint(w, "\nFlags:\n")
		writeFlags(w, c)
	}
	return nil
}

func writeCommandList(w io.Writer) {
	fmt.Fprint(w, "bridge: OAuth sign-in and a streaming OData relay for Power BI and Excel.\n\n")
	fmt.Fprint(w, "Usage: bridge [COMMAND] [FLAGS]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, `
'bridge COMMAND --help' shows a command's flags. Without a command, bridge serves.
The config file may also be named by BRIDGE_CONFIG, and every setting can be
overridden by a BRIDGE_* environment variable (see README.md).
`)
}

// writeFlags lists the command's flags, one line each, in flag's order (by name).
func writeFlags(w io.Writer, c command) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags(fs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if arg != "" {
			name += " " + arg
		}
		if f.DefValue != "" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, usage)
	})
	tw.Flush()
}

// versionLine describes the build: the module version, then the VCS revision
// and commit time and whether the tree was modified, as the Go toolchain
// stamped them (go build in a git checkout does; go run and go test do not).
func versionLine(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return "bridge devel (no build information in this binary)"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	vcs := map[string]string{}
	for _, s := range bi.Settings {
		if rest, found := strings.CutPrefix(s.Key, "vcs."); found {
			vcs[rest] = s.Value
		}
	}
	rev := vcs["revision"]
	if rev == "" {
		return "bridge " + v + " (no VCS information in this build)"
	}
	if len(rev) > 7 {
		rev = rev[:7]
	}
	parts := []string{"rev " + rev}
	if t := vcs["time"]; t != "" {
		parts = append(parts, t)
	}
	if vcs["modified"] == "true" {
		parts = append(parts, "modified")
	}
	return "bridge " + v + " (" + strings.Join(parts, ", ") + ")"
}

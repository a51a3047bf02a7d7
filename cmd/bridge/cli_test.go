package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func noEnv(string) string { return "" }

// runOut runs the command line and returns what it printed and its error.
func runOut(t *testing.T, getenv func(string) string, args ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	err := run(context.Background(), args, getenv, &out)
	return out.String(), err
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

// TestHelpListsEveryCommand: every way of asking for help without a command
// lists all commands, one line each with what it does.
func TestHelpListsEveryCommand(t *testing.T) {
	want := []string{"serve", "demo", "check-config", "connector", "consent-url", "version", "help"}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}, {"help", "--help"}} {
		out, err := runOut(t, noEnv, args...)
		if err != nil {
			t.Errorf("bridge %s: %v", strings.Join(args, " "), err)
			continue
		}
		for _, name := range want {
			c, ok := lookupCommand(name)
			if !ok {
				t.Fatalf("no command %q in the help's table", name)
			}
			line := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` +` + regexp.QuoteMeta(c.summary) + `$`)
			if c.summary == "" || !line.MatchString(out) {
				t.Errorf("bridge %s: no line for %s with its summary in:\n%s", strings.Join(args, " "), name, out)
			}
		}
		if strings.Contains(out, "--pprof") {
			t.Errorf("bridge %s shows serve's flags instead of the list of commands:\n%s", strings.Join(args, " "), out)
		}
	}
	if len(commands) != len(want) {
		t.Errorf("the help lists %d commands, want %d: %v", len(commands), len(want), want)
	}
}

// TestCommandHelpShowsFlags: `bridge CMD --help`, `bridge CMD -h` and `bridge help CMD`
// show that command's synopsis and flags.
func TestCommandHelpShowsFlags(t *testing.T) {
	tests := []struct {
		cmd   string
		flags []string
	}{
		{"serve", []string{"--config FILE", "--listen ADDR", "--pprof ADDR"}},
		{"demo", []string{"--listen ADDR"}},
		{"check-config", []string{"--config FILE", "--listen ADDR"}},
		{"connector", []string{"--out DIR", "--config FILE"}},
		{"consent-url", []string{"--tenant TENANT", "--config FILE"}},
		{"version", nil},
	}
	for _, tc := range tests {
		for _, args := range [][]string{{tc.cmd, "--help"}, {tc.cmd, "-h"}, {"help", tc.cmd}} {
			out, err := runOut(t, noEnv, args...)
			if err != nil {
				t.Errorf("bridge %s: %v", strings.Join(args, " "), err)
				continue
			}
			if !strings.HasPrefix(out, "Usage: bridge "+tc.cmd) {
				t.Errorf("bridge %s: got %q, want it to start with the synopsis of %s", strings.Join(args, " "), out, tc.cmd)
			}
			for _, f := range tc.flags {
				if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(f) + `  +\S`).MatchString(out) {
					t.Errorf("bridge %s: no line for flag %q with its description in:\n%s", strings.Join(args, " "), f, out)
				}
			}
			if got, want := strings.Count(out, "\n  --"), len(tc.flags); got != want {
				t.Errorf("bridge %s: %d flag lines, want %d:\n%s", strings.Join(args, " "), got, want, out)
			}
		}
	}
}

// TestHelpFlagsAreAccepted: every flag a command's help lists is one the command
// parses: with it, parsing fails only at a flag that does not exist.
func TestHelpFlagsAreAccepted(t *testing.T) {
	dir := t.TempDir()
	for _, c := range commands {
		if c.flags == nil {
			continue
		}
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs)
		fs.VisitAll(func(f *flag.Flag) {
			var args []string
			if c.name == "connector" && f.Name != "out" {
				args = append(args, "--out", dir) // checked before the config's flags
			}
			args = append([]string{c.name}, append(args, "--"+f.Name, "x", "--no-such-flag")...)
			_, err := runOut(t, noEnv, args...)
			if exitCode(err) != 2 || !strings.Contains(errText(err), "no-such-flag") {
				t.Errorf("bridge %s: got %v; want exit status 2 for -no-such-flag alone, after --%s was accepted", strings.Join(args, " "), err, f.Name)
			}
		})
	}
}

// TestEveryListedCommandRuns: run dispatches every command the help lists.
func TestEveryListedCommandRuns(t *testing.T) {
	for _, c := range commands {
		_, err := runOut(t, noEnv, c.name, "--no-such-flag")
		if strings.Contains(errText(err), fmt.Sprintf("unknown command %q", c.name)) {
			t.Errorf("bridge %s: %v; the help lists a command that run does not know", c.name, err)
		}
	}
}

func TestHelpUnknownCommand(t *testing.T) {
	for _, args := range [][]string{{"help", "frobnicate"}, {"frobnicate", "--help"}, {"help", "serve", "demo"}, {"version", "extra"}} {
		out, err := runOut(t, noEnv, args...)
		if exitCode(err) != 2 {
			t.Errorf("bridge %s: got %v (%q); want exit status 2", strings.Join(args, " "), err, out)
		}
	}
}

func TestVersionLine(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i+1 < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"tagged, clean", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: vcs(
			"-trimpath", "true", "vcs", "git", "vcs.revision", "1a2b3c4d5e6f7a8b9c0d", "vcs.time", "2026-12-06T05:00:00Z", "vcs.modified", "false")},
			true, "bridge v1.2.3 (rev 1a2b3c4, 2026-12-06T05:00:00Z)"},
		{"modified", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: vcs(
			"vcs.revision", "1a2b3c4d5e6f7a8b9c0d", "vcs.time", "2026-12-06T05:00:00Z", "vcs.modified", "true")},
			true, "bridge v1.2.3 (rev 1a2b3c4, 2026-12-06T05:00:00Z, modified)"},
		{"pseudo-version", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261206050000-1a2b3c4d5e6f+dirty"}, Settings: vcs(
			"vcs.revision", "1a2b3c4d5e6f7a8b9c0d", "vcs.time", "2026-12-06T05:00:00Z", "vcs.modified", "true")},
			true, "bridge v0.0.0-20261206050000-1a2b3c4d5e6f+dirty (rev 1a2b3c4, 2026-12-06T05:00:00Z, modified)"},
		{"devel without VCS", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			true, "bridge devel (no VCS information in this build)"},
		{"empty version, revision only", &debug.BuildInfo{Settings: vcs("vcs.revision", "abc")},
			true, "bridge devel (rev abc)"},
		{"no build info", nil, false, "bridge devel (no build information in this binary)"},
	}
	for _, tc := range tests {
		if got := versionLine(tc.bi, tc.ok); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestVersionOfABuiltBinary builds bridge in this checkout, as an operator
// would, and checks what `bridge version` says of the checked-out commit.
func TestVersionOfABuiltBinary(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout (git rev-parse HEAD: %v): nothing to stamp", err)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The go command stamps VCS information only where .git is a directory,
	// not in a linked worktree, whose .git is a file.
	st, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git"))
	stamped := err == nil && st.IsDir()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "bridge")
	build := exec.Command(goCmd, "build", "-buildvcs=auto", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOFLAGS=") // a machine's go env may turn buildvcs off
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("bridge version: %v", err)
	}
	want := regexp.MustCompile(`^bridge \S+ \(rev ` + string(head[:7]) + `, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ(, modified)?\)\n$`)
	if !stamped {
		want = regexp.MustCompile(`^bridge devel \(no VCS information in this build\)\n$`)
	}
	if !want.Match(out) {
		t.Errorf("bridge version = %q, want it to match %s (.git is a directory: %v)", out, want, stamped)
	}
}

func TestDemoListen(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		wantErr []string // words the exit-2 error must name
	}{
		{name: "default", want: "127.0.0.1:8080"},
		{name: "BRIDGE_LISTEN", env: map[string]string{"BRIDGE_LISTEN": "127.0.0.1:9999"}, want: "127.0.0.1:9999"},
		{name: "--listen", args: []string{"--listen", "127.0.0.1:7777"}, want: "127.0.0.1:7777"},
		{name: "--listen over BRIDGE_LISTEN", args: []string{"--listen=127.0.0.1:7777"}, env: map[string]string{"BRIDGE_LISTEN": "127.0.0.1:9999"}, want: "127.0.0.1:7777"},
		{name: "empty BRIDGE_LISTEN is unset", env: map[string]string{"BRIDGE_LISTEN": ""}, want: "127.0.0.1:8080"},
		{name: "test variables pass silently", env: map[string]string{"BRIDGE_TEST_REDIS_URL": "redis://127.0.0.1:6379/0", "BRIDGE_TEST_REDIS_CLUSTER": "a,b"}, want: "127.0.0.1:8080"},
		{name: "other variables pass", env: map[string]string{"HOME": "/root", "XBRIDGE_REDIS_URL": "x"}, want: "127.0.0.1:8080"},
		{name: "an empty variable counts as unset", env: map[string]string{"BRIDGE_REDIS_URL": ""}, want: "127.0.0.1:8080"},
		{name: "a config variable is refused", env: map[string]string{"BRIDGE_REDIS_URL": "redis://redis:6379/0", "BRIDGE_LISTEN": ":1"}, wantErr: []string{"BRIDGE_REDIS_URL", "BRIDGE_LISTEN", "serve"}},
		{name: "BRIDGE_CONFIG is refused", env: map[string]string{"BRIDGE_CONFIG": "/etc/bridge/bridge.yaml"}, wantErr: []string{"BRIDGE_CONFIG"}},
		{name: "every refused variable is named", env: map[string]string{"BRIDGE_SOURCES_0_PRESET": "k2-smartobjects-v4", "BRIDGE_PUBLIC_URL": "https://b.example", "BRIDGE_NO_SUCH_KEY": "1"},
			wantErr: []string{"BRIDGE_NO_SUCH_KEY, BRIDGE_PUBLIC_URL, BRIDGE_SOURCES_0_PRESET"}},
		{name: "unknown flag", args: []string{"--config", "bridge.yaml"}, wantErr: []string{"-config"}},
		{name: "stray argument", args: []string{"serve"}, wantErr: []string{`"serve"`}},
	}
	for _, tc := range tests {
		var environ []string
		for k, v := range tc.env {
			environ = append(environ, k+"="+v)
		}
		got, err := demoListenFrom(tc.args, func(k string) string { return tc.env[k] }, environ)
		if tc.wantErr != nil {
			if exitCode(err) != 2 {
				t.Errorf("%s: got %q, %v; want exit status 2", tc.name, got, err)
				continue
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q does not name %s", tc.name, err, w)
				}
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestDemoCommandEnvironment runs `bridge demo` with the process's environment:
// it refuses variables it would ignore, and listens where BRIDGE_LISTEN says.
func TestDemoCommandEnvironment(t *testing.T) {
	t.Setenv("BRIDGE_TEST_SOMETHING", "1")
	t.Setenv("BRIDGE_SOURCES_0_PRESET", "k2-smartobjects-v4")
	_, err := runOut(t, os.Getenv, "demo")
	if exitCode(err) != 2 || !strings.Contains(errText(err), "BRIDGE_SOURCES_0_PRESET") || strings.Contains(errText(err), "BRIDGE_TEST_SOMETHING") {
		t.Errorf("demo with BRIDGE_SOURCES_0_PRESET set: got %v; want exit status 2 naming it, and not BRIDGE_TEST_SOMETHING", err)
	}
	os.Unsetenv("BRIDGE_SOURCES_0_PRESET") // t.Setenv restores it at the end

	// An address that is taken: the error shows which one the demo tried.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	t.Setenv("BRIDGE_LISTEN", busy.Addr().String())
	_, err = runOut(t, os.Getenv, "demo")
	if err == nil || !strings.Contains(err.Error(), "listen on "+busy.Addr().String()) {
		t.Errorf("demo with BRIDGE_LISTEN=%s (taken): got %v; want it to listen there and fail", busy.Addr(), err)
	}
}

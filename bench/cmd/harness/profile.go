package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// measureProfile takes a CPU profile of the memory-store bridge under the
// small-request load and under the pages load, and adds pprof's top functions.
func measureProfile(ctx context.Context, c *config, e *env, rep *report, logf func(string, ...any)) error {
	t, ok := e.targets["bridge (memory)"]
	if !ok || len(e.bridges) == 0 || e.bridges[0].pprof == "" || e.bridgeBin == "" {
		return fmt.Errorf("no bridge with a pprof listener")
	}
	secs := max(5, int(c.dur.Seconds()))
	loads := []struct {
		name string
		load wrkLoad
	}{
		{"small", wrkLoad{Paths: []string{t.path("Items(1)")}, Auth: t.auth}},
		{"pages", wrkLoad{Paths: pagePaths(t, 1_000_000, 1000, 100), Auth: t.auth}},
	}
	if extra := e.bridges[0].extra; len(extra) > 0 {
		auth := make([]string, len(extra))
		for i, t := range extra {
			auth[i] = "Bearer " + t
		}
		loads = append(loads, struct {
			name string
			load wrkLoad
		}{"tokens-round-robin", wrkLoad{Paths: []string{t.path("Items(1)")}, Auth: auth}})
	}
	for _, l := range loads {
		script, err := l.load.luaScript(c.work, "profile-"+l.name)
		if err != nil {
			return err
		}
		argv := wrkArgs(script, t.hostURL(), c.threads, c.conns, time.Duration(secs+2)*time.Second)
		rep.command("profile "+l.name, t.name, argv)
		out := filepath.Join(c.work, "bridge-"+l.name+".pprof")
		errc := make(chan error, 1)
		go func() {
			_, err := runWrk(ctx, argv)
			errc <- err
		}()
		time.Sleep(time.Second)
		perr := fetchProfile(ctx, "http://"+e.bridges[0].pprof+fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), out)
		if err := <-errc; err != nil {
			return err
		}
		if perr != nil {
			return perr
		}
		top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=30", e.bridgeBin, out).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof: %w: %s", err, top)
		}
		logf("  profile %s written to %s", l.name, out)
		rep.code(fmt.Sprintf("Profile: bridge (memory) under the %s load", l.name),
			fmt.Sprintf("`go tool pprof -top -nodecount=30 %s %s`, a %d s CPU profile taken from the bridge's pprof listener while wrk ran.", e.bridgeBin, out, secs),
			strings.TrimSpace(string(top)))
	}
	return nil
}

// fetchProfile saves the CPU profile at url into file.
func fetchProfile(ctx context.Context, url, file string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: status %d", resp.StatusCode)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// upstreamHeaderTimeout is header_timeout of the source "slow".
const upstreamHeaderTimeout = 300 * time.Millisecond

// upstreamRig is one bridge in front of a faulty upstream and a dead one.
type upstreamRig struct {
	world *demo.World
	proxy *idpProxy
	up    *faultUpstream
	br    *bridge
	tok   tokens
}

func startUpstreamRig(t *testing.T) *upstreamRig {
	t.Helper()
	rig := &upstreamRig{world: startWorld(t, demo.Options{})}
	rig.proxy = startIdPProxy(t, rig.world)
	rig.up = startFaultUpstream(t)
	// The memory store: these tests are about the relay, and without Redis
	// the bridge's own descriptors are only its listener and its clients.
	rig.br = startBridge(t, bridgeConfig{World: rig.world, TokenURL: rig.proxy.URL(), Sources: []source{
		// A generous timeout where the upstream is expected to answer, so a
		// loaded machine (or -race) does not turn a 401 into a 504.
		{Name: "faulty", URL: rig.up.Base(), Auth: "user", HeaderTimeout: "10s"},
		{Name: "slow", URL: rig.up.Base(), Auth: "user", HeaderTimeout: upstreamHeaderTimeout.String()},
		{Name: "down", URL: deadURL(t), Auth: "user", HeaderTimeout: "10s"},
	}})
	rig.tok = mustSignIn(t, rig.br.URL, "alice")
	return rig
}

// fault is one injected upstream failure and the check of its answer.
type fault struct {
	name string
	path func(n int) string
	// check returns what is wrong with the answer, or "".
	check func(status int, body []byte, aborted bool, took time.Duration) string
}

func wantError(status int, code string) func(int, []byte, bool, time.Duration) string {
	return func(got int, body []byte, aborted bool, _ time.Duration) string {
		if got != status || odataErrorCode(body) != code || aborted {
			return fmt.Sprintf("status %d, body %.200s, aborted %v; want %d with OData error %s", got, body, aborted, status, code)
		}
		return ""
	}
}

var upstreamFaults = []fault{
	{"down", func(int) string { return "/odata/down/Items" }, wantError(http.StatusBadGateway, "UpstreamUnreachable")},
	{"slow headers", func(int) string { return "/odata/slow/Slow" }, func(status int, body []byte, aborted bool, took time.Duration) string {
		if p := wantError(http.StatusGatewayTimeout, "UpstreamTimeout")(status, body, aborted, took); p != "" {
			return p
		}
		if took < upstreamHeaderTimeout {
			return fmt.Sprintf("504 after %v, before header_timeout %v", took, upstreamHeaderTimeout)
		}
		return ""
	}},
	{"drop mid-body", func(int) string { return "/odata/faulty/Drop" }, func(status int, body []byte, aborted bool, _ time.Duration) string {
		if status != http.StatusOK || !aborted || json.Valid(body) {
			return fmt.Sprintf("status %d, aborted %v, valid JSON %v; want 200 whose body ends in an error and is not valid JSON", status, aborted, json.Valid(body))
		}
		return ""
	}},
	{"401 then a refreshed token", func(n int) string { return fmt.Sprintf("/odata/faulty/Unauthorized?n=%d", n) }, func(status int, body []byte, aborted bool, _ time.Duration) string {
		if status != http.StatusOK || aborted || !json.Valid(body) {
			return fmt.Sprintf("status %d, body %.200s; want 200 after one refresh and retry", status, body)
		}
		return ""
	}},
	{"401 always", func(n int) string { return fmt.Sprintf("/odata/faulty/AlwaysUnauthorized?n=%d", n) }, wantError(http.StatusUnauthorized, "UpstreamUnauthorized")},
}

var faultSeq atomic.Int64

// inject sends one fault and returns what is wrong with the answer.
func (rig *upstreamRig) inject(f fault) string {
	n := int(faultSeq.Add(1))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	status, body, aborted, err := readAborted(ctx, rig.br.URL+f.path(n), bearer(rig.tok.Access))
	if err != nil {
		return fmt.Sprintf("%s: %v", f.name, err)
	}
	if p := f.check(status, body, aborted, time.Since(start)); p != "" {
		return f.name + ": " + p
	}
	return ""
}

// TestUpstreamFaults checks each upstream failure once: down is 502, slow
// headers 504 after header_timeout, a drop mid-body an aborted response that
// is not valid JSON, and a 401 one provider refresh and one retry.
func TestUpstreamFaults(t *testing.T) {
	rig := startUpstreamRig(t)
	for _, f := range upstreamFaults {
		t.Run(f.name, func(t *testing.T) {
			refreshes := rig.proxy.refreshes.Load()
			n := faultSeq.Load() + 1
			if p := rig.inject(f); p != "" {
				t.Error(p)
			}
			refreshed := rig.proxy.refreshes.Load() - refreshes
			switch f.name {
			case "401 then a refreshed token":
				if hits := rig.up.count(fmt.Sprintf("/svc/Unauthorized?%d", n)); hits != 2 || refreshed != 1 {
					t.Errorf("upstream calls %d, provider refreshes %d; want 2 and 1 (refresh once, retry once)", hits, refreshed)
				}
			case "401 always":
				if hits := rig.up.count(fmt.Sprintf("/svc/AlwaysUnauthorized?%d", n)); hits != 2 || refreshed != 1 {
					t.Errorf("upstream calls %d, provider refreshes %d; want 2 and 1 (one retry only)", hits, refreshed)
				}
			default:
				if refreshed != 0 {
					t.Errorf("provider refreshes %d; want 0", refreshed)
				}
			}
		})
	}
}

// TestUpstreamFaultsLeakNothing injects 1,000 upstream faults, 16 at a
// time, and compares the bridge's goroutines (go_goroutines on /metrics)
// and open file descriptors (/proc/PID/fd) before and after, with idle
// connections closed on both sides each time.
func TestUpstreamFaultsLeakNothing(t *testing.T) {
	rig := startUpstreamRig(t)
	run := func(total int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		problems := map[string]int{}
		next := atomic.Int64{}
		for range 16 {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= total {
						return
					}
					if p := rig.inject(upstreamFaults[i%len(upstreamFaults)]); p != "" {
						mu.Lock()
						problems[p]++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		for p, n := range problems {
			t.Errorf("%d×: %s", n, p)
		}
	}
	quiesce := func() {
		client.CloseIdleConnections()
		rig.up.srv.CloseClientConnections()
	}
	measure := func() (goroutines, fds int) {
		quiesce()
		time.Sleep(200 * time.Millisecond)
		return rig.br.goroutines(t), rig.br.fdCount(t)
	}

	run(50) // warm every pool and lazy start-up
	g0, f0 := measure()
	start := time.Now()
	run(1000)
	t.Logf("1,000 upstream faults in %v", time.Since(start).Round(100*time.Millisecond))

	// Connections and goroutines wind down asynchronously: allow a few
	// seconds and a small constant, far below one per fault.
	const slack = 8
	var g1, f1 int
	for deadline := time.Now().Add(10 * time.Second); ; {
		g1, f1 = measure()
		if g1 <= g0+slack && f1 <= f0+slack || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("goroutines %d → %d, file descriptors %d → %d", g0, g1, f0, f1)
	if g1 > g0+slack {
		t.Errorf("goroutines grew from %d to %d across 1,000 upstream faults", g0, g1)
	}
	if f1 > f0+slack {
		t.Errorf("file descriptors grew from %d to %d across 1,000 upstream faults", f0, f1)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// The refresh scenario ("harness refresh") replays what Power Query's OData.Feed sends
// during one Power BI refresh of one table, against a synthetic upstream that takes a
// fixed time per response, and compares direct access with the bridge, its accelerator
// off (repeat_ttl 0, read_ahead 0) and on.
//
// Where the request pattern comes from:
//   - Paging: OData.Feed follows the service's next links (@odata.nextLink) one page
//     after another, as Microsoft's Power Query SDK tutorial "TripPin Part 5 - Paging"
//     describes (learn.microsoft.com/power-query/samples/trippin/5-paging/readme).
//   - Repeats: Microsoft's Power BI guidance "Referencing Power Query queries"
//     (learn.microsoft.com/power-bi/guidance/power-query-referenced-queries) says that
//     Power Query "may retrieve the data from the data source more than once" in one
//     execution. Which requests repeat is observed behaviour of Power BI Desktop, not
//     documented: navigation and schema discovery read $metadata and the service document
//     twice, and the first page of the table is read twice (to infer the schema, then to
//     load) before the serial paging.

// refreshConfig is the refresh scenario's command line.
type refreshConfig struct {
	out        string
	work       string
	bridge     string
	pages      int
	rows       int
	upstream   []time.Duration
	client     time.Duration
	concurrent int
	budget     string
	readAhead  int
}

// runRefresh is "harness refresh": it needs neither wrk nor nginx.
func runRefresh(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("refresh", flag.ContinueOnError)
	var c refreshConfig
	var ups string
	fs.StringVar(&c.out, "out", "BENCHMARKS-refresh.md", "Markdown report to write")
	fs.StringVar(&c.work, "work", "", "directory for configs, logs and the bridge binary; empty: a new temporary one")
	fs.StringVar(&c.bridge, "bridge", "", "bridge binary; empty: go build ./cmd/bridge")
	fs.IntVar(&c.pages, "pages", 50, "pages of the table")
	fs.IntVar(&c.rows, "rows", 1000, "rows of a page (about 275 bytes each)")
	fs.StringVar(&ups, "upstream", "100ms,300ms", "the upstream's time per response, one run each")
	fs.DurationVar(&c.client, "client", 100*time.Millisecond, "the client's time per page")
	fs.IntVar(&c.concurrent, "concurrent", 50, "refreshes at once in the memory run, each its own session; 0: no memory run")
	fs.StringVar(&c.budget, "budget", "256MiB", "relay.memory_budget of the accelerated bridge")
	fs.IntVar(&c.readAhead, "read-ahead", 1, "sources[].read_ahead of the accelerated bridge")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(ups, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			return fmt.Errorf("-upstream: %q is not a duration", s)
		}
		c.upstream = append(c.upstream, d)
	}
	logf := func(format string, a ...any) { fmt.Fprintf(log, time.Now().Format("15:04:05 ")+format+"\n", a...) }
	if c.work == "" {
		d, err := os.MkdirTemp("", "bridge-refresh-")
		if err != nil {
			return err
		}
		c.work = d
	}
	bin := c.bridge
	if bin == "" {
		bin = filepath.Join(c.work, "bridge")
		logf("building ./cmd/bridge into %s", bin)
		if err := buildBridge(ctx, bin); err != nil {
			return err
		}
	}
	world, err := demo.Start(ctx, demo.Options{Logger: slog.New(slog.DiscardHandler), AccessTTL: time.Hour, RefreshTTL: 2 * time.Hour})
	if err != nil {
		return fmt.Errorf("demo identity provider: %w", err)
	}
	defer world.Close()

	var rep strings.Builder
	fmt.Fprintf(&rep, "Command: `go run ./bench/cmd/harness refresh %s`\n\n", strings.Join(args, " "))
	fmt.Fprintf(&rep, "One refresh: `$metadata` and the service document twice each, the first page twice, then %d pages of %d rows by their next links; the client spends %s per page.\n\n",
		c.pages, c.rows, c.client)
	fmt.Fprintf(&rep, "| upstream per response | target | wall time | vs direct | upstream requests (distinct URLs) | bridge peak RSS |\n|---|---|---|---|---|---|\n")
	for i, d := range c.upstream {
		if ctx.Err() != nil {
			break
		}
		logf("refresh with %s per upstream response", d)
		rows, err := refreshRun(ctx, &c, bin, world, d, i == 0 && c.concurrent > 0, logf)
		rep.WriteString(rows)
		if err != nil {
			fmt.Fprintf(&rep, "\n%s: %v\n", d, err)
			logf("%s: %v", d, err)
		}
		if werr := os.WriteFile(c.out, []byte(rep.String()), 0o644); werr != nil {
			return werr
		}
	}
	logf("wrote %s", c.out)
	return ctx.Err()
}

// refreshRun measures one upstream delay: direct, bridge off, bridge on, and with
// memory the concurrent refreshes on both bridges.
func refreshRun(ctx context.Context, c *refreshConfig, bin string, world *demo.World, delay time.Duration, memory bool, logf func(string, ...any)) (string, error) {
	up, err := startSlowUpstream(ctx, c.rows, delay)
	if err != nil {
		return "", err
	}
	defer up.close()
	off, err := startRefreshBridge(ctx, c.work, "refresh-off", bin, up.base, world, "0", 0, c.budget)
	if err != nil {
		return "", err
	}
	defer off.stop()
	on, err := startRefreshBridge(ctx, c.work, "refresh-on", bin, up.base, world, "30s", c.readAhead, c.budget)
	if err != nil {
		return "", err
	}
	defer on.stop()

	var b strings.Builder
	var direct time.Duration
	for _, t := range []struct {
		name string
		br   *refreshBridge
	}{{"direct", nil}, {"bridge, accelerator off", off}, {"bridge, accelerator on", on}} {
		base, auth, pid := up.base, "", 0
		if t.br != nil {
			base, auth, pid = t.br.public+"/odata/synth/", "Bearer "+t.br.token, t.br.proc.pid()
		}
		up.reset()
		m := startMeter(pid)
		res := replayRefresh(ctx, newRefreshClient(), base, auth, c.pages, c.rows, c.client)
		u := m.stop()
		if res.err != nil {
			return b.String(), fmt.Errorf("%s: %w", t.name, res.err)
		}
		if res.pages != c.pages {
			return b.String(), fmt.Errorf("%s: %d pages, want %d", t.name, res.pages, c.pages)
		}
		if t.br == nil {
			direct = res.wall
		}
		rss := "—"
		if pid != 0 {
			rss = fmt.Sprintf("%.1f MiB", float64(u[0].PeakRSS)/1024)
		}
		n, distinct := up.counts()
		logf("  %s: %s, %d upstream requests (%d distinct)", t.name, res.wall.Round(time.Millisecond), n, distinct)
		fmt.Fprintf(&b, "| %s | %s | %.2f s | %.2f× | %d (%d) | %s |\n", delay, t.name, res.wall.Seconds(), res.wall.Seconds()/direct.Seconds(), n, distinct, rss)
	}
	if !memory {
		return b.String(), nil
	}
	for _, br := range []*refreshBridge{off, on} {
		name := "bridge, accelerator off"
		if br == on {
			name = "bridge, accelerator on"
		}
		logf("  %d concurrent refreshes, %s", c.concurrent, name)
		row, err := concurrentRefreshes(ctx, c, br, up, delay, name)
		if err != nil {
			return b.String(), err
		}
		b.WriteString(row)
	}
	return b.String(), nil
}

// concurrentRefreshes runs c.concurrent refreshes at once through br, each with a
// session of its own, and reports the wall time of the slowest and the peak RSS.
func concurrentRefreshes(ctx context.Context, c *refreshConfig, br *refreshBridge, up *slowUpstream, delay time.Duration, name string) (string, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	tokens := make([]string, c.concurrent)
	var signErr atomic.Value
	parallel(8, c.concurrent, func(i int) {
		t, err := signIn(ctx, client, br.public)
		if err != nil {
			signErr.Store(err)
		}
		tokens[i] = t
	})
	defer parallel(8, len(tokens), func(i int) { revoke(context.WithoutCancel(ctx), client, br.public, tokens[i]) })
	if err, _ := signErr.Load().(error); err != nil {
		return "", err
	}
	up.reset()
	m := startMeter(br.proc.pid())
	start := time.Now()
	errs := make([]error, c.concurrent)
	var wg sync.WaitGroup
	for i := range c.concurrent {
		wg.Go(func() {
			res := replayRefresh(ctx, newRefreshClient(), br.public+"/odata/synth/", "Bearer "+tokens[i], c.pages, c.rows, c.client)
			if res.err == nil && res.pages != c.pages {
				res.err = fmt.Errorf("%d pages, want %d", res.pages, c.pages)
			}
			errs[i] = res.err
		})
	}
	wg.Wait()
	wall := time.Since(start)
	u := m.stop()
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	n, distinct := up.counts()
	budget, _ := parseBudget(c.budget)
	rss := float64(u[0].PeakRSS) / 1024
	return fmt.Sprintf("| %s | %s, %d refreshes at once | %.2f s (slowest) | — | %d (%d) | %.1f MiB (budget + 64 MiB = %.0f MiB; %d failed) |\n",
		delay, name, c.concurrent, wall.Seconds(), n, distinct, rss, float64(budget)/(1<<20)+64, failed), nil
}

// parseBudget reads the sizes the bridge's relay.memory_budget accepts.
func parseBudget(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			var v int64
			_, err := fmt.Sscan(n, &v)
			return v * u.mult, err
		}
	}
	return 0, fmt.Errorf("%q is not a size", s)
}

// refreshResult is one replayed refresh.
type refreshResult struct {
	wall  time.Duration
	pages int // pages of the table read in the serial part
	err   error
}

// newRefreshClient is one Power Query engine: keep-alive, gzip accepted.
func newRefreshClient() *http.Client {
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
}

// replayRefresh sends one refresh's requests to the service root base, with the
// Authorization value auth ("" for none), and spends think per page.
func replayRefresh(ctx context.Context, client *http.Client, base, auth string, pages, rows int, think time.Duration) refreshResult {
	start := time.Now()
	get := func(u string) ([]byte, error) {
		if !strings.HasPrefix(u, "http") {
			u = base + u
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		// What OData.Feed sends for a v4 service.
		req.Header.Set("Accept", "application/json;odata.metadata=minimal;q=1.0,application/json;q=0.9")
		req.Header.Set("OData-MaxVersion", "4.0")
		req.Header.Set("OData-Version", "4.0")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: status %d", strings.TrimPrefix(u, base), resp.StatusCode)
		}
		return body, err
	}
	sleep := func() error {
		select {
		case <-time.After(think):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fail := func(err error) refreshResult { return refreshResult{wall: time.Since(start), err: err} }
	for range 2 {
		for _, p := range []string{"$metadata", ""} {
			if _, err := get(p); err != nil {
				return fail(err)
			}
		}
	}
	first := fmt.Sprintf("Rows?total=%d", pages*rows)
	var body []byte
	for range 2 {
		var err error
		if body, err = get(first); err != nil {
			return fail(err)
		}
		if err := sleep(); err != nil {
			return fail(err)
		}
	}
	n := 1
	for {
		next := nextLinkOf(body)
		if next == "" {
			break
		}
		var err error
		if body, err = get(next); err != nil {
			return fail(err)
		}
		n++
		if err := sleep(); err != nil {
			return fail(err)
		}
	}
	return refreshResult{wall: time.Since(start), pages: n}
}

// nextLinkOf is the @odata.nextLink of a v4 page, or "".
func nextLinkOf(body []byte) string {
	const key = `"@odata.nextLink":`
	i := bytes.LastIndex(body, []byte(key))
	if i < 0 {
		return ""
	}
	var s string
	dec := json.NewDecoder(bytes.NewReader(body[i+len(key):]))
	if dec.Decode(&s) != nil {
		return ""
	}
	return s
}

// slowUpstream is the synthetic upstream with a fixed time before each response,
// counting the requests it answers.
type slowUpstream struct {
	base  string
	srv   *http.Server
	mu    sync.Mutex
	seen  map[string]int
	total int
}

func startSlowUpstream(ctx context.Context, rows int, delay time.Duration) (*slowUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &slowUpstream{base: "http://" + ln.Addr().String() + "/svc/", seen: map[string]int{}}
	inner := NewUpstream(s.base, rows)
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen[r.URL.RequestURI()]++
		s.total++
		s.mu.Unlock()
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		inner.ServeHTTP(w, r)
	})}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *slowUpstream) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen, s.total = map[string]int{}, 0
}

// counts are the requests since the last reset, and how many of them were distinct.
func (s *slowUpstream) counts() (total, distinct int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, len(s.seen)
}

func (s *slowUpstream) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
}

// refreshBridge is a bridge process of the refresh scenario with one session.
type refreshBridge struct {
	public string
	proc   *proc
	token  string
}

func (b *refreshBridge) stop() {
	revoke(context.Background(), &http.Client{Timeout: 10 * time.Second}, b.public, b.token)
	b.proc.stop()
}

// startRefreshBridge starts a bridge in front of upstream with the accelerator set by
// repeatTTL and readAhead, and signs in once.
func startRefreshBridge(ctx context.Context, dir, name, bin, upstream string, w *demo.World, repeatTTL string, readAhead int, budget string) (*refreshBridge, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	public := "http://" + addr
	conf := fmt.Sprintf(`# Generated by bench/cmd/harness refresh.
listen: %q
public_url: %q
log: {level: "info", format: "json"}
idp: {issuer: %q, client_id: %q, client_secret: %q}
sources:
  - name: "synth"
    kind: "odata"
    url: %q
    auth: "user"
    odata_version: "4.0"
    repeat_ttl: %q
    read_ahead: %d
session: {access_ttl: "1h", refresh_ttl: "2h"}
relay: {memory_budget: %q}
rate_limit: {per_key_per_minute: 0}
`, addr, public, w.Issuer, w.ClientID, w.ClientSecret, upstream, repeatTTL, readAhead, budget)
	cf := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	p, err := startProc(ctx, dir, name, public+"/healthz", []string{bin, "serve", "--config", cf}, nil)
	if err != nil {
		return nil, err
	}
	b := &refreshBridge{public: public, proc: p}
	if b.token, err = signIn(ctx, &http.Client{Timeout: 30 * time.Second}, public); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

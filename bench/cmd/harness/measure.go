package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// stat accumulates the rounds of one target in one measurement.
type stat struct {
	reqs, bytes, micros, errs float64
	p50, p99                  []float64
	cpu                       float64
	peak                      int64
}

func (s *stat) add(r wrkResult, u usage) {
	s.reqs += r.Requests
	s.bytes += r.Bytes
	s.micros += r.Micros
	s.errs += r.Errors()
	s.p50 = append(s.p50, r.P50)
	s.p99 = append(s.p99, r.P99)
	s.cpu += u.CPU
	s.peak = max(s.peak, u.PeakRSS)
}

func (s *stat) rps() float64 { return s.reqs / (s.micros / 1e6) }
func (s *stat) bps() float64 { return s.bytes / (s.micros / 1e6) }

// median of xs, or 0.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	ys := slices.Clone(xs)
	slices.Sort(ys)
	return ys[len(ys)/2]
}

// alternate runs each target once per round, reversing the order every other
// round, so a slow spell of the shared machine does not fall on one target.
func alternate(ctx context.Context, rounds int, names []string, f func(round int, name string) error) error {
	for r := range rounds {
		order := slices.Clone(names)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, n := range order {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := f(r, n); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
		}
	}
	return nil
}

// present keeps the names that e has.
func (e *env) present(names ...string) []string {
	var out []string
	for _, n := range names {
		if _, ok := e.targets[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// wrkRounds measures load l(t) on every named target, alternating.
func wrkRounds(ctx context.Context, c *config, e *env, rep *report, label string, names []string, conns int, load func(t *target) wrkLoad, logf func(string, ...any)) (map[string]*stat, error) {
	stats := map[string]*stat{}
	err := alternate(ctx, c.rounds, names, func(round int, n string) error {
		t := e.targets[n]
		script, err := load(t).luaScript(c.work, strings.NewReplacer(" ", "-", "(", "", ")", "", ",", "").Replace(label+"-"+n))
		if err != nil {
			return err
		}
		argv := wrkArgs(script, t.hostURL(), min(c.threads, conns), conns, c.dur)
		if round == 0 {
			rep.command(label, n, argv)
		}
		m := startMeter(t.proc.pid())
		r, err := runWrk(ctx, argv)
		u := m.stop()[0]
		if err != nil {
			return err
		}
		if stats[n] == nil {
			stats[n] = &stat{}
		}
		stats[n].add(r, u)
		logf("  %s round %d %-26s %9.0f req/s %8.1f MB/s errors %.0f", label, round+1, n, r.ReqPerSec(), r.BytesPerSec()/1e6, r.Errors())
		return nil
	})
	return stats, err
}

// ratio formats a/b as "0.00×", or "–" without a baseline.
func ratio(a, b float64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func ms(us float64) string { return fmt.Sprintf("%.2f ms", us/1000) }

// baseOf is the named stat's value, or 0.
func baseOf(stats map[string]*stat, n string, f func(*stat) float64) float64 {
	if s, ok := stats[n]; ok {
		return f(s)
	}
	return 0
}

// measureSmall is the 1 KiB entity through every target.
func measureSmall(ctx context.Context, c *config, e *env, rep *report, logf func(string, ...any)) error {
	names := e.present("direct", "bare proxy", "nginx", "bridge (memory)", "bridge (memory), feed key", "bridge (Redis)")
	stats, err := wrkRounds(ctx, c, e, rep, "small", names, c.conns, func(t *target) wrkLoad {
		return wrkLoad{Paths: []string{t.path("Items(1)")}, Auth: t.auth}
	}, logf)
	bare := baseOf(stats, "bare proxy", (*stat).rps)
	ngx := baseOf(stats, "nginx", (*stat).rps)
	tb := rep.table("Small requests: a 1 KiB entity, cached token",
		fmt.Sprintf("wrk -t%d -c%d, %d rounds of %s per target, alternating. CPU is the serving process's own user+system time per request.", min(c.threads, c.conns), c.conns, c.rounds, c.dur),
		"target", "req/s", "× bare proxy", "× nginx", "p50", "p99", "CPU µs/req", "errors")
	for _, n := range names {
		s, ok := stats[n]
		if !ok {
			continue
		}
		cpu := "–"
		if e.targets[n].proc != nil {
			cpu = fmt.Sprintf("%.0f", s.cpu/s.reqs*1e6)
		}
		tb.row(n, fmt.Sprintf("%.0f", s.rps()), ratio(s.rps(), bare), ratio(s.rps(), ngx), ms(median(s.p50)), ms(median(s.p99)), cpu, fmt.Sprintf("%.0f", s.errs))
	}
	return err
}

// pagePaths are the request URIs of n successive pages of a feed of total rows.
func pagePaths(t *target, total, pageRows, n int) []string {
	var out []string
	for i := range n {
		out = append(out, t.path(fmt.Sprintf("Rows?total=%d&$skiptoken=%d", total, i*pageRows)))
	}
	return out
}

// nextLinkRE finds a page's next link.
var nextLinkRE = regexp.MustCompile(`"@odata\.nextLink":"([^"]*)"`)

// measurePages is 1,000-row pages through every target, and where each one's
// next link points.
func measurePages(ctx context.Context, c *config, e *env, rep *report, logf func(string, ...any)) error {
	names := e.present("direct", "bare proxy", "nginx", "bridge (memory)", "bridge (Redis)")
	const total = 1_000_000
	stats, err := wrkRounds(ctx, c, e, rep, "pages", names, c.conns, func(t *target) wrkLoad {
		return wrkLoad{Paths: pagePaths(t, total, 1000, 100), Auth: t.auth}
	}, logf)
	bare := baseOf(stats, "bare proxy", (*stat).bps)
	ngx := baseOf(stats, "nginx", (*stat).bps)
	tb := rep.table("Pages: 1,000-row OData v4 pages with absolute next links",
		fmt.Sprintf("wrk -t%d -c%d over 100 successive pages, %d rounds of %s per target, alternating. Bytes include headers.", min(c.threads, c.conns), c.conns, c.rounds, c.dur),
		"target", "MB/s", "× bare proxy", "× nginx", "pages/s", "p50", "p99", "CPU ms/MB", "errors", "next link points at")
	client := &http.Client{Timeout: 30 * time.Second}
	for _, n := range names {
		s, ok := stats[n]
		if !ok {
			continue
		}
		t := e.targets[n]
		link := pageLink(ctx, client, t)
		cpu := "–"
		if t.proc != nil {
			cpu = fmt.Sprintf("%.2f", s.cpu*1e3/(s.bytes/1e6))
		}
		tb.row(n, fmt.Sprintf("%.0f", s.bps()/1e6), ratio(s.bps(), bare), ratio(s.bps(), ngx), fmt.Sprintf("%.0f", s.rps()), ms(median(s.p50)), ms(median(s.p99)), cpu, fmt.Sprintf("%.0f", s.errs), link)
	}
	return err
}

// pageLink fetches one page through t and says whether its next link names t
// (rewritten) or the upstream (not rewritten).
func pageLink(ctx context.Context, client *http.Client, t *target) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.base+"Rows?total=3000", nil)
	if len(t.auth) > 0 {
		req.Header.Set("Authorization", t.auth[0])
	}
	resp, err := client.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := nextLinkRE.FindSubmatch(b)
	if m == nil {
		return fmt.Sprintf("no next link (status %d)", resp.StatusCode)
	}
	link := string(m[1])
	if t.proc == nil {
		return "the upstream (direct)"
	}
	if strings.HasPrefix(link, t.base) {
		return "itself (rewritten)"
	}
	return "the upstream (not rewritten)"
}

// fetch reads one response of rel through t and returns its size and duration.
func fetch(ctx context.Context, client *http.Client, t *target, rel string) (int64, time.Duration, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.base+rel, nil)
	if len(t.auth) > 0 {
		req.Header.Set("Authorization", t.auth[0])
	}
	began := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	d := time.Since(began)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return n, d, err
}

// measureLarge streams one feed of each size through every target: throughput,
// the serving process's CPU-seconds and its RSS.
func measureLarge(ctx context.Context, c *config, e *env, rep *report, logf func(string, ...any)) error {
	names := e.present("direct", "bare proxy", "nginx", "bridge (memory)", "bridge (Redis)")
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	sizes := []int64{10 << 20, 100 << 20, c.big}
	tb := rep.table("Large feeds: one response of each size, streamed by one client",
		fmt.Sprintf("%d transfers of each size per target, alternating; MB/s is their total bytes over their total time and CPU-s their sum. Sizes in increasing order, so VmHWM (the process's lifetime peak) shows whether memory grows with feed size. Peak RSS is VmRSS sampled every 10 ms during the transfers.", c.rounds),
		"feed", "target", "MB/s", "× bare proxy", "CPU-s", "CPU ms/MB", "peak RSS", "VmHWM")
	for i, size := range sizes {
		rel := fmt.Sprintf("Big?bytes=%d", size)
		type res struct {
			n   int64
			d   time.Duration
			u   usage
			err error
		}
		got := map[string]res{}
		err := alternate(ctx, c.rounds, names, func(round int, n string) error {
			t := e.targets[n]
			if i == 0 && round == 0 {
				rep.command("large", n, []string{"GET", t.base + "Big?bytes=N"})
			}
			m := startMeter(t.proc.pid())
			nb, d, err := fetch(ctx, client, t, rel)
			u := m.stop()[0]
			g := got[n]
			g.n, g.d, g.u.CPU = g.n+nb, g.d+d, g.u.CPU+u.CPU
			g.u.PeakRSS, g.u.HWM = max(g.u.PeakRSS, u.PeakRSS), max(g.u.HWM, u.HWM)
			if err != nil {
				g.err = err
			}
			got[n] = g
			logf("  large %s round %d %-20s %8.1f MB/s", mib(size), round+1, n, float64(nb)/d.Seconds()/1e6)
			return nil
		})
		if err != nil {
			return err
		}
		bare := got["bare proxy"]
		for _, n := range names {
			g := got[n]
			if g.err != nil {
				tb.row(mib(size), n, "error: "+g.err.Error(), "", "", "", "", "")
				continue
			}
			bps := float64(g.n) / g.d.Seconds()
			cpu, per, rss, hwm := "–", "–", "–", "–"
			if e.targets[n].proc != nil {
				cpu = fmt.Sprintf("%.2f", g.u.CPU)
				per = fmt.Sprintf("%.2f", g.u.CPU*1e3/(float64(g.n)/1e6))
				rss, hwm = kib(g.u.PeakRSS), kib(g.u.HWM)
			}
			tb.row(mib(size), n, fmt.Sprintf("%.0f", bps/1e6), ratio(bps, float64(bare.n)/bare.d.Seconds()), cpu, per, rss, hwm)
		}
	}
	return nil
}

func mib(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

func kib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/1024) }

// measureClients pages through feeds with 1 to 200 concurrent clients.
func measureClients(ctx context.Context, c *config, e *env, rep *report, logf func(string, ...any)) error {
	names := e.present("bare proxy", "nginx", "bridge (memory)")
	rowBytes := int64(len(row(1)) + 1)
	total := int(c.feed / rowBytes)
	pages := (total + 999) / 1000
	tb := rep.table(fmt.Sprintf("Concurrency: clients paging through %s feeds", mib(c.feed)),
		fmt.Sprintf("Each wrk connection is one client; the %d page URLs of a %d-row feed (≈ %s) are requested in turn, so every request is one 1,000-row page. %d rounds of %s per target and client count, alternating. CPU-s/GB is the serving process's.", pages, total, mib(c.feed), c.rounds, c.dur),
		"clients", "target", "MB/s", "× bare proxy", "p99", "CPU-s/GB", "peak RSS", "errors")
	for _, n := range c.clients {
		stats, err := wrkRounds(ctx, c, e, rep, fmt.Sprintf("clients-%d", n), names, n, func(t *target) wrkLoad {
			return wrkLoad{Paths: pagePaths(t, total, 1000, pages), Auth: t.auth}
		}, logf)
		bare := baseOf(stats, "bare proxy", (*stat).bps)
		for _, name := range names {
			s, ok := stats[name]
			if !ok {
				continue
			}
			tb.row(fmt.Sprint(n), name, fmt.Sprintf("%.0f", s.bps()/1e6), ratio(s.bps(), bare), ms(median(s.p99)), fmt.Sprintf("%.2f", s.cpu/(s.bytes/1e9)), kib(s.peak), fmt.Sprintf("%.0f", s.errs))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// measureTokens compares all hits (one session) with distinct sessions hitting a
// bridge round-robin, and, for Redis, with a replica whose in-process cache
// lives 1 ms, so that nearly every request reads and decrypts its session.
func measureTokens(ctx context.Context, c *config, e *env, rep *report, logf func(string, ...any)) error {
	tb := rep.table("Token cache: distinct sessions round-robin, and cache misses, against all hits",
		fmt.Sprintf("The 1 KiB entity, wrk -t%d -c%d, %d rounds of %s per case, alternating. Each session is a real sign-in through the bridge's OAuth endpoint, up to %d sessions or %s of signing in per bridge. The in-process cache holds 10,000 entries and each session needs two (token → session, session → provider token), so round-robin over more than 5,000 sessions misses it on nearly every request. The 1 ms row is a second bridge process on the same Redis and keys with `hot_cache_ttl: 1ms`, sent the all-hits token.", min(c.threads, c.conns), c.conns, c.rounds, c.dur, c.sessions, c.signinBudget),
		"store", "case", "req/s", "× all hits", "p50", "p99", "CPU µs/req", "errors")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for bi, b := range e.bridges {
		began := time.Now()
		sctx, cancel := context.WithTimeout(ctx, c.signinBudget)
		toks := make([]string, c.sessions)
		parallel(4, c.sessions, func(i int) {
			if sctx.Err() == nil {
				toks[i], _ = signIn(sctx, client, b.public)
			}
		})
		cancel()
		toks = slices.DeleteFunc(toks, func(s string) bool { return s == "" })
		b.extra = toks
		logf("  %d sign-ins on %s took %s", len(toks), b.name, time.Since(began).Round(time.Millisecond))
		rep.note("Token cache: %d sign-ins of one demo user on %s took %s (the run allows %d or %s).", len(toks), b.name, time.Since(began).Round(time.Millisecond), c.sessions, c.signinBudget)
		if len(toks) == 0 {
			return fmt.Errorf("%s: no sign-in succeeded", b.name)
		}
		hits := &target{name: b.name + " all hits", base: b.public + "/odata/synth/", auth: []string{"Bearer " + b.token}, proc: b.proc}
		auth := make([]string, len(toks))
		for i, t := range toks {
			auth[i] = "Bearer " + t
		}
		rr := &target{name: b.name + " round-robin", base: hits.base, auth: auth, proc: b.proc}
		cases := []*target{hits, rr}
		labels := []string{"all hits (1 session)", fmt.Sprintf("round-robin (%d sessions)", len(toks))}
		if b.redisURL != "" {
			r, err := startBridge(ctx, c.work, fmt.Sprintf("bridge-%d-replica", bi), b.bin, b.upstream, b.redisURL, e.world, "", b.key, "1ms")
			if err != nil {
				return err
			}
			e.replicas = append(e.replicas, r)
			cases = append(cases, &target{name: b.name + " hot cache 1ms", base: r.public + "/odata/synth/", auth: hits.auth, proc: r.proc})
			labels = append(labels, "1 session, replica with a 1 ms hot cache")
		}
		var names []string
		for _, t := range cases {
			e.targets[t.name] = t
			names = append(names, t.name)
		}
		stats, err := wrkRounds(ctx, c, e, rep, "tokens", names, c.conns, func(t *target) wrkLoad {
			return wrkLoad{Paths: []string{t.path("Items(1)")}, Auth: t.auth}
		}, logf)
		h := baseOf(stats, hits.name, (*stat).rps)
		for i, n := range names {
			s, ok := stats[n]
			if !ok {
				continue
			}
			tb.row(b.name, labels[i], fmt.Sprintf("%.0f", s.rps()), ratio(s.rps(), h), ms(median(s.p50)), ms(median(s.p99)), fmt.Sprintf("%.0f", s.cpu/s.reqs*1e6), fmt.Sprintf("%.0f", s.errs))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

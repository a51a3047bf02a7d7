// Command harness measures the bridge side by side with direct access, a bare
// httputil.ReverseProxy and nginx proxy_pass, on loopback, with wrk as the load
// tool, and writes the figures as Markdown (see bench/README.md).
//
//	go run ./bench/cmd/harness -out BENCHMARKS-run.md
//
// It also serves as its own child processes: "harness upstream" is the
// synthetic OData v4 upstream and "harness proxy" the bare reverse proxy.
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/odata-bridge/bridge/demo"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "upstream":
		err = runUpstream(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "proxy":
		err = runProxy(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "refresh":
		err = runRefresh(ctx, os.Args[2:], os.Stderr)
	default:
		err = runHarness(ctx, os.Args[1:], os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

// serveUntil serves h on addr until ctx ends.
func serveUntil(ctx context.Context, addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-errc
		return nil
	}
}

// runUpstream is "harness upstream --listen ADDR --page-rows N".
func runUpstream(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	rows := fs.Int("page-rows", 1000, "rows in a page")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return serveUntil(ctx, *listen, NewUpstream("http://"+*listen+"/svc/", *rows))
}

// runProxy is "harness proxy --listen ADDR --target URL": a bare
// httputil.ReverseProxy with the same transport settings as the bridge's relay.
func runProxy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	target := fs.String("target", "", "upstream URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil {
		return err
	}
	return serveUntil(ctx, *listen, newBareProxy(u))
}

// newBareProxy is the baseline: httputil.ReverseProxy, nothing else. Its
// transport matches odata's defaultTransport (256 idle, 64 per host, no
// compression), so the ratio measures the bridge, not a pool size.
func newBareProxy(target *url.URL) *httputil.ReverseProxy {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.DisableCompression = true
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
		Transport: t,
	}
}

// config is the harness's command line.
type config struct {
	out          string
	work         string
	bridge       string
	redisURL     string
	dur          time.Duration
	rounds       int
	threads      int
	conns        int
	sessions     int
	signinBudget time.Duration
	big          int64
	feed         int64
	clients      []int
	only         map[string]bool
}

// sections are the measurements, in order; -only picks some.
var sections = []string{"small", "pages", "large", "clients", "tokens", "profile"}

// runHarness is the default command: start everything, measure, write the report.
func runHarness(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("harness", flag.ContinueOnError)
	var c config
	var clients, only string
	fs.StringVar(&c.out, "out", "BENCHMARKS-run.md", "Markdown report to write")
	fs.StringVar(&c.work, "work", "", "directory for configs, logs and the bridge binary; empty: a new temporary one")
	fs.StringVar(&c.bridge, "bridge", "", "bridge binary; empty: go build ./cmd/bridge")
	fs.StringVar(&c.redisURL, "redis", "", "Redis URL for the Redis-store bridge; empty: $BRIDGE_TEST_REDIS_URL or redis://127.0.0.1:6379/0; \"off\": skip")
	fs.DurationVar(&c.dur, "d", 3*time.Second, "duration of one wrk run")
	fs.IntVar(&c.rounds, "rounds", 3, "alternating rounds of each wrk measurement")
	fs.IntVar(&c.threads, "t", 1, "wrk threads")
	fs.IntVar(&c.conns, "c", 32, "wrk connections for the small, pages and token runs")
	fs.IntVar(&c.sessions, "sessions", 10000, "distinct sessions for the token-cache run")
	fs.DurationVar(&c.signinBudget, "signin-budget", 60*time.Second, "time allowed for the token-cache run's sign-ins on each bridge")
	fs.Int64Var(&c.big, "big", 1<<30, "size of the large feed, bytes")
	fs.Int64Var(&c.feed, "feed", 100<<20, "size of each paged feed in the clients run, bytes")
	fs.StringVar(&clients, "clients", "1,10,100,200", "concurrent clients of the clients run")
	fs.StringVar(&only, "only", strings.Join(sections, ","), "measurements to run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range strings.Split(clients, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
			return fmt.Errorf("-clients: %q is not a positive count", s)
		}
		c.clients = append(c.clients, n)
	}
	c.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		c.only[strings.TrimSpace(s)] = true
	}
	if err := checkTools(); err != nil {
		return err
	}
	if c.work == "" {
		d, err := os.MkdirTemp("", "bridge-bench-")
		if err != nil {
			return err
		}
		c.work = d
	}
	logf := func(format string, a ...any) { fmt.Fprintf(log, time.Now().Format("15:04:05 ")+format+"\n", a...) }
	env, err := start(ctx, &c, logf)
	defer env.close(logf)
	if err != nil {
		return err
	}
	rep := newReport(&c, env, strings.Join(append([]string{"go run ./bench/cmd/harness"}, args...), " "))
	for _, s := range sections {
		if !c.only[s] || ctx.Err() != nil {
			continue
		}
		logf("measuring %s", s)
		var err error
		switch s {
		case "small":
			err = measureSmall(ctx, &c, env, rep, logf)
		case "pages":
			err = measurePages(ctx, &c, env, rep, logf)
		case "large":
			err = measureLarge(ctx, &c, env, rep, logf)
		case "clients":
			err = measureClients(ctx, &c, env, rep, logf)
		case "tokens":
			err = measureTokens(ctx, &c, env, rep, logf)
		case "profile":
			err = measureProfile(ctx, &c, env, rep, logf)
		}
		if err != nil {
			rep.note("%s: %v", s, err)
			logf("%s: %v", s, err)
		}
		if werr := os.WriteFile(c.out, []byte(rep.String()), 0o644); werr != nil {
			return werr
		}
	}
	logf("wrote %s", c.out)
	return ctx.Err()
}

// errMissingTool means a program the harness drives is not installed.
var errMissingTool = errors.New("missing tools")

// checkTools says exactly what to install when wrk, nginx or go is missing.
func checkTools() error {
	var missing []string
	for _, t := range []struct{ bin, pkg string }{{"wrk", "wrk"}, {"nginx", "nginx-light"}, {"go", "golang (Go 1.26)"}} {
		if _, err := exec.LookPath(t.bin); err != nil {
			if _, err := os.Stat("/usr/sbin/" + t.bin); err != nil {
				missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t.bin, t.pkg))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s; install with: apt-get update && apt-get install -y nginx-light wrk", errMissingTool, strings.Join(missing, ", "))
	}
	return nil
}

// target is one way of reaching the upstream.
type target struct {
	name string   // row label
	base string   // absolute URL of the service root through this target, ending in "/"
	auth []string // Authorization values, round-robin; none: no header
	proc *proc    // the serving process whose CPU and memory are measured; nil: direct
}

// path is the request URI of rel through t.
func (t *target) path(rel string) string {
	u, _ := url.Parse(t.base)
	return u.Path + rel
}

// hostURL is scheme and host of t.
func (t *target) hostURL() string {
	u, _ := url.Parse(t.base)
	return u.Scheme + "://" + u.Host
}

// env is everything the harness started.
type env struct {
	world     *demo.World
	upstream  *proc
	bare      *proc
	nginx     *proc
	bridges   []*bridgeProc
	replicas  []*bridgeProc // started by the token-cache run
	targets   map[string]*target
	order     []string // target names in report order
	notes     []string
	bridgeBin string // the bridge binary, for pprof's symbols
}

// bridgeProc is one running bridge with a signed-in session.
type bridgeProc struct {
	name   string
	public string
	proc   *proc
	token  string   // a bridge access token
	extra  []string // the token-cache run's sessions, revoked on close
	pprof  string   // address of the pprof listener; empty: none

	key                     []byte // encryption key, for a replica
	redisURL, bin, upstream string
}

// start brings up the upstream, the baselines and the bridges.
func start(ctx context.Context, c *config, logf func(string, ...any)) (*env, error) {
	e := &env{targets: map[string]*target{}}
	self, err := os.Executable()
	if err != nil {
		return e, err
	}
	bin := c.bridge
	if bin == "" {
		bin = filepath.Join(c.work, "bridge")
		logf("building ./cmd/bridge into %s", bin)
		if err := buildBridge(ctx, bin); err != nil {
			return e, err
		}
	}
	e.bridgeBin = bin

	ua, err := freeAddr()
	if err != nil {
		return e, err
	}
	base := "http://" + ua + "/svc/"
	if e.upstream, err = startProc(ctx, c.work, "upstream", base, []string{self, "upstream", "--listen", ua}, nil); err != nil {
		return e, err
	}
	e.add(&target{name: "direct", base: base})

	pa, err := freeAddr()
	if err != nil {
		return e, err
	}
	if e.bare, err = startProc(ctx, c.work, "bare-proxy", "http://"+pa+"/svc/", []string{self, "proxy", "--listen", pa, "--target", "http://" + ua}, nil); err != nil {
		return e, err
	}
	e.add(&target{name: "bare proxy", base: "http://" + pa + "/svc/", proc: e.bare})

	na, err := freeAddr()
	if err != nil {
		return e, err
	}
	if e.nginx, err = startNginx(ctx, c.work, na, ua); err != nil {
		return e, err
	}
	e.add(&target{name: "nginx", base: "http://" + na + "/svc/", proc: e.nginx})

	e.world, err = demo.Start(ctx, demo.Options{Logger: slog.New(slog.DiscardHandler), AccessTTL: time.Hour, RefreshTTL: 2 * time.Hour})
	if err != nil {
		return e, fmt.Errorf("demo identity provider: %w", err)
	}

	redisURL := c.redisURL
	if redisURL == "" {
		redisURL = os.Getenv("BRIDGE_TEST_REDIS_URL")
	}
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/0"
	}
	stores := []struct{ name, url string }{{"bridge (memory)", ""}}
	if redisURL != "off" {
		if err := pingRedis(ctx, redisURL); err != nil {
			e.notes = append(e.notes, fmt.Sprintf("Redis at %s did not answer (%v): the Redis-store bridge was not measured.", redactURL(redisURL), err))
		} else {
			stores = append(stores, struct{ name, url string }{"bridge (Redis)", redisURL})
		}
	}
	for i, s := range stores {
		pprofAddr, err := freeAddr()
		if err != nil {
			return e, err
		}
		key := make([]byte, 32)
		rand.Read(key)
		b, err := startBridge(ctx, c.work, fmt.Sprintf("bridge-%d", i), bin, base, s.url, e.world, pprofAddr, key, hotTTLDefault)
		if err != nil {
			return e, err
		}
		b.name = s.name
		e.bridges = append(e.bridges, b)
		e.add(&target{name: s.name, base: b.public + "/odata/synth/", auth: []string{"Bearer " + b.token}, proc: b.proc})
		if i == 0 {
			client := &http.Client{Timeout: 30 * time.Second}
			key, err := feedKey(ctx, client, b.public, b.token)
			if err != nil {
				return e, err
			}
			basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("bench:"+key))
			e.add(&target{name: s.name + ", feed key", base: b.public + "/odata/synth/", auth: []string{basic}, proc: b.proc})
		}
	}
	return e, nil
}

func (e *env) add(t *target) {
	e.targets[t.name] = t
	e.order = append(e.order, t.name)
}

// close stops every process the harness started, and revokes its sessions.
func (e *env) close(logf func(string, ...any)) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, b := range e.replicas {
		b.proc.stop()
	}
	for _, b := range e.bridges {
		revoke(ctx, client, b.public, b.token)
		if len(b.extra) > 0 {
			logf("revoking %d sessions of %s", len(b.extra), b.name)
			parallel(8, len(b.extra), func(i int) { revoke(ctx, client, b.public, b.extra[i]) })
		}
		b.proc.stop()
	}
	if e.world != nil {
		e.world.Close()
	}
	e.nginx.stop()
	e.bare.stop()
	e.upstream.stop()
}

// parallel runs f(0..n-1) on k goroutines and waits for all of them.
func parallel(k, n int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// pingRedis checks that url answers PING.
func pingRedis(ctx context.Context, u string) error {
	opt, err := redis.ParseURL(u)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

// redactURL drops a password from a URL for the report.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// buildBridge builds ./cmd/bridge into bin.
func buildBridge(ctx context.Context, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/bridge")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/bridge (run from the repository root, or pass -bridge): %w", err)
	}
	return nil
}

// startNginx writes a proxy_pass config (1 worker, keepalive upstream, no
// sub_filter) and starts nginx in the foreground.
func startNginx(ctx context.Context, dir, listen, upstream string) (*proc, error) {
	nd := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(nd, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`# Generated by bench/cmd/harness: nginx proxy_pass as users deploy it. No sub_filter,
# so links in bodies still name the upstream.
worker_processes 1;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream odata { server %[2]s; keepalive 64; }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://odata;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_max_temp_file_size 0;
    }
  }
}
`, nd, upstream, listen)
	cf := filepath.Join(nd, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	return startProc(ctx, dir, "nginx", "http://"+listen+"/svc/", []string{bin, "-p", nd, "-e", nd + "/error.log", "-c", cf}, nil)
}

// hotTTLDefault is the bridges' in-process token cache TTL, the default of the config.
const hotTTLDefault = "5s"

// startBridge writes a config for the bridge binary bin (memory store when
// redisURL is empty), starts it, and signs in once through its OAuth endpoint.
func startBridge(ctx context.Context, dir, name, bin, upstream, redisURL string, w *demo.World, pprofAddr string, key []byte, hotTTL string) (*bridgeProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	public := "http://" + addr
	conf := fmt.Sprintf(`# Generated by bench/cmd/harness.
listen: %q
public_url: %q
log: {level: "info", format: "json"}
redis: {url: %q}
encryption_keys: [%q]
idp: {issuer: %q, client_id: %q, client_secret: %q}
sources:
  - name: "synth"
    title: "Synthetic OData v4"
    kind: "odata"
    url: %q
    auth: "user"
    # The relay itself is measured: wrk repeats the same requests, which the
    # accelerator would answer from its cache.
    repeat_ttl: "0"
    read_ahead: 0
session: {access_ttl: "1h", refresh_ttl: "2h", hot_cache_ttl: %q}
rate_limit: {per_key_per_minute: 0}
`, addr, public, redisURL, "bench:"+base64.StdEncoding.EncodeToString(key), w.Issuer, w.ClientID, w.ClientSecret, upstream, hotTTL)
	cf := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	args := []string{bin, "serve", "--config", cf}
	if pprofAddr != "" {
		args = append(args, "--pprof", pprofAddr)
	}
	p, err := startProc(ctx, dir, name, public+"/healthz", args, nil)
	if err != nil {
		return nil, err
	}
	b := &bridgeProc{public: public, proc: p, pprof: pprofAddr, key: key, redisURL: redisURL, bin: bin, upstream: upstream}
	if hotTTL != hotTTLDefault {
		return b, nil
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if b.token, err = signIn(ctx, client, public); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

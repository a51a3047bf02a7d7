package systemtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/odata-bridge/bridge/demo"
)

// source is one entry of the sources: list of a bridge's config.
type source struct {
	Name          string `yaml:"name"`
	Kind          string `yaml:"kind,omitempty"`
	Preset        string `yaml:"preset,omitempty"`
	URL           string `yaml:"url"`
	Auth          string `yaml:"auth,omitempty"`
	HeaderTimeout string `yaml:"header_timeout,omitempty"`
}

// bridgeConfig is what a test chooses about one bridge process; the rest
// is fixed.
type bridgeConfig struct {
	World          *demo.World // required: the identity provider and the demo upstreams
	RedisURL       string      // standalone Redis; empty with no RedisAddrs: the memory store
	RedisAddrs     []string    // Cluster
	EncryptionKeys string      // BRIDGE_ENCRYPTION_KEYS; required with Redis
	TokenURL       string      // the provider's token endpoint as the bridge sees it; zero: discovery
	Sources        []source    // zero: the demo's OData v4 source "smartobjects"
	HotCacheTTL    string      // zero: 1s
	TrustedProxies []string
	RateLimit      int    // rate_limit.per_key_per_minute; zero: off, so load and fault runs are not throttled
	AccessTTL      string // session.access_ttl; zero: the default
	RefreshTTL     string // session.refresh_ttl; zero: the default
	MasterName     string // redis.master_name: RedisAddrs are Sentinels
	Binary         string // the bridge program; zero: bridgeBin, built from this tree
}

// bridge is one running bridge process.
type bridge struct {
	URL     string // public URL and listen address, http://127.0.0.1:PORT
	Metrics string // the metrics listener, http://127.0.0.1:PORT
	cmd     *exec.Cmd
	log     string // path of its combined output
	done    chan struct{}
}

// newEncryptionKeys returns a fresh BRIDGE_ENCRYPTION_KEYS value of one key.
func newEncryptionKeys(id string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return id + ":" + base64.StdEncoding.EncodeToString(b)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// demoSources are the demo world's OData sources.
func demoSources(w *demo.World) []source {
	return []source{
		{Name: "smartobjects", URL: w.ODataV4URL, Auth: "user"},
		{Name: "smartobjects-v3", URL: w.ODataV3URL, Auth: "user"},
	}
}

// jwksURL is the key set of issuer, from its discovery document.
func jwksURL(t testing.TB, issuer string) string {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc.JWKSURI == "" {
		t.Fatalf("discovery of %s: jwks_uri %q, %v", issuer, doc.JWKSURI, err)
	}
	return doc.JWKSURI
}

// startBridge writes cfg as a YAML file plus BRIDGE_* variables and runs
// the bridge binary until the test ends.
func startBridge(t testing.TB, cfg bridgeConfig) *bridge {
	t.Helper()
	var last error
	for range 3 { // a free port may be taken between freePort and the bridge's listen
		b, err := tryStartBridge(t, cfg)
		if err == nil {
			return b
		}
		last = err
	}
	t.Fatalf("bridge did not start: %v", last)
	return nil
}

func tryStartBridge(t testing.TB, cfg bridgeConfig) (*bridge, error) {
	dir := t.TempDir()
	port := freePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	sources := cfg.Sources
	if sources == nil {
		sources = demoSources(cfg.World)
	}
	hot := cfg.HotCacheTTL
	if hot == "" {
		hot = "1s"
	}
	session := map[string]any{"hot_cache_ttl": hot}
	if cfg.AccessTTL != "" {
		session["access_ttl"] = cfg.AccessTTL
	}
	if cfg.RefreshTTL != "" {
		session["refresh_ttl"] = cfg.RefreshTTL
	}
	idp := map[string]any{
		"issuer":    cfg.World.Issuer,
		"client_id": cfg.World.ClientID,
	}
	if cfg.TokenURL != "" {
		idp["auth_url"] = cfg.World.OAuth2Config("").Endpoint.AuthURL
		idp["token_url"] = cfg.TokenURL
		// Explicit endpoints need the key set that verifies ID tokens.
		idp["jwks_url"] = jwksURL(t, cfg.World.Issuer)
	}
	metricsPort := freePort(t)
	doc := map[string]any{
		"listen":           fmt.Sprintf("127.0.0.1:%d", port),
		"public_url":       public,
		"shutdown_timeout": "2s",
		"log":              map[string]any{"level": "info", "format": "json"},
		"idp":              idp,
		"sources":          sources,
		"session":          session,
		"rate_limit":       map[string]any{"per_key_per_minute": cfg.RateLimit},
	}
	if len(cfg.TrustedProxies) > 0 {
		doc["trusted_proxies"] = cfg.TrustedProxies
	}
	metrics := public // releases before metrics_listen served /metrics on the public listener
	if cfg.Binary == "" {
		doc["metrics_listen"] = fmt.Sprintf("127.0.0.1:%d", metricsPort)
		metrics = fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	}
	switch {
	case cfg.RedisURL != "":
		doc["redis"] = map[string]any{"url": cfg.RedisURL}
	case len(cfg.RedisAddrs) > 0 && cfg.MasterName != "":
		doc["redis"] = map[string]any{"addrs": cfg.RedisAddrs, "master_name": cfg.MasterName}
	case len(cfg.RedisAddrs) > 0:
		doc["redis"] = map[string]any{"addrs": cfg.RedisAddrs}
	}
	raw, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "bridge.yaml")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "bridge.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	bin := bridgeBin
	if cfg.Binary != "" {
		bin = cfg.Binary
	}
	cmd := exec.Command(bin, "serve")
	// Only what the bridge needs: an inherited BRIDGE_* variable would
	// change the config under test.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"BRIDGE_CONFIG=" + cfgPath,
		"BRIDGE_IDP_CLIENT_SECRET=" + cfg.World.ClientSecret,
	}
	if cfg.EncryptionKeys != "" {
		cmd.Env = append(cmd.Env, "BRIDGE_ENCRYPTION_KEYS="+cfg.EncryptionKeys)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	b := &bridge{URL: public, Metrics: metrics, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(b.done)
	}()
	t.Cleanup(func() { b.stop(t) })

	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("bridge exited: %s", lastLines(string(out), 5))
		default:
		}
		resp, err := http.Get(public + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return b, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.stop(t)
	return nil, fmt.Errorf("bridge at %s not healthy within 20s", public)
}

// stop ends the process with SIGTERM, then SIGKILL after five seconds,
// and fails the test if the process reported a data race.
func (b *bridge) stop(t testing.TB) {
	select {
	case <-b.done:
		return
	default:
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		t.Errorf("bridge %s ignored SIGTERM for 5s; killing it", b.URL)
		b.cmd.Process.Kill()
		<-b.done
	}
	if log := b.logText(t); strings.Contains(log, "WARNING: DATA RACE") {
		i := strings.Index(log, "WARNING: DATA RACE")
		t.Errorf("bridge %s reported a data race:\n%s", b.URL, log[i:min(len(log), i+4000)])
	}
}

// pid is the bridge's process ID.
func (b *bridge) pid() int { return b.cmd.Process.Pid }

// logText is everything the bridge wrote so far.
func (b *bridge) logText(t testing.TB) string {
	t.Helper()
	out, err := os.ReadFile(b.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// fdCount is the number of open file descriptors of the bridge process.
func (b *bridge) fdCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", b.pid()))
	if err != nil {
		t.Skipf("cannot count file descriptors here: %v", err)
	}
	return len(ents)
}

// rssKiB is the bridge process's resident set size.
func (b *bridge) rssKiB(t testing.TB) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.pid()))
	if err != nil {
		t.Skipf("cannot read process status here: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

var goroutinesLine = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)

// goroutines reads go_goroutines from the bridge's /metrics.
func (b *bridge) goroutines(t testing.TB) int {
	t.Helper()
	resp, err := http.Get(b.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	m := goroutinesLine.FindSubmatch(raw)
	if m == nil {
		t.Fatalf("/metrics has no go_goroutines")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startWorld starts the demo identity provider and upstreams for one test.
func startWorld(t testing.TB, opts demo.Options) *demo.World {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := demo.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

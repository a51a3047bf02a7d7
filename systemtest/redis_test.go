package systemtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a private redis-server child process. Tests that kill,
// restart or fail over Redis use these, never the shared server.
type redisServer struct {
	Port int
	dir  string
	args []string
	prog string // zero: redis-server
	cmd  *exec.Cmd
	done chan struct{}
}

// needRedisServer skips without redis-server, except in CI, where its
// absence fails the test.
func needRedisServer(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed; CI must install it (apt-get install redis-server)")
		}
		t.Skip("redis-server is not installed: the system tests need a real Redis (apt-get install redis-server)")
	}
}

// startRedis runs a private redis-server on a free loopback port with
// extra arguments such as "--appendonly", "yes". Its data directory lives
// until the test ends, so a restart finds its files.
func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	needRedisServer(t)
	r := &redisServer{dir: t.TempDir()}
	r.Port = freePort(t)
	r.args = append([]string{
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no",
	}, extra...)
	r.start(t)
	t.Cleanup(func() { r.kill() })
	return r
}

func (r *redisServer) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	prog := r.prog
	if prog == "" {
		prog = "redis-server"
	}
	r.cmd = exec.Command(prog, r.args...)
	r.cmd.Dir = r.dir
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	r.done = done
	cmd := r.cmd
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	c := r.client()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			t.Fatalf("redis-server on %d exited: %s", r.Port, lastLines(string(log), 5))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %d did not answer within 10s: %v", r.Port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addr is host:port.
func (r *redisServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.Port) }

// URL is the redis:// URL of database 0.
func (r *redisServer) URL() string { return "redis://" + r.Addr() + "/0" }

func (r *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: time.Second})
}

// kill ends the server with SIGKILL, as a crash would.
func (r *redisServer) kill() {
	if r.cmd == nil {
		return
	}
	select {
	case <-r.done:
	default:
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
	}
}

// stop ends the server with SIGTERM, which lets it flush its append-only file.
func (r *redisServer) stop(t testing.TB) {
	t.Helper()
	select {
	case <-r.done:
		return
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("redis-server on %d ignored SIGTERM", r.Port)
	}
}

// restart starts the server again on the same port and directory.
func (r *redisServer) restart(t testing.TB) {
	t.Helper()
	r.start(t)
}

// storeRedisURL is the Redis every bridge of a replica test shares:
// BRIDGE_TEST_REDIS_URL when set (CI), else a private redis-server.
func storeRedisURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("BRIDGE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return startRedis(t).URL()
}

// redisCluster is a private Redis Cluster of three masters with one
// replica each.
type redisCluster struct {
	nodes []*redisServer
}

// startCluster creates a private six-node Cluster (three masters, three
// replicas) on free ports and waits until it is healthy.
func startCluster(t testing.TB) *redisCluster {
	t.Helper()
	needRedisServer(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-cli is not installed; CI must install it (apt-get install redis-tools)")
		}
		t.Skip("redis-cli is not installed: creating a Redis Cluster needs it")
	}
	rc := &redisCluster{}
	var addrs []string
	for range 6 {
		n := startRedis(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
			"--cluster-config-file", "nodes.conf", "--appendonly", "yes", "--appendfsync", "always")
		rc.nodes = append(rc.nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	rc.waitHealthy(t)
	return rc
}

// MasterAddrs are the addresses the bridge is configured with.
func (rc *redisCluster) Addrs() []string {
	var out []string
	for _, n := range rc.nodes[:3] {
		out = append(out, n.Addr())
	}
	return out
}

// waitHealthy waits until every node reports cluster_state:ok and knows
// three masters, each with a replica in sync.
func (rc *redisCluster) waitHealthy(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, n := range rc.nodes {
			c := n.client()
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ok = false
			}
			if repl, err := c.Info(ctx, "replication").Result(); err != nil ||
				strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				ok = false
			}
			c.Close()
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the Redis Cluster did not become healthy within 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nodeByAddr returns the private node listening on addr.
func (rc *redisCluster) nodeByAddr(addr string) *redisServer {
	for _, n := range rc.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

package systemtest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/odata-bridge/bridge/demo"
)

// sentinelMaster is the master name the Sentinels of these tests monitor.
const sentinelMaster = "bridgemaster"

// sentinelSet is a private Redis master with one replica, watched by three
// redis-sentinel processes.
type sentinelSet struct {
	nodes     []*redisServer // master first, as started
	sentinels []*redisServer
}

// startSentinelSet starts a master, its replica and three Sentinels (quorum two,
// down after 1 s) and waits until every Sentinel knows the replica and the others.
func startSentinelSet(t *testing.T) *sentinelSet {
	t.Helper()
	needRedisServer(t)
	prog := "redis-sentinel"
	if _, err := exec.LookPath(prog); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-sentinel is not installed; CI must install it (apt-get install redis-sentinel)")
		}
		// Debian's redis-sentinel is redis-server started in Sentinel mode.
		prog = "redis-server"
	}
	ss := &sentinelSet{}
	// A master that has lost its replica refuses writes (NOREPLICAS, which the bridge
	// answers with 503): after SENTINEL FAILOVER promotes the replica, the old master
	// would otherwise accept writes until the Sentinels reconfigure it, and lose them
	// when it becomes a replica, tokens the bridge has just handed out included.
	// A replica that must resynchronise in full gets the data at once, not after
	// Redis's default wait of 5 s for more replicas.
	durable := []string{"--min-replicas-to-write", "1", "--min-replicas-max-lag", "2", "--repl-diskless-sync-delay", "0"}
	master := startRedis(t, durable...)
	replica := startRedis(t, append(durable, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))...)
	ss.nodes = []*redisServer{master, replica}
	for range 3 {
		s := &redisServer{dir: t.TempDir(), prog: prog}
		s.Port = freePort(t)
		conf := filepath.Join(s.dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 10000\n"+
			"sentinel parallel-syncs %s 1\n",
			s.Port, s.dir, sentinelMaster, master.Port, sentinelMaster, sentinelMaster, sentinelMaster)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		s.args = []string{conf, "--sentinel"}
		if prog == "redis-sentinel" {
			s.args = []string{conf}
		}
		s.start(t)
		t.Cleanup(func() { s.kill() })
		ss.sentinels = append(ss.sentinels, s)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range ss.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		for {
			replicas, err1 := c.Replicas(ctx, sentinelMaster).Result()
			others, err2 := c.Sentinels(ctx, sentinelMaster).Result()
			if err1 == nil && err2 == nil && len(replicas) == 1 && len(others) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Sentinel %s did not learn the replica and the other Sentinels within 30s: %v %v %v %v", s.Addr(), replicas, others, err1, err2)
			}
			time.Sleep(200 * time.Millisecond)
		}
		c.Close()
	}
	ss.waitInSync(t)
	return ss
}

// Addrs are the Sentinels' addresses, the bridge's redis.addrs.
func (ss *sentinelSet) Addrs() []string {
	var out []string
	for _, s := range ss.sentinels {
		out = append(out, s.Addr())
	}
	return out
}

// master returns the node every Sentinel reports as master, or nil while they disagree
// or report one that is not up.
func (ss *sentinelSet) master(ctx context.Context) *redisServer {
	var addr string
	for _, s := range ss.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second})
		a, err := c.GetMasterAddrByName(ctx, sentinelMaster).Result()
		c.Close()
		if err != nil || len(a) != 2 {
			return nil
		}
		if got := a[0] + ":" + a[1]; addr == "" {
			addr = got
		} else if got != addr {
			return nil
		}
	}
	for _, n := range ss.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// waitInSync waits until the master has a replica that acknowledged every write.
func (ss *sentinelSet) waitInSync(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	m := ss.master(ctx)
	if m == nil {
		t.Fatal("the Sentinels agree on no master")
	}
	c := m.client()
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := c.Do(ctx, "WAIT", 1, 1000).Int()
		if err == nil && n >= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the master's replica did not acknowledge its writes within 30s: %d, %v", n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// switchLoad is traffic on every bridge while Redis switches masters: each client
// reads feeds with its bearer token and feed key and refreshes now and then.
type switchLoad struct {
	mu       sync.Mutex
	problems []string
	total    atomic.Int64
	unavail  atomic.Int64   // 503s
	byKind   map[string]int // 503s by request kind, under mu
	last503  atomic.Int64   // Unix nanoseconds
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startSwitchLoad(bridges []*bridge, clients []tokens, keys []feedKey) *switchLoad {
	l := &switchLoad{stop: make(chan struct{}), byKind: map[string]int{}}
	for i := range clients {
		l.wg.Go(func() {
			ctx := context.Background()
			tok, key := clients[i], keys[i]
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					clients[i] = tok
					return
				default:
				}
				base := bridges[(i+n)%len(bridges)].URL
				var o observation
				switch n % 4 {
				case 0, 1:
					o = observe(ctx, "feed (bearer)", http.MethodGet, base+"/odata/smartobjects/Customers?$top=1", bearer(tok.Access))
				case 2:
					o = observe(ctx, "feed (key)", http.MethodGet, base+"/odata/smartobjects/Customers?$top=1", basicKey(key.Key))
				case 3:
					o, tok = observeRefresh(ctx, base, tok)
				}
				l.note(o)
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return l
}

func (l *switchLoad) note(o observation) {
	l.total.Add(1)
	if o.status == http.StatusServiceUnavailable {
		l.unavail.Add(1)
		l.last503.Store(time.Now().UnixNano())
		l.mu.Lock()
		l.byKind[o.what]++
		l.mu.Unlock()
	}
	if p := o.problem(); p != "" {
		l.mu.Lock()
		l.problems = append(l.problems, p)
		l.mu.Unlock()
	}
}

func (l *switchLoad) end() {
	close(l.stop)
	l.wg.Wait()
}

// TestRedisSentinelFailover runs two bridges on a Sentinel-managed master and replica
// (redis.addrs the three Sentinels, redis.master_name): sessions, feed keys and
// refresh tokens written before a forced failover (SENTINEL FAILOVER) and before a
// SIGKILL of the new master work after each; clients during the switch get 200 or 503
// with Retry-After, never a 500 or a hang; and the bridges follow the new master
// without a restart.
func TestRedisSentinelFailover(t *testing.T) {
	ss := startSentinelSet(t)
	world := startWorld(t, demo.Options{})
	keys := newEncryptionKeys("sys1")
	cfg := bridgeConfig{World: world, RedisAddrs: ss.Addrs(), MasterName: sentinelMaster, EncryptionKeys: keys}
	bridges := []*bridge{startBridge(t, cfg), startBridge(t, cfg)}
	ctx := context.Background()

	// Sessions that only wait through both switches, and for each switch fresh ones
	// that make traffic through it.
	signIns := func(n int) (toks []tokens, keys []feedKey) {
		for i := range n {
			br := bridges[i%2]
			tok := mustSignIn(t, br.URL, []string{"alice", "bob", "carol"}[i%3])
			toks, keys = append(toks, tok), append(keys, mustCreateKey(t, br.URL, tok.Access))
		}
		return toks, keys
	}
	kept, keptKeys := signIns(6)
	checkAll := func(when string) {
		t.Helper()
		for i := range kept {
			for _, br := range bridges {
				for _, auth := range []string{bearer(kept[i].Access), basicKey(keptKeys[i].Key)} {
					if r := retry503(t, br.URL+"/odata/smartobjects/Customers?$top=1", auth); r.Status != http.StatusOK {
						t.Errorf("%s: session %d on %s: status %d: %s", when, i, br.URL, r.Status, r.Body)
						for _, n := range ss.nodes {
							c := n.client()
							info, err := c.Info(ctx, "replication").Result()
							c.Close()
							t.Logf("replication on %s: %v %s", n.Addr(), err, info)
						}
						t.Logf("the end of the log of %s: %s", br.URL, lastLines(br.logText(t), 10))
					}
				}
			}
			var status int
			var next tokens
			for deadline := time.Now().Add(10 * time.Second); ; {
				var err error
				status, next, err = refreshGrant(ctx, bridges[i%2].URL, kept[i].Refresh)
				if err == nil && status != http.StatusServiceUnavailable || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if status != http.StatusOK {
				t.Errorf("%s: refresh of session %d: status %d", when, i, status)
				continue
			}
			kept[i] = next
		}
		if _, err := signIn(ctx, bridges[0].URL, "alice"); err != nil {
			t.Errorf("%s: a new sign-in: %v", when, err)
		}
	}

	for _, fault := range []struct {
		name string
		do   func(t *testing.T, m *redisServer)
	}{
		{"SENTINEL FAILOVER", func(t *testing.T, _ *redisServer) {
			c := redis.NewSentinelClient(&redis.Options{Addr: ss.sentinels[0].Addr()})
			defer c.Close()
			if err := c.Failover(ctx, sentinelMaster).Err(); err != nil {
				t.Fatalf("SENTINEL FAILOVER: %v", err)
			}
		}},
		{"SIGKILL of the master", func(t *testing.T, m *redisServer) { m.kill() }},
	} {
		busy, busyKeys := signIns(4)
		ss.waitInSync(t)
		before := ss.master(ctx)
		load := startSwitchLoad(bridges, busy, busyKeys)
		time.Sleep(time.Second)
		start := time.Now()
		fault.do(t, before)
		var promoted time.Duration
		for deadline := start.Add(30 * time.Second); ; {
			if m := ss.master(ctx); m != nil && m != before {
				promoted = time.Since(start)
				break
			}
			if time.Now().After(deadline) {
				load.end()
				t.Fatalf("%s: the Sentinels named no new master within 30s", fault.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if fault.name == "SIGKILL of the master" {
			// The killed node comes back, and the Sentinels make it the new master's
			// replica; until it is in sync the new master refuses writes.
			before.restart(t)
		}
		time.Sleep(5 * time.Second) // traffic on the new master
		load.end()
		last := time.Duration(0)
		if n := load.last503.Load(); n > start.UnixNano() {
			last = time.Unix(0, n).Sub(start)
		}
		t.Logf("%s: new master named by the Sentinels after %v; %d requests, %d answered 503 (%v), the last 503 %v after the fault",
			fault.name, promoted.Round(10*time.Millisecond), load.total.Load(), load.unavail.Load(), load.byKind, last.Round(10*time.Millisecond))
		for _, p := range load.problems {
			t.Errorf("%s: %s", fault.name, p)
		}
		if load.total.Load() < 20 {
			t.Errorf("%s: only %d requests during the switch", fault.name, load.total.Load())
		}
		checkAll("after " + fault.name)
	}
}

// retry503 GETs until the answer is not 503, for up to 10 s: after a switch the
// bridge may still be reconnecting.
func retry503(t *testing.T, rawURL, auth string) response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := get(t, rawURL, auth)
		if r.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			return r
		}
		time.Sleep(200 * time.Millisecond)
	}
}

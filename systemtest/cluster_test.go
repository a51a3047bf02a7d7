package systemtest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// sessionMasters returns, per master address, how many bridge sessions it
// holds. The Cluster is private to the test, so every session key is ours.
func (rc *redisCluster) sessionMasters(t *testing.T) map[string]int {
	t.Helper()
	ctx := context.Background()
	out := map[string]int{}
	for _, n := range rc.nodes {
		c := n.client()
		role, err := c.Do(ctx, "ROLE").Slice()
		if err != nil || len(role) == 0 || role[0] != "master" {
			c.Close()
			continue
		}
		keys, err := c.Keys(ctx, "bridge:{*}:session").Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[n.Addr()] = len(keys)
	}
	return out
}

// replicaOf returns the node replicating the master at addr.
func (rc *redisCluster) replicaOf(t *testing.T, addr string) *redisServer {
	t.Helper()
	ctx := context.Background()
	for _, n := range rc.nodes {
		c := n.client()
		info, err := c.Info(ctx, "replication").Result()
		c.Close()
		if err == nil && strings.Contains(info, "role:slave") {
			host, port := strings.Split(addr, ":")[0], strings.Split(addr, ":")[1]
			if strings.Contains(info, "master_host:"+host+"\r\n") && strings.Contains(info, "master_port:"+port+"\r\n") {
				return n
			}
		}
	}
	t.Fatalf("no replica of %s", addr)
	return nil
}

// busiestMaster is the master holding the most sessions.
func busiestMaster(t *testing.T, counts map[string]int) string {
	t.Helper()
	best := ""
	for addr, n := range counts {
		if n > 0 && (best == "" || n > counts[best]) {
			best = addr
		}
	}
	if best == "" {
		t.Fatal("no master holds a session")
	}
	return best
}

// waitRole waits until the node reports role (master or slave).
func waitRole(t *testing.T, n *redisServer, role string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := n.client()
		info, err := c.Info(context.Background(), "replication").Result()
		c.Close()
		if err == nil && strings.Contains(info, "role:"+role+"\r\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become %s within 20s", n.Addr(), role)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitInSync waits until a replica has received everything its master wrote.
func waitInSync(t *testing.T, master, replica *redisServer) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mc, rc := master.client(), replica.client()
		mo, err1 := mc.Do(ctx, "ROLE").Slice()
		ro, err2 := rc.Do(ctx, "ROLE").Slice()
		mc.Close()
		rc.Close()
		// ROLE: master → ["master", offset, …]; replica → ["slave", host, port, state, offset].
		if err1 == nil && err2 == nil && len(mo) > 1 && len(ro) > 4 && mo[1] == ro[4] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not catch up with %s", replica.Addr(), master.Addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkSessions fails for every session, refresh token or key that no
// longer works through the bridges; it returns the rotated tokens.
func checkSessions(t *testing.T, when string, bridges []*bridge, sessions []tokens, key feedKey) []tokens {
	t.Helper()
	out := make([]tokens, len(sessions))
	for i, tok := range sessions {
		br := bridges[i%len(bridges)]
		out[i] = tok
		var r response
		// The client's first calls after a topology change may meet the
		// old master; a Power Query refresh retries a 503.
		for try := 0; try < 20; try++ {
			r = get(t, br.URL+"/odata/smartobjects/Customers?$top=1", bearer(tok.Access))
			if r.Status != http.StatusServiceUnavailable {
				break
			}
			if r.Header.Get("Retry-After") == "" || odataErrorCode(r.Body) != "StoreUnavailable" {
				t.Errorf("%s: session %d: 503 without Retry-After or the StoreUnavailable error: %s", when, i, r.Body)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if r.Status != http.StatusOK {
			t.Errorf("%s: session %d: status %d: %s", when, i, r.Status, r.Body)
			continue
		}
		status, rotated, err := refreshGrant(context.Background(), br.URL, tok.Refresh)
		if err != nil || status != http.StatusOK {
			t.Errorf("%s: session %d: refresh: status %d, %v", when, i, status, err)
			continue
		}
		out[i] = rotated
	}
	for _, br := range bridges {
		if r := get(t, br.URL+"/odata/smartobjects/Customers?$top=1", basicKey(key.Key)); r.Status != http.StatusOK {
			t.Errorf("%s: feed key on %s: status %d", when, br.URL, r.Status)
		}
	}
	return out
}

// TestRedisClusterFailover runs two bridges on a private Redis Cluster of
// three masters with one replica each. It fails over the master holding the
// most sessions twice: first with CLUSTER FAILOVER on its replica, then by
// killing the new master with SIGKILL once its replica is in sync. No
// session written before is lost, refresh tokens still rotate (writes reach
// the new masters) and the bridges follow the new topology without a restart.
func TestRedisClusterFailover(t *testing.T) {
	world := startWorld(t, demo.Options{})
	rc := startCluster(t)
	keys := newEncryptionKeys("sys1")
	bridges := []*bridge{
		startBridge(t, bridgeConfig{World: world, RedisAddrs: rc.Addrs(), EncryptionKeys: keys}),
		startBridge(t, bridgeConfig{World: world, RedisAddrs: rc.Addrs(), EncryptionKeys: keys}),
	}
	var sessions []tokens
	for i := range 12 {
		sessions = append(sessions, mustSignIn(t, bridges[i%2].URL, world.Users[i%len(world.Users)]))
	}
	key := mustCreateKey(t, bridges[0].URL, sessions[0].Access)
	sessions = checkSessions(t, "before failover", bridges, sessions, key)

	// 1. A manual failover: the replica takes over once it has every write.
	counts := rc.sessionMasters(t)
	old := busiestMaster(t, counts)
	replica := rc.replicaOf(t, old)
	c := replica.client()
	if err := c.Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatalf("CLUSTER FAILOVER on %s: %v", replica.Addr(), err)
	}
	c.Close()
	waitRole(t, replica, "master")
	rc.waitHealthy(t)
	t.Logf("CLUSTER FAILOVER: %s (%d sessions) → %s", old, counts[old], replica.Addr())
	time.Sleep(hotCacheTTL)
	sessions = checkSessions(t, "after CLUSTER FAILOVER", bridges, sessions, key)

	// 2. The new master crashes; its replica (the old master) is promoted.
	counts = rc.sessionMasters(t)
	if counts[replica.Addr()] == 0 {
		t.Fatalf("the promoted master %s holds no session; sessions per master: %v", replica.Addr(), counts)
	}
	oldMaster := rc.nodeByAddr(old)
	waitInSync(t, replica, oldMaster)
	replica.kill()
	killed := time.Now()
	waitRole(t, oldMaster, "master")
	t.Logf("killed %s (%d sessions); %s took over after %v", replica.Addr(), counts[replica.Addr()], old, time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(hotCacheTTL)
	sessions = checkSessions(t, "after killing a master", bridges, sessions, key)
	t.Logf("every session worked again %v after the kill", time.Since(killed).Round(100*time.Millisecond))

	// A new sign-in works on the new topology.
	tok := mustSignIn(t, bridges[1].URL, "alice")
	if r := get(t, bridges[0].URL+"/odata/smartobjects/Customers?$top=1", bearer(tok.Access)); r.Status != http.StatusOK {
		t.Errorf("a session made after the failovers: status %d", r.Status)
	}
	_ = sessions
}

package systemtest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// hotCacheTTL is session.hot_cache_ttl in every bridge of these tests: the
// documented bound on how late a revocation reaches another replica.
const hotCacheTTL = time.Second

// revocationSlack is added to hotCacheTTL for polling and a loaded machine.
const revocationSlack = 1500 * time.Millisecond

// TestReplicasShareSessions runs three bridges on one Redis: a client signs
// in through the first, refreshes through the second and pages a feed
// through the third, and a revocation on one reaches the others within
// session.hot_cache_ttl. It runs on standalone Redis and, when
// BRIDGE_TEST_REDIS_CLUSTER names one, on a Redis Cluster too.
func TestReplicasShareSessions(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		world := startWorld(t, demo.Options{})
		keys := newEncryptionKeys("sys1")
		url := storeRedisURL(t)
		var bridges []*bridge
		for range 3 {
			bridges = append(bridges, startBridge(t, bridgeConfig{World: world, RedisURL: url, EncryptionKeys: keys}))
		}
		checkReplicas(t, world, bridges)
	})
	t.Run("cluster", func(t *testing.T) {
		addrs := os.Getenv("BRIDGE_TEST_REDIS_CLUSTER")
		if addrs == "" {
			t.Skip("BRIDGE_TEST_REDIS_CLUSTER is not set; TestRedisClusterFailover covers a private Cluster")
		}
		world := startWorld(t, demo.Options{})
		keys := newEncryptionKeys("sys1")
		var bridges []*bridge
		for range 3 {
			bridges = append(bridges, startBridge(t, bridgeConfig{World: world, RedisAddrs: strings.Split(addrs, ","), EncryptionKeys: keys}))
		}
		checkReplicas(t, world, bridges)
	})
}

func checkReplicas(t *testing.T, world *demo.World, bridges []*bridge) {
	ctx := context.Background()
	a, b, c := bridges[0], bridges[1], bridges[2]

	tok := mustSignIn(t, a.URL, "alice")
	status, tok2, err := refreshGrant(ctx, b.URL, tok.Refresh)
	if err != nil || status != http.StatusOK {
		t.Fatalf("refresh through the second bridge: status %d, %v", status, err)
	}
	if tok2.Refresh == tok.Refresh || tok2.Refresh == "" {
		t.Errorf("refresh through the second bridge returned refresh token unchanged or empty; want a rotated one")
	}
	// The rotated-out refresh token is spent on every replica (RFC 9700 §4.14.2).
	if r := get(t, c.URL+"/odata/smartobjects/", bearer(tok2.Access)); r.Status != http.StatusOK {
		t.Fatalf("service document through the third bridge with the refreshed token: status %d: %s", r.Status, r.Body)
	}

	// Page a whole feed through the third bridge, and one through all three in turn.
	count := get(t, c.URL+"/odata/smartobjects/Orders?$top=0&$count=true", bearer(tok2.Access))
	var counted struct {
		Count int `json:"@odata.count"`
	}
	if count.Status != http.StatusOK || json.Unmarshal(count.Body, &counted) != nil || counted.Count == 0 {
		t.Fatalf("count of Orders: status %d: %s", count.Status, count.Body)
	}
	rows, pages := followFeed(t, c.URL+"/odata/smartobjects/Orders", bearer(tok2.Access))
	if rows != counted.Count || pages < 2 {
		t.Errorf("paging Orders through the third bridge: got %d rows in %d pages, want %d rows in several pages", rows, pages, counted.Count)
	}
	rows, _ = followFeed(t, a.URL+"/odata/smartobjects/Orders", bearer(tok2.Access), a.URL, b.URL, c.URL)
	if rows != counted.Count {
		t.Errorf("paging Orders across three bridges: got %d rows, want %d", rows, counted.Count)
	}

	// A feed key made on the first works on all; revoked there, it stops on
	// the others within the hot cache's lifetime.
	key := mustCreateKey(t, a.URL, tok2.Access)
	for _, br := range bridges {
		if r := get(t, br.URL+"/odata/smartobjects/Customers?$top=1", basicKey(key.Key)); r.Status != http.StatusOK {
			t.Fatalf("feed key on %s: status %d: %s", br.URL, r.Status, r.Body)
		}
	}
	r, err := do(ctx, http.MethodDelete, a.URL+"/api/keys/"+url.PathEscape(key.ID), bearer(tok2.Access), nil)
	if err != nil || r.Status != http.StatusNoContent {
		t.Fatalf("revoke the key on the first bridge: status %d, %v", r.Status, err)
	}
	revoked := time.Now()
	checkRefusedWithin(t, "revoked feed key", revoked, []*bridge{b, c}, basicKey(key.Key))

	// Revoking the session (RFC 7009) on the second ends it on every bridge.
	for _, br := range bridges {
		get(t, br.URL+"/odata/smartobjects/Customers?$top=1", bearer(tok2.Access)) // warm each hot cache
	}
	req, _ := http.NewRequest(http.MethodPost, b.URL+"/oauth/revoke", strings.NewReader(url.Values{"token": {tok2.Refresh}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke the session on the second bridge: %v %v", resp, err)
	}
	resp.Body.Close()
	checkRefusedWithin(t, "revoked session", time.Now(), []*bridge{a, c}, bearer(tok2.Access))
	if status, _, _ := refreshGrant(ctx, c.URL, tok2.Refresh); status != http.StatusBadRequest {
		t.Errorf("refresh with a revoked session's token on the third bridge: status %d, want 400 invalid_grant", status)
	}

	for _, br := range bridges {
		checkNoSecrets(t, br, world.ClientSecret, tok.Access, tok.Refresh, tok2.Access, tok2.Refresh, key.Key)
	}
}

// checkRefusedWithin polls the bridges until each refuses auth with 401 and
// fails when one still accepts it after hotCacheTTL plus slack.
func checkRefusedWithin(t *testing.T, what string, since time.Time, bridges []*bridge, auth string) {
	t.Helper()
	for _, br := range bridges {
		for {
			// The bound applies to when a request was sent: a slow answer
			// to an early request is no violation.
			sent := time.Since(since)
			r := get(t, br.URL+"/odata/smartobjects/Customers?$top=1", auth)
			if r.Status == http.StatusUnauthorized {
				t.Logf("%s refused by %s for a request sent %v after revocation", what, br.URL, sent.Round(time.Millisecond))
				break
			}
			if r.Status != http.StatusOK {
				t.Fatalf("%s on %s: status %d, want 200 and then 401: %s", what, br.URL, r.Status, r.Body)
			}
			if sent > hotCacheTTL+revocationSlack {
				t.Fatalf("%s still accepted by %s for a request sent %v after revocation; the bound is session.hot_cache_ttl = %v", what, br.URL, sent, hotCacheTTL)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// checkNoSecrets fails when the bridge's log holds any of the secrets.
func checkNoSecrets(t *testing.T, br *bridge, secrets ...string) {
	t.Helper()
	log := br.logText(t)
	for i, s := range secrets {
		if len(s) >= 8 && strings.Contains(log, s) {
			t.Errorf("the log of %s contains secret #%d (a token, key or the client secret)", br.URL, i)
		}
	}
}

package systemtest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// TestKeyRotationAcrossRestarts follows SECURITY.md's key rotation on
// running bridges: [old], then a rolling change through [old, new] and
// [new, old] in which every replica reads what the others wrote, then
// [new] alone, under which everything used during the rotation still
// works. A session idle through the whole rotation ends, as documented.
func TestKeyRotationAcrossRestarts(t *testing.T) {
	world := startWorld(t, demo.Options{})
	rs := startRedis(t)
	oldKey, newKey := newEncryptionKeys("2026a"), newEncryptionKeys("2026b")
	// A short sliding lifetime makes the bridge rewrite a used session
	// (under the first key) every two seconds instead of every minute.
	start := func(keys ...string) *bridge {
		return startBridge(t, bridgeConfig{World: world, RedisURL: rs.URL(), EncryptionKeys: strings.Join(keys, ","),
			AccessTTL: "15s", RefreshTTL: "16s"})
	}
	feed := "/odata/smartobjects/Customers?$top=1"
	works := func(br *bridge, what, auth string) {
		t.Helper()
		if r := get(t, br.URL+feed, auth); r.Status != http.StatusOK {
			t.Errorf("%s on %s: status %d: %s", what, br.URL, r.Status, r.Body)
		}
	}

	a := start(oldKey)
	used := mustSignIn(t, a.URL, "alice")
	idle := mustSignIn(t, a.URL, "bob")
	key := mustCreateKey(t, a.URL, used.Access)
	a.stop(t)

	// Rolling: one replica already decrypts with new, the next encrypts with it.
	b1 := start(oldKey, newKey)
	b2 := start(newKey, oldKey)
	fresh := mustSignIn(t, b2.URL, "carol") // sealed under new
	works(b1, "a session sealed under the new key, on [old, new]", bearer(fresh.Access))
	works(b2, "a session sealed under the old key, on [new, old]", bearer(used.Access))
	works(b1, "an old session on [old, new]", bearer(idle.Access))
	b1.stop(t)

	// Everything in use is rewritten under new: a refresh, the feed key and
	// a touch of each session once the touch interval has passed.
	time.Sleep(2100 * time.Millisecond)
	status, rotated, err := refreshGrant(t.Context(), b2.URL, used.Refresh)
	if err != nil || status != http.StatusOK {
		t.Fatalf("refresh on [new, old]: status %d, %v", status, err)
	}
	works(b2, "the refreshed session on [new, old]", bearer(rotated.Access))
	works(b2, "the feed key on [new, old]", basicKey(key.Key))
	works(b2, "the new session on [new, old]", bearer(fresh.Access))
	b2.stop(t)

	c := start(newKey)
	works(c, "the refreshed session on [new]", bearer(rotated.Access))
	works(c, "the feed key on [new]", basicKey(key.Key))
	works(c, "the session sealed under new, on [new]", bearer(fresh.Access))
	if r := get(t, c.URL+feed, bearer(idle.Access)); r.Status != http.StatusUnauthorized {
		t.Errorf("a session idle through the rotation, on [new]: status %d, want 401 (it was sealed under the dropped key)", r.Status)
	}
}

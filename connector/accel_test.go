package connector

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
)

// accelFixture is a bridge whose source k2 is a real relay with repeats on, in front
// of an upstream that echoes the credential each request carried.
type accelFixture struct {
	*bridge
	hits atomic.Int64
	reg  *prometheus.Registry
}

func newAccelFixture(t *testing.T) *accelFixture {
	t.Helper()
	f := &accelFixture{reg: prometheus.NewRegistry()}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := f.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header()["OData-Version"] = []string{"4.0"}
		fmt.Fprintf(w, `{"auth":%q,"n":%d,"value":[]}`, r.Header.Get("Authorization"), n)
	}))
	t.Cleanup(up.Close)
	f.bridge = newBridge(t, func(*idp.Provider) []Source { return nil }, func(o *Options) {
		relay, err := odata.NewRelay([]odata.Upstream{{
			Name: "k2", URL: up.URL + "/svc/", PublicBase: o.PublicURL + "/odata/k2/", RepeatTTL: time.Hour,
		}}, odata.Options{Registerer: f.reg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(relay.Close)
		feed, _ := relay.Feed("k2")
		o.Sources = []Source{{Name: "k2", Kind: "odata", Auth: AuthUser, Feed: feed}}
	})
	return f
}

// held is the relay's bytes kept.
func (f *accelFixture) held(t *testing.T) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "bridge_relay_held_bytes" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// read fetches the feed with a credential header and returns the body.
func (f *accelFixture) read(t *testing.T, h http.Header) string {
	t.Helper()
	resp, body := f.get(t, "/odata/k2/Items?$top=5", h)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	return body
}

func (f *accelFixture) createKey(t *testing.T, access string) (id, key string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.url+"/api/keys", strings.NewReader(`{"name":"excel"}`))
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var k struct{ ID, Key string }
	if err := json.NewDecoder(resp.Body).Decode(&k); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/keys: %d %v", resp.StatusCode, err)
	}
	return k.ID, k.Key
}

func basicKey(key string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("excel:"+key))}}
}

func TestRepeatsArePerCaller(t *testing.T) {
	f := newAccelFixture(t)
	a1, _ := f.signIn(t)
	a2, _ := f.signIn(t)
	_, k1 := f.createKey(t, a1)
	_, k2 := f.createKey(t, a1)

	callers := []struct {
		name string
		h    http.Header
	}{
		{"session 1", bearer(a1)},
		{"session 2", bearer(a2)},
		{"key 1 of session 1", basicKey(k1)},
		{"key 2 of session 1", basicKey(k2)},
		{"key 1 as api_key", nil},
	}
	bodies := map[string]string{}
	for i, c := range callers {
		h := c.h
		path := "/odata/k2/Items?$top=5"
		if h == nil {
			path += "&api_key=" + url.QueryEscape(k1)
		}
		_, first := f.get(t, path, h)
		_, again := f.get(t, path, h)
		if again != first {
			t.Errorf("%s: repeat = %s, want %s", c.name, again, first)
		}
		want := int64(i + 1)
		if c.h == nil {
			want = int64(i) // the query's key is key 1: the same caller
		}
		if got := f.hits.Load(); got != want {
			t.Errorf("%s: upstream hits = %d, want %d", c.name, got, want)
		}
		bodies[c.name] = first
	}
	if bodies["session 1"] == bodies["session 2"] || bodies["key 1 of session 1"] == bodies["key 2 of session 1"] {
		t.Errorf("two callers got the same response: %v", bodies)
	}
}

func TestRevocationDropsKeptResponses(t *testing.T) {
	f := newAccelFixture(t)
	a1, _ := f.signIn(t)
	a2, _ := f.signIn(t)
	id, k1 := f.createKey(t, a2)
	s1 := f.read(t, bearer(a1))
	s2 := f.read(t, bearer(a2))
	key := f.read(t, basicKey(k1))
	if got, want := f.held(t), float64(len(s1)+len(s2)+len(key)); got != want {
		t.Fatalf("held = %v, want %v", got, want)
	}

	// Revoking the feed key drops its entries at once.
	req, _ := http.NewRequest(http.MethodDelete, f.url+"/api/keys/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+a2)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /api/keys: %v %v", resp, err)
	}
	resp.Body.Close()
	if got, want := f.held(t), float64(len(s1)+len(s2)); got != want {
		t.Errorf("held after revoking the key = %v, want %v", got, want)
	}
	if resp, _ := f.get(t, "/odata/k2/Items?$top=5", basicKey(k1)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked key: status %d, want 401", resp.StatusCode)
	}

	// Revoking session 1's token (RFC 7009) drops session 1's entries, not session 2's.
	f.postForm(t, "/oauth/revoke", url.Values{"token": {a1}})
	if got, want := f.held(t), float64(len(s2)); got != want {
		t.Errorf("held after revoking session 1 = %v, want %v", got, want)
	}
	if resp, _ := f.get(t, "/odata/k2/Items?$top=5", bearer(a1)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked session: status %d, want 401", resp.StatusCode)
	}
	hits := f.hits.Load()
	if again := f.read(t, bearer(a2)); again != s2 || f.hits.Load() != hits {
		t.Errorf("session 2 lost its entry: %s (hits %d → %d)", again, hits, f.hits.Load())
	}
}

func TestReadAheadCarriesTheCallersUpstreamToken(t *testing.T) {
	type hit struct{ page, auth string }
	hits := make(chan hit, 16)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := r.URL.Query().Get("page")
		hits <- hit{page, r.Header.Get("Authorization")}
		w.Header().Set("Content-Type", "application/json")
		w.Header()["OData-Version"] = []string{"4.0"}
		next := ""
		if page == "0" {
			next = fmt.Sprintf(`,"@odata.nextLink":"http://%s/svc/Items?page=1"`, r.Host)
		}
		fmt.Fprintf(w, `{"page":%q,"value":[]%s}`, page, next)
	}))
	t.Cleanup(up.Close)
	b := newBridge(t, func(*idp.Provider) []Source { return nil }, func(o *Options) {
		relay, err := odata.NewRelay([]odata.Upstream{{
			Name: "k2", URL: up.URL + "/svc/", PublicBase: o.PublicURL + "/odata/k2/", ReadAhead: 1,
		}}, odata.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(relay.Close)
		feed, _ := relay.Feed("k2")
		o.Sources = []Source{{Name: "k2", Kind: "odata", Auth: AuthUser, Feed: feed}}
	})
	access, _ := b.signIn(t)
	_, key := (&accelFixture{bridge: b}).createKey(t, access)
	resp, body := b.get(t, "/odata/k2/Items?page=0", basicKey(key))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "/odata/k2/Items?page=1") {
		t.Fatalf("page 0: %d %s", resp.StatusCode, body)
	}
	first := <-hits
	var ahead hit
	select {
	case ahead = <-hits:
	case <-time.After(5 * time.Second):
		t.Fatal("page 1 was not read ahead")
	}
	if ahead.page != "1" || ahead.auth != first.auth || !strings.HasPrefix(ahead.auth, "Bearer ") {
		t.Errorf("read ahead %+v after %+v, want page 1 with the caller's own upstream token", ahead, first)
	}
	resp, body = b.get(t, "/odata/k2/Items?page=1", basicKey(key))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"page":"1"`) {
		t.Errorf("page 1: %d %s", resp.StatusCode, body)
	}
	select {
	case h := <-hits:
		t.Errorf("page 1 went upstream again: %+v", h)
	default:
	}
}

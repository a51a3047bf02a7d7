package connector

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// TestLearnedVersionIsShared: a version one replica learned is known to
// another replica and to the next start before either reads the feed, and
// nobody claims a version before anyone knows it.
func TestLearnedVersionIsShared(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("DataServiceVersion", "3.0;")
		w.Header().Set("Content-Type", "application/json;odata=minimalmetadata")
		io.WriteString(w, `{"odata.metadata":"x","value":[]}`)
	}))
	t.Cleanup(up.Close)
	var store *tokencache.Store
	// replica builds a bridge with a fresh relay on the shared store, as a
	// second replica or a restart does.
	replica := func(b *bridge) *httptest.Server {
		relay, err := odata.NewRelay([]odata.Upstream{{Name: "v3", URL: up.URL + "/svc/", PublicBase: b.url + "/odata/v3/"}}, odata.Options{})
		if err != nil {
			t.Fatal(err)
		}
		feed, _ := relay.Feed("v3")
		s, err := New(Options{
			PublicURL: b.url,
			Store:     store,
			Provider:  b.prov,
			Sources:   []Source{{Name: "v3", Kind: "odata", Auth: AuthNone, Feed: feed}},
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		return srv
	}
	b := newBridge(t, nil)
	store = b.store
	access, _ := b.signIn(t)
	version := func(srv *httptest.Server) any {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/sources", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list) != 1 {
			t.Fatalf("/api/sources: %v %v", list, err)
		}
		v, ok := list[0]["odata_version"]
		if !ok {
			t.Fatalf("/api/sources lacks odata_version: %v", list[0])
		}
		return v
	}

	a, other := replica(b), replica(b)
	if v := version(a); v != nil {
		t.Errorf("before any read: odata_version = %v, want null", v)
	}
	req, _ := http.NewRequest(http.MethodGet, a.URL+"/odata/v3/People", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed read: status %d", resp.StatusCode)
	}
	for name, srv := range map[string]*httptest.Server{"the replica that read": a, "another replica": other, "a restart": replica(b)} {
		if v := version(srv); v != "3.0" {
			t.Errorf("%s: odata_version = %v, want 3.0", name, v)
		}
	}
}

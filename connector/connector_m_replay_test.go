package connector

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/powerbi"
	"github.com/odata-bridge/bridge/powerbi/meval"
)

// TestConnectorMAgainstBridge evaluates the generated connector's own M
// (StartLogin, FinishLogin, Refresh, Logout) against a running bridge and a
// real OIDC provider, through to /api/sources and a relayed feed.
func TestConnectorMAgainstBridge(t *testing.T) {
	b := newBridge(t, nil)
	pq, err := powerbi.Connector{PublicURL: b.url}.PQ()
	if err != nil {
		t.Fatal(err)
	}
	// Power Query's Web.Contents, as real HTTP to the bridge.
	host := meval.Host{WebContents: func(r meval.Request) (*meval.Response, error) {
		req, err := http.NewRequest(r.Method, r.URL, bytes.NewReader(r.Body))
		if err != nil {
			return nil, err
		}
		for k, v := range r.Header {
			req.Header.Set(k, v)
		}
		resp, err := noRedirects.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return &meval.Response{Status: resp.StatusCode, Body: body}, err
	}}
	m, err := meval.Parse(pq, host)
	if err != nil {
		t.Fatal(err)
	}
	field := func(v meval.Value, name string) string {
		t.Helper()
		rec, ok := v.(*meval.Record)
		if !ok {
			t.Fatalf("%v is not a record", v)
		}
		f, ok := rec.Field(name)
		s, isText := f.(string)
		if !ok || !isText || s == "" {
			t.Fatalf("record %v: field %s = %v", rec.Names, name, f)
		}
		return s
	}

	// StartLogin → the sign-in window follows the redirects to Power BI's redirect URI.
	login, err := m.Call("StartLogin", b.url, "state-42", nil)
	if err != nil {
		t.Fatalf("StartLogin: %v", err)
	}
	loc, callback := field(login, "LoginUri"), ""
	for i := 0; i < 6 && callback == ""; i++ {
		resp, err := b.browser.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("GET %s: status %d, want 302", redact(loc), resp.StatusCode)
		}
		if loc = resp.Header.Get("Location"); strings.HasPrefix(loc, powerBIRedirect) {
			callback = loc
		}
	}
	if callback == "" {
		t.Fatal("the sign-in did not come back to Power BI's redirect URI")
	}

	// FinishLogin redeems the code with the verifier from Context.
	tokens, err := m.Call("FinishLogin", field(login, "Context"), callback, "state-42")
	if err != nil {
		t.Fatalf("FinishLogin: %v", err)
	}
	access, refresh := field(tokens, "access_token"), field(tokens, "refresh_token")
	if got := field(tokens, "token_type"); got != "Bearer" {
		t.Errorf("token_type = %q", got)
	}

	// The navigation table's request, then each source's relayed feed.
	resp, body := b.get(t, "/api/sources", bearer(access))
	var sources []struct{ Name, URL string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &sources) != nil || len(sources) == 0 {
		t.Fatalf("/api/sources: %d %s", resp.StatusCode, body)
	}
	for _, s := range sources {
		if !strings.HasPrefix(s.URL, b.url+"/") {
			t.Errorf("source %s: feed %s is outside the bridge, the connector refuses it", s.Name, s.URL)
			continue
		}
		if r, body := b.get(t, strings.TrimPrefix(s.URL, b.url), bearer(access)); r.StatusCode != http.StatusOK {
			t.Errorf("feed %s: %d %s", s.URL, r.StatusCode, body)
		}
	}

	// Refresh rotates the refresh token; the new access token works.
	again, err := m.Call("Refresh", b.url, refresh)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	access2 := field(again, "access_token")
	if field(again, "refresh_token") == refresh {
		t.Error("Refresh returned the same refresh token")
	}
	if r, body := b.get(t, "/odata/test/", bearer(access2)); r.StatusCode != http.StatusOK {
		t.Errorf("feed with the refreshed token: %d %s", r.StatusCode, body)
	}

	// Logout revokes the session behind the token.
	if page, err := m.Call("Logout", access2); err != nil || page != b.url+"/" {
		t.Fatalf("Logout = %v, %v", page, err)
	}
	if r, _ := b.get(t, "/odata/test/", bearer(access2)); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("feed after Logout: %d, want 401", r.StatusCode)
	}
}

package connector

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestPowerQuerySignInReplay replays what Power Query's OAuth functions do,
// from StartLogin to Logout.
func TestPowerQuerySignInReplay(t *testing.T) {
	b := newBridge(t, nil)
	verifier, challenge := pkce()

	// StartLogin → provider → callback → 302 to Power BI's redirect page.
	u := b.login(t, challenge)
	if got := u.Query().Get("state"); got != "S" {
		t.Fatalf("state = %q, want the connector's S", got)
	}
	code := u.Query().Get("code")
	if code == "" {
		t.Fatal("no code in the redirect to the connector")
	}

	// FinishLogin.
	r := b.redeem(t, code, verifier)
	if r.status != http.StatusOK {
		t.Fatalf("token: status %d %v", r.status, r.body)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	for k, v := range r.body {
		switch v.(type) {
		case string, float64:
		default:
			t.Errorf("token response field %s is %T; Power Query wants flat text and numbers", k, v)
		}
	}
	if r.body["token_type"] != "Bearer" {
		t.Errorf("token_type = %v, want Bearer", r.body["token_type"])
	}
	if e, _ := r.body["expires_in"].(float64); e <= 0 {
		t.Errorf("expires_in = %v, want > 0", r.body["expires_in"])
	}
	access := r.body["access_token"].(string)
	refresh := r.body["refresh_token"].(string)

	// A protected feed call relays with the provider's token, not the bridge's.
	resp, body := b.get(t, "/odata/test/People", bearer(access))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed: status %d %s", resp.StatusCode, body)
	}
	var echo map[string]string
	json.Unmarshal([]byte(body), &echo)
	up := echo["upstream_authorization"]
	if !strings.HasPrefix(up, "Bearer ") || strings.Contains(up, access) {
		t.Fatalf("upstream Authorization = %q, want the provider's bearer token", up)
	}

	// Refresh rotates the refresh token.
	r2 := b.postForm(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"powerbi"}})
	if r2.status != http.StatusOK {
		t.Fatalf("refresh: status %d %v", r2.status, r2.body)
	}
	access2, refresh2 := r2.body["access_token"].(string), r2.body["refresh_token"].(string)
	if refresh2 == "" || refresh2 == refresh {
		t.Fatal("refresh did not rotate the refresh token")
	}
	if resp, body := b.get(t, "/odata/test/People", bearer(access2)); resp.StatusCode != http.StatusOK {
		t.Fatalf("feed after refresh: status %d %s", resp.StatusCode, body)
	}

	// Replaying the old refresh token after the grace window revokes the family.
	b.clock.Advance(31 * time.Second)
	r3 := b.postForm(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"powerbi"}})
	if r3.status != http.StatusBadRequest || r3.body["error"] != "invalid_grant" {
		t.Fatalf("replayed refresh token: %d %v, want 400 invalid_grant", r3.status, r3.body)
	}
	b.clock.Advance(10 * time.Second) // past the hot cache
	if resp, _ := b.get(t, "/odata/test/People", bearer(access2)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("feed after refresh-token reuse: status %d, want 401", resp.StatusCode)
	}

	// A new sign-in, then Logout through /oauth/revoke.
	access4, _ := b.signIn(t)
	if resp, _ := b.get(t, "/odata/test/People", bearer(access4)); resp.StatusCode != http.StatusOK {
		t.Fatalf("feed after new sign-in: status %d", resp.StatusCode)
	}
	if rv := b.postForm(t, "/oauth/revoke", url.Values{"token": {access4}}); rv.status != http.StatusOK {
		t.Fatalf("revoke: status %d", rv.status)
	}
	b.clock.Advance(10 * time.Second)
	resp, body = b.get(t, "/odata/test/People", bearer(access4))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("feed after revoke: status %d, want 401", resp.StatusCode)
	}
	if ch := strings.Join(resp.Header.Values("WWW-Authenticate"), ", "); !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, "Basic") {
		t.Errorf("WWW-Authenticate = %q, want Basic and Bearer invalid_token challenges", ch)
	}
	var oerr struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal([]byte(body), &oerr) != nil || oerr.Error.Code == "" {
		t.Errorf("401 body = %s, want an OData error", body)
	}

	// Nothing secret reached the logs.
	logs := b.logs.String()
	for name, secret := range map[string]string{
		"bridge access token": access, "bridge refresh token": refresh, "rotated refresh token": refresh2,
		"code": code, "verifier": verifier, "client secret": b.idp.m.ClientSecret, "provider token": strings.TrimPrefix(up, "Bearer "),
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain the %s", name)
		}
	}
	if !strings.Contains(logs, `"msg":"request"`) {
		t.Error("no request was logged; the log scan proves nothing")
	}
}

func TestAuthorizeRefusesBadRedirects(t *testing.T) {
	b := newBridge(t, nil)
	_, challenge := pkce()
	for _, redirect := range []string{
		"https://oauth.powerbi.com.evil.com/views/oauthredirect.html",
		"https://evil.com/?https://oauth.powerbi.com/views/oauthredirect.html",
		"https://oauth.powerbi.com@evil.com/views/oauthredirect.html",
		"https://OAUTH.POWERBI.COM/views/oauthredirect.html",
		"https://oauth.powerbi.com/views/oauthredirect.html/",
		"https://oauth.powerbi.com/views/oauthredirect.html?x=1",
		"https://oauth.powerbi.com/views/oauthredirect.html#x",
		"https://oauth.powerbi.com/%09/evil.com",
		"https://oauth.powerbi.com/\\evil.com",
		"http://oauth.powerbi.com/views/oauthredirect.html",
		"",
	} {
		t.Run(redirect, func(t *testing.T) {
			q := connectorQuery(challenge)
			q.Set("redirect_uri", redirect)
			resp, body := b.get(t, "/oauth/authorize?"+q.Encode(), nil)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("redirected to %q; a bad redirect URI must never be redirected to", loc)
			}
			if !strings.Contains(body, "redirect URI is not registered") {
				t.Errorf("body does not explain the error: %s", body)
			}
		})
	}
	t.Run("unknown client", func(t *testing.T) {
		q := connectorQuery(challenge)
		q.Set("client_id", "evil")
		resp, _ := b.get(t, "/oauth/authorize?"+q.Encode(), nil)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("status %d, Location %q; want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("repeated redirect_uri", func(t *testing.T) {
		q := connectorQuery(challenge)
		q.Add("redirect_uri", "https://evil.com/")
		resp, _ := b.get(t, "/oauth/authorize?"+q.Encode(), nil)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("status %d, Location %q; want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

func TestAuthorizeRequiresS256(t *testing.T) {
	b := newBridge(t, nil)
	_, challenge := pkce()
	for name, edit := range map[string]func(url.Values){
		"plain":             func(q url.Values) { q.Set("code_challenge_method", "plain") },
		"missing challenge": func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") },
		"missing method":    func(q url.Values) { q.Del("code_challenge_method") },
		"malformed":         func(q url.Values) { q.Set("code_challenge", "short") },
		"token response":    func(q url.Values) { q.Set("response_type", "token") },
	} {
		t.Run(name, func(t *testing.T) {
			q := connectorQuery(challenge)
			edit(q)
			resp, _ := b.get(t, "/oauth/authorize?"+q.Encode(), nil)
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), powerBIRedirect) {
				t.Fatalf("status %d to %q, want an error redirect to the client", resp.StatusCode, loc)
			}
			want := "invalid_request"
			if name == "token response" {
				want = "unsupported_response_type"
			}
			if got := loc.Query().Get("error"); got != want {
				t.Errorf("error = %q, want %q", got, want)
			}
			if loc.Query().Get("state") != "S" || loc.Query().Get("code") != "" {
				t.Errorf("redirect %v: want the client's state and no code", loc.Query())
			}
		})
	}
	if n := b.idp.tokenCalls.Load(); n != 0 {
		t.Errorf("provider token endpoint called %d times, want 0", n)
	}
}

// providerCallback runs authorize and the provider's step and returns the
// callback URL the provider sends the browser to, without following it.
func (b *bridge) providerCallback(t *testing.T, challenge string) string {
	t.Helper()
	resp, err := b.browser.Get(b.url + "/oauth/authorize?" + connectorQuery(challenge).Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	idpResp, err := noRedirects.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	idpResp.Body.Close()
	cb := idpResp.Header.Get("Location")
	if !strings.HasPrefix(cb, b.url+"/oauth/callback?") {
		t.Fatalf("provider redirected to %q, want the bridge's callback", redact(cb))
	}
	return cb
}

func TestCallbackState(t *testing.T) {
	b := newBridge(t, nil)
	_, challenge := pkce()
	cases := []struct {
		name string
		url  func() string
	}{
		{"missing", func() string {
			u, _ := url.Parse(b.providerCallback(t, challenge))
			q := u.Query()
			q.Del("state")
			u.RawQuery = q.Encode()
			return u.String()
		}},
		{"wrong", func() string {
			u, _ := url.Parse(b.providerCallback(t, challenge))
			q := u.Query()
			q.Set("state", "forged-"+q.Get("state"))
			u.RawQuery = q.Encode()
			return u.String()
		}},
		{"expired", func() string {
			cb := b.providerCallback(t, challenge)
			b.clock.Advance(11 * time.Minute)
			return cb
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := b.idp.tokenCalls.Load()
			resp, err := b.browser.Get(tc.url())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode > 499 || resp.Header.Get("Location") != "" {
				t.Errorf("status %d, Location %q; want 4xx and no redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
			if n := b.idp.tokenCalls.Load() - before; n != 0 {
				t.Errorf("provider token endpoint called %d times, want 0", n)
			}
		})
	}
	t.Run("replayed", func(t *testing.T) {
		cb := b.providerCallback(t, challenge)
		resp, err := b.browser.Get(cb)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("first callback: status %d, want 302", resp.StatusCode)
		}
		before := b.idp.tokenCalls.Load()
		resp, err = b.browser.Get(cb)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("replayed callback: status %d, want 400", resp.StatusCode)
		}
		if n := b.idp.tokenCalls.Load() - before; n != 0 {
			t.Errorf("provider token endpoint called %d times on replay, want 0", n)
		}
	})
}

func TestCallbackPassesProviderError(t *testing.T) {
	b := newBridge(t, nil)
	_, challenge := pkce()
	u, _ := url.Parse(b.providerCallback(t, challenge))
	q := u.Query()
	q.Del("code")
	q.Set("error", "access_denied")
	q.Set("error_description", "the user said no")
	u.RawQuery = q.Encode()
	resp, err := b.browser.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), powerBIRedirect) {
		t.Fatalf("status %d to %q, want an error redirect to the client", resp.StatusCode, loc)
	}
	if loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "S" {
		t.Errorf("redirect query %v, want error=access_denied and state=S", loc.Query())
	}
}

func TestTokenCodeChecks(t *testing.T) {
	b := newBridge(t, nil)
	type tc struct {
		name  string
		edit  func(f url.Values, verifier string)
		wait  time.Duration
		want  string
		wantS int
	}
	cases := []tc{
		{name: "wrong verifier", edit: func(f url.Values, _ string) { v, _ := pkce(); f.Set("code_verifier", v) }, want: "invalid_grant", wantS: 400},
		{name: "missing verifier", edit: func(f url.Values, _ string) { f.Del("code_verifier") }, want: "invalid_grant", wantS: 400},
		{name: "malformed verifier", edit: func(f url.Values, _ string) { f.Set("code_verifier", "short") }, want: "invalid_grant", wantS: 400},
		{name: "other redirect_uri", edit: func(f url.Values, _ string) { f.Set("redirect_uri", powerBIRedirect+"?x") }, want: "invalid_grant", wantS: 400},
		{name: "unknown client_id", edit: func(f url.Values, _ string) { f.Set("client_id", "evil") }, want: "invalid_client", wantS: 401},
		{name: "expired", wait: 61 * time.Second, want: "invalid_grant", wantS: 400},
		{name: "no code", edit: func(f url.Values, _ string) { f.Del("code") }, want: "invalid_request", wantS: 400},
		{name: "unknown grant", edit: func(f url.Values, _ string) { f.Set("grant_type", "password") }, want: "unsupported_grant_type", wantS: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			verifier, challenge := pkce()
			code := b.login(t, challenge).Query().Get("code")
			b.clock.Advance(c.wait)
			f := url.Values{
				"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {powerBIRedirect},
				"client_id": {"powerbi"}, "code_verifier": {verifier},
			}
			if c.edit != nil {
				c.edit(f, verifier)
			}
			r := b.postForm(t, "/oauth/token", f)
			if r.status != c.wantS || r.body["error"] != c.want {
				t.Errorf("got %d %v, want %d %s", r.status, r.body, c.wantS, c.want)
			}
		})
	}

	t.Run("form only", func(t *testing.T) {
		resp, err := http.Post(b.url+"/oauth/token", "application/json", strings.NewReader(`{"grant_type":"authorization_code"}`))
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Errorf("JSON body: %d %v, want 400 invalid_request", resp.StatusCode, body)
		}
	})

	t.Run("code redeemed twice revokes the first tokens", func(t *testing.T) {
		verifier, challenge := pkce()
		code := b.login(t, challenge).Query().Get("code")
		first := b.redeem(t, code, verifier)
		if first.status != http.StatusOK {
			t.Fatalf("first redemption: %d %v", first.status, first.body)
		}
		second := b.redeem(t, code, verifier)
		if second.status != http.StatusBadRequest || second.body["error"] != "invalid_grant" {
			t.Fatalf("second redemption: %d %v, want 400 invalid_grant", second.status, second.body)
		}
		b.clock.Advance(10 * time.Second)
		if resp, _ := b.get(t, "/odata/test/x", bearer(first.body["access_token"].(string))); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("first redemption's token after a second redemption: status %d, want 401", resp.StatusCode)
		}
	})
}

func TestProviderFailuresAtRefresh(t *testing.T) {
	b := newBridge(t, nil)
	refreshFails := func(status int, body string) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			r.ParseForm()
			if r.PostForm.Get("grant_type") != "refresh_token" {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
			return true
		}
	}

	t.Run("provider down keeps the session", func(t *testing.T) {
		access, refresh := b.signIn(t)
		b.clock.Advance(15 * time.Minute) // the provider token (10 min) needs a refresh
		b.idp.setFail(refreshFails(http.StatusInternalServerError, `{"error":"server_error"}`))
		resp, _ := b.get(t, "/odata/test/x", bearer(access))
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("feed with the provider down: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		r := b.postForm(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Errorf("refresh grant with the provider down: %d %v, want 503 with Retry-After", r.status, r.body)
		}
		b.idp.setFail(nil)
		// The retried refresh inside the grace window gets the same answer.
		r = b.postForm(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
		if r.status != http.StatusOK {
			t.Fatalf("refresh after recovery: %d %v, want 200", r.status, r.body)
		}
		if resp, _ := b.get(t, "/odata/test/x", bearer(r.body["access_token"].(string))); resp.StatusCode != http.StatusOK {
			t.Errorf("feed after recovery: status %d, want 200", resp.StatusCode)
		}
	})

	t.Run("provider timeout keeps the session", func(t *testing.T) {
		access, _ := b.signIn(t)
		b.clock.Advance(15 * time.Minute)
		b.idp.setFail(func(w http.ResponseWriter, r *http.Request) bool {
			hj, ok := w.(http.Hijacker)
			if !ok {
				return false
			}
			conn, _, _ := hj.Hijack()
			conn.Close() // the connection drops without an answer
			return true
		})
		resp, _ := b.get(t, "/odata/test/x", bearer(access))
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("feed with the provider dropping connections: status %d, want 503", resp.StatusCode)
		}
		b.idp.setFail(nil)
		if resp, _ := b.get(t, "/odata/test/x", bearer(access)); resp.StatusCode != http.StatusOK {
			t.Errorf("feed after recovery: status %d, want 200", resp.StatusCode)
		}
	})

	t.Run("invalid_grant ends the session", func(t *testing.T) {
		_, refresh := b.signIn(t)
		b.clock.Advance(15 * time.Minute)
		b.idp.setFail(refreshFails(http.StatusBadRequest, `{"error":"invalid_grant","error_description":"revoked"}`))
		defer b.idp.setFail(nil)
		r := b.postForm(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
		if r.status != http.StatusBadRequest || r.body["error"] != "invalid_grant" {
			t.Errorf("refresh grant after provider invalid_grant: %d %v, want 400 invalid_grant", r.status, r.body)
		}
	})
}

func TestLargeProviderTokens(t *testing.T) {
	b := newBridge(t, nil)
	big := strings.Repeat("A", 9000)
	// Entra tokens with many groups exceed 8 KiB; pad the provider's tokens.
	b.idp.setFail(padTokens(b, big))
	defer b.idp.setFail(nil)
	access, _ := b.signIn(t)
	resp, body := b.get(t, "/odata/test/x", bearer(access))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed: status %d %s", resp.StatusCode, body)
	}
	var echo map[string]string
	json.Unmarshal([]byte(body), &echo)
	if len(echo["upstream_authorization"]) < 9000 {
		t.Errorf("upstream token is %d bytes, want the padded provider token (> 9000)", len(echo["upstream_authorization"]))
	}
}

// padTokens makes the provider return access tokens over 8 KiB.
func padTokens(b *bridge, pad string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		rec := &capture{header: http.Header{}}
		b.idp.m.Token(rec, r) // the provider's own handler, past this hook
		var tr map[string]any
		if json.Unmarshal(rec.body, &tr) == nil && tr["access_token"] != nil {
			tr["access_token"] = tr["access_token"].(string) + pad
			tr["expires_in"] = int64(tr["expires_in"].(float64) / 1e9)
			rec.body, _ = json.Marshal(tr)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.status)
		w.Write(rec.body)
		return true
	}
}

type capture struct {
	header http.Header
	status int
	body   []byte
}

func (c *capture) Header() http.Header         { return c.header }
func (c *capture) WriteHeader(s int)           { c.status = s }
func (c *capture) Write(p []byte) (int, error) { c.body = append(c.body, p...); return len(p), nil }

func TestAuthServerMetadata(t *testing.T) {
	b := newBridge(t, nil)
	resp, body := b.get(t, "/.well-known/oauth-authorization-server", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var md map[string]any
	json.Unmarshal([]byte(body), &md)
	if md["issuer"] != b.url || md["token_endpoint"] != b.url+"/oauth/token" || md["authorization_endpoint"] != b.url+"/oauth/authorize" {
		t.Errorf("metadata endpoints wrong: %v", md)
	}
	if m, _ := md["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
		t.Errorf("code_challenge_methods_supported = %v, want [S256]", md["code_challenge_methods_supported"])
	}
}

func TestForwardedHeadersNotTrustedByDefault(t *testing.T) {
	b := newBridge(t, nil)
	b.get(t, "/healthz", http.Header{"X-Forwarded-For": {"203.0.113.9"}})
	if strings.Contains(b.logs.String(), "203.0.113.9") {
		t.Error("X-Forwarded-For from an untrusted peer was believed")
	}
}

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
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
)

// hostileRig is one bridge on a private Redis in front of a recording
// upstream, plus a sentinel server that no request may ever reach.
type hostileRig struct {
	world    *demo.World
	rs       *redisServer
	up       *faultUpstream
	br       *bridge
	addr     string // host:port of the bridge
	sentinel *httptest.Server
	reached  atomic.Int64 // requests the sentinel received
	tok      tokens
	key      feedKey
}

func startHostileRig(t *testing.T) *hostileRig {
	t.Helper()
	rig := &hostileRig{world: startWorld(t, demo.Options{})}
	rig.sentinel = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rig.reached.Add(1)
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(rig.sentinel.Close)
	rig.rs = startRedis(t)
	rig.up = startFaultUpstream(t)
	rig.br = startBridge(t, bridgeConfig{World: rig.world, RedisURL: rig.rs.URL(), EncryptionKeys: newEncryptionKeys("sys1"),
		Sources: []source{{Name: "faulty", URL: rig.up.Base(), Auth: "user"}}})
	rig.addr = strings.TrimPrefix(rig.br.URL, "http://")
	rig.tok = mustSignIn(t, rig.br.URL, "alice")
	rig.key = mustCreateKey(t, rig.br.URL, rig.tok.Access)
	return rig
}

// rawResponse is the answer to a request written byte for byte.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// raw sends req, a whole HTTP/1.1 request, on a new connection, so that the
// request line and headers reach the bridge exactly as written.
func (rig *hostileRig) raw(t *testing.T, req string) rawResponse {
	t.Helper()
	conn, err := net.DialTimeout("tcp", rig.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	// Write while reading: the bridge answers an oversized request (413,
	// 431) before reading all of it and then closes the connection, so a
	// write of the rest may fail with a reset after the answer has come.
	// Only the answer counts.
	written := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, req)
		written <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response to %.120q: %v (write: %v)", req, err, <-written)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return rawResponse{resp.StatusCode, resp.Header, body}
}

// request builds a request with the usual headers and any extra ones.
func (rig *hostileRig) request(method, target string, headers []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, rig.addr)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == http.MethodPost {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// redisKeys lists every key in the rig's private Redis.
func (rig *hostileRig) redisKeys(t *testing.T) []string {
	t.Helper()
	c := rig.rs.client()
	defer c.Close()
	keys, err := c.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// hostileCase is one hostile request that must get a 4xx.
type hostileCase struct {
	name string
	req  string
	want []int // acceptable statuses; zero: any 4xx
}

func randomToken(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/="
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestHostileInput sends hostile requests to a bridge: every one gets a
// clear 4xx, nothing is written to the token store, no request reaches a
// host other than the source's own upstream, or leaves the source's base.
func TestHostileInput(t *testing.T) {
	rig := startHostileRig(t)
	sentinel := strings.TrimPrefix(rig.sentinel.URL, "http://")
	auth := "Authorization: Bearer " + rig.tok.Access
	feed := "/odata/faulty/Items"
	ua := func(v string) []string { return []string{"User-Agent: " + v} }

	cases := []hostileCase{
		// Oversized headers, URLs and bodies.
		{"100 KB header", rig.request("GET", feed, []string{auth, "X-Big: " + strings.Repeat("a", 100<<10)}, ""), []int{431}},
		{"100 KB URL", rig.request("GET", feed+"?$filter="+strings.Repeat("a", 100<<10), []string{auth}, ""), []int{414, 431}},
		{"1 MB token request", rig.request("POST", "/oauth/token", []string{"Content-Type: application/x-www-form-urlencoded"}, "grant_type=refresh_token&refresh_token="+strings.Repeat("a", 1<<20)), []int{400, 413}},
		{"1 MB revocation", rig.request("POST", "/oauth/revoke", []string{"Content-Type: application/x-www-form-urlencoded"}, "token="+strings.Repeat("a", 1<<20)), []int{400, 413}},
		{"1 MB key name", rig.request("POST", "/api/keys", []string{auth, "Content-Type: application/json"}, `{"name":"`+strings.Repeat("a", 1<<20)+`"}`), []int{400, 413}},
		{"1 MB key body of white space", rig.request("POST", "/api/keys", []string{auth, "Content-Type: application/json"}, `{"name":"big"`+strings.Repeat(" ", 1<<20)+`}`), []int{400, 413}},

		// Invalid UTF-8, NUL and CR LF in parameters.
		{"NUL in client_id", rig.request("GET", "/oauth/authorize?response_type=code&client_id=powerbi%00&redirect_uri="+url.QueryEscape(powerBIRedirect), nil, ""), []int{400}},
		{"NUL in the feed path", rig.request("GET", feed+"%00", []string{auth}, ""), []int{400}},
		{"CR LF in the feed path", rig.request("GET", feed+"%0d%0aX-Injected:%201", []string{auth}, ""), []int{400}},
		{"raw CR LF in the request line", "GET " + feed + "\r\nX-Injected: 1 HTTP/1.1\r\nHost: " + rig.addr + "\r\n\r\n", nil},
		{"NUL byte in the request line", "GET " + feed + "\x00 HTTP/1.1\r\nHost: " + rig.addr + "\r\n\r\n", []int{400}},
		{"invalid UTF-8 in a key name", rig.request("POST", "/api/keys", []string{auth, "Content-Type: application/json"}, "{\"name\":\"\xff\xfe\"}"), []int{400}},
		{"NUL in a key name", rig.request("POST", "/api/keys", []string{auth, "Content-Type: application/json"}, `{"name":"a\u0000b"}`), []int{400}},
		{"CR LF in a key name", rig.request("POST", "/api/keys", []string{auth, "Content-Type: application/json"}, `{"name":"a\r\nSet-Cookie: x=1"}`), []int{400}},
		{"invalid UTF-8 in a refresh token", rig.request("POST", "/oauth/token", []string{"Content-Type: application/x-www-form-urlencoded"}, "grant_type=refresh_token&client_id=powerbi&refresh_token=%ff%fe%00"), []int{400}},
		{"CR LF in the client's state", rig.request("GET", "/oauth/authorize?response_type=code&client_id=powerbi&code_challenge_method=S256&code_challenge="+strings.Repeat("A", 43)+"&state=x%0d%0aSet-Cookie:%20pwn=1&redirect_uri="+url.QueryEscape(powerBIRedirect), nil, ""), []int{302}},
		{"NUL in the code challenge", rig.request("GET", "/oauth/authorize?response_type=code&client_id=powerbi&code_challenge_method=S256&code_challenge="+strings.Repeat("A", 42)+"%00&state=s&redirect_uri="+url.QueryEscape(powerBIRedirect), nil, ""), []int{302}},

		// Malformed Basic and Bearer.
		{"Basic not base64", rig.request("GET", feed, []string{"Authorization: Basic !!!"}, ""), []int{401}},
		{"Basic without a colon", rig.request("GET", feed, []string{"Authorization: Basic " + b64("obk_nocolon")}, ""), []int{401}},
		{"Basic with an empty password", rig.request("GET", feed, []string{"Authorization: Basic " + b64("alice:")}, ""), []int{401}},
		{"Basic with a made-up feed key", rig.request("GET", feed, []string{"Authorization: Basic " + b64("x:obk_"+randomToken(40))}, ""), []int{401}},
		{"Basic with invalid UTF-8", rig.request("GET", feed, []string{"Authorization: Basic " + b64("x:obk_\xff\xfe")}, ""), []int{401}},
		{"Bearer with two tokens", rig.request("GET", feed, []string{"Authorization: Bearer a b"}, ""), []int{401}},
		{"two Authorization headers", rig.request("GET", feed, []string{auth, "Authorization: Basic " + b64("x:"+rig.key.Key)}, ""), []int{401}},
		{"unknown scheme", rig.request("GET", feed, []string{"Authorization: Digest username=alice"}, ""), []int{401}},
		{"scheme only", rig.request("GET", feed, []string{"Authorization: Bearer"}, ""), []int{401}},
		{"api_key twice", rig.request("GET", feed+"?api_key="+rig.key.Key+"&api_key="+rig.key.Key, nil, ""), []int{401}},
		{"empty api_key", rig.request("GET", feed+"?api_key=", nil, ""), []int{401}},
		{"60 KB bearer", rig.request("GET", feed, []string{"Authorization: Bearer " + randomToken(60<<10)}, ""), []int{401, 431}},

		// Path traversal and encoded traversal toward the upstream.
		{"dot-dot", rig.request("GET", "/odata/faulty/../secret", []string{auth}, ""), []int{400}},
		{"encoded dot-dot", rig.request("GET", "/odata/faulty/%2e%2e/secret", []string{auth}, ""), []int{400}},
		{"encoded dot-dot and slash", rig.request("GET", "/odata/faulty/%2e%2e%2fsecret", []string{auth}, ""), []int{400}},
		{"double-encoded dot-dot", rig.request("GET", "/odata/faulty/%252e%252e%252fsecret", []string{auth}, ""), []int{400}},
		{"half-encoded dot-dot", rig.request("GET", "/odata/faulty/.%2e/secret", []string{auth}, ""), []int{400}},
		{"dot-dot after a segment", rig.request("GET", "/odata/faulty/Items/..%2f..%2fsecret", []string{auth}, ""), []int{400}},
		{"backslash dot-dot", rig.request("GET", "/odata/faulty/..%5csecret", []string{auth}, ""), []int{400}},
		{"raw backslash", rig.request("GET", `/odata/faulty/..\secret`, []string{auth}, ""), []int{400}},
		{"dot-dot in the source name", rig.request("GET", "/odata/../faulty/Items", []string{auth}, ""), []int{400, 404}},

		// Absolute URLs and //host paths: nothing may reach the sentinel.
		{"absolute URL in the path", rig.request("GET", "/odata/faulty/http://"+sentinel+"/x", []string{auth}, ""), []int{400}},
		{"encoded absolute URL in the path", rig.request("GET", "/odata/faulty/http:%2f%2f"+sentinel+"%2fx", []string{auth}, ""), []int{400}},
		{"//host in the path", rig.request("GET", "/odata/faulty//"+sentinel+"/x", []string{auth}, ""), []int{400}},
		{"encoded //host in the path", rig.request("GET", "/odata/faulty/%2f%2f"+sentinel+"/x", []string{auth}, ""), []int{400}},
		{"absolute-form request target", fmt.Sprintf("GET http://%s%s HTTP/1.1\r\nHost: %s\r\n\r\n", sentinel, feed, sentinel), []int{401}},
		{"request target //host", rig.request("GET", "//"+sentinel+feed, []string{auth}, ""), []int{400, 404}},
		{"Host of the sentinel", fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", feed, sentinel), []int{401}},

		// Spoofed X-Forwarded-* from a peer that is not a trusted proxy.
		{"spoofed X-Forwarded-For", rig.request("GET", feed, []string{"X-Forwarded-For: 6.6.6.6", "X-Real-IP: 6.6.6.6", "Forwarded: for=6.6.6.6;host=evil.example;proto=https", "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https"}, ""), []int{401}},

		// A health-check path or User-Agent used to skip authentication.
		{"kube-probe", rig.request("GET", feed, ua("kube-probe/1.30"), ""), []int{401}},
		{"ELB health checker", rig.request("GET", feed, ua("ELB-HealthChecker/2.0"), ""), []int{401}},
		{"Google health check", rig.request("GET", feed, ua("GoogleHC/1.0"), ""), []int{401}},
		{"Prometheus", rig.request("GET", "/api/keys", ua("Prometheus/2.53"), ""), []int{401}},
		{"health path under the feed", rig.request("GET", "/odata/faulty/healthz", nil, ""), []int{401}},
		{"health path before dot-dot", rig.request("GET", "/healthz/../odata/faulty/Items", nil, ""), []int{400, 404}},
		{"metrics path before dot-dot", rig.request("GET", "/metrics/../api/keys", nil, ""), []int{400, 404}},
		{"asset path before dot-dot", rig.request("GET", "/assets/page.js/../../api/keys", nil, ""), []int{400, 404}},
		{"health path with a semicolon", rig.request("GET", "/odata/faulty/Items;/healthz", nil, ""), []int{401}},

		// Query strings and fragments used to reach auth-exempt routes.
		{"health path in the query", rig.request("GET", feed+"?/healthz", nil, ""), []int{401}},
		{"health path in a fragment", rig.request("GET", feed+"#/healthz", nil, ""), []int{400, 401}},
		{"encoded fragment", rig.request("GET", feed+"%23/healthz", nil, ""), []int{401}},
		{"keys with an asset suffix", rig.request("GET", "/api/keys?x=.css", nil, ""), []int{401}},
		{"keys with a path suffix", rig.request("GET", "/api/keys/x.js", nil, ""), []int{404, 401, 405}},
	}
	// Tokens of every length up to 600, and some far longer.
	for n := 1; n <= 600; n++ {
		cases = append(cases, hostileCase{fmt.Sprintf("bearer of %d bytes", n), rig.request("GET", feed, []string{"Authorization: Bearer " + randomToken(n)}, ""), []int{401}})
	}
	for _, n := range []int{1 << 10, 4 << 10, 16 << 10, 32 << 10} {
		cases = append(cases, hostileCase{fmt.Sprintf("feed key of %d bytes", n), rig.request("GET", feed, []string{"Authorization: Basic " + b64("x:obk_"+randomToken(n))}, ""), []int{401}})
	}

	before := rig.redisKeys(t)
	for _, tc := range cases {
		r := rig.raw(t, tc.req)
		ok := r.status >= 400 && r.status < 500
		if tc.want != nil {
			ok = slices.Contains(tc.want, r.status)
		}
		if !ok {
			t.Errorf("%s: status %d, want %v: %.200s", tc.name, r.status, tc.want, r.body)
		}
		if r.status == http.StatusFound {
			checkRedirectSafe(t, tc.name, r.header.Get("Location"), rig)
			if loc, _ := url.Parse(r.header.Get("Location")); loc == nil || loc.Query().Get("error") == "" {
				t.Errorf("%s: redirect %q carries no error", tc.name, r.header.Get("Location"))
			}
		}
		if r.header.Get("X-Injected") != "" || len(r.header.Values("Set-Cookie")) > 0 {
			t.Errorf("%s: response has an injected header or a cookie: %v", tc.name, r.header)
		}
	}
	after := rig.redisKeys(t)
	if diff := keysDiff(withoutLedger(before), withoutLedger(after)); diff != "" {
		t.Errorf("hostile requests changed the token store:\n%s", diff)
	}
	if n := rig.reached.Load(); n != 0 {
		t.Errorf("the sentinel server received %d requests; no request may leave for another host", n)
	}
	if esc := rig.up.escapes(); len(esc) > 0 {
		t.Errorf("requests left the source's base at the upstream: %q", esc)
	}
	// The victim's own credentials still work, and nothing else appeared.
	if r := get(t, rig.br.URL+feed, bearer(rig.tok.Access)); r.Status != http.StatusOK {
		t.Errorf("the signed-in user's feed after the hostile requests: status %d", r.Status)
	}
	listing := get(t, rig.br.URL+"/api/keys", bearer(rig.tok.Access))
	var listed []json.RawMessage
	if json.Unmarshal(listing.Body, &listed) != nil || len(listed) != 1 {
		t.Errorf("feed keys after the hostile requests: %s; want exactly the one created", listing.Body)
	}
	// Spoofed forwarding headers do not move rewritten links off the bridge.
	r := rig.raw(t, rig.request("GET", feed, []string{auth, "X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https", "Forwarded: host=evil.example;proto=https"}, ""))
	var page struct {
		Next string `json:"@odata.nextLink"`
	}
	if json.Unmarshal(r.body, &page) != nil || !strings.HasPrefix(page.Next, rig.br.URL+"/odata/faulty/") {
		t.Errorf("next link with spoofed forwarding headers: %q (status %d), want it under %s/odata/faulty/", page.Next, r.status, rig.br.URL)
	}
	// An untrusted peer's X-Forwarded-For never becomes the client address.
	if log := rig.br.logText(t); strings.Contains(log, "6.6.6.6") || strings.Contains(log, "evil.example") {
		t.Error("the bridge logged a spoofed X-Forwarded-* value as if it were true")
	}
}

// keysDiff describes keys added or removed.
// withoutLedger drops the operators' records (usage, refreshes, audit
// trail): a request that passed authorization is counted, whatever its
// answer, and that is not a change of sessions, keys or codes.
func withoutLedger(keys []string) []string {
	return slices.DeleteFunc(slices.Clone(keys), func(k string) bool {
		for _, p := range []string{"bridge:usage:", "bridge:refreshes:", "bridge:{runs}", "bridge:audit", "bridge:first:"} {
			if strings.HasPrefix(k, p) {
				return true
			}
		}
		return false
	})
}

func keysDiff(before, after []string) string {
	var b strings.Builder
	for _, k := range after {
		if !slices.Contains(before, k) {
			fmt.Fprintf(&b, "  added %s\n", k)
		}
	}
	for _, k := range before {
		if !slices.Contains(after, k) {
			fmt.Fprintf(&b, "  removed %s\n", k)
		}
	}
	return b.String()
}

// checkRedirectSafe fails unless loc stays on the bridge (a path, not
// "//host" or "/\host"), goes to the identity provider, or goes to the
// client's registered redirect URI.
func checkRedirectSafe(t *testing.T, name, loc string, rig *hostileRig) {
	t.Helper()
	if strings.HasPrefix(loc, "/") {
		if strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, `/\`) {
			t.Errorf("%s: redirect to %q leaves the bridge", name, loc)
		}
		return
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Errorf("%s: unparsable redirect %q", name, loc)
		return
	}
	idp, _ := url.Parse(rig.world.Issuer)
	switch {
	case u.Scheme+"://"+u.Host == rig.br.URL:
	case u.Host == idp.Host:
		if got := u.Query().Get("redirect_uri"); got != rig.br.URL+"/oauth/callback" {
			t.Errorf("%s: the identity provider is told to return to %q, want %q", name, got, rig.br.URL+"/oauth/callback")
		}
	case strings.HasPrefix(loc, powerBIRedirect+"?") && u.Host == "oauth.powerbi.com":
	default:
		t.Errorf("%s: open redirect to %q", name, loc)
	}
}

// TestOpenRedirects tries every redirect the bridge makes with hostile
// parameters and headers: each ends on the bridge, at the identity provider
// with the bridge's own callback, or at the client's registered redirect URI.
func TestOpenRedirects(t *testing.T) {
	rig := startHostileRig(t)
	authorize := func(redirect string, extra ...string) string {
		q := "response_type=code&client_id=powerbi&state=s&code_challenge_method=S256&code_challenge=" + strings.Repeat("A", 43) +
			"&redirect_uri=" + url.QueryEscape(redirect)
		for _, e := range extra {
			q += "&" + e
		}
		return "/oauth/authorize?" + q
	}
	spoof := []string{"X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https", "Forwarded: host=evil.example"}
	for _, tc := range []struct {
		name    string
		req     string
		want    int
		wantLoc bool
	}{
		{"unregistered redirect URI", rig.request("GET", authorize("https://evil.example/cb"), nil, ""), 400, false},
		{"look-alike host", rig.request("GET", authorize("https://oauth.powerbi.com.evil.example/views/oauthredirect.html"), nil, ""), 400, false},
		{"user info", rig.request("GET", authorize("https://oauth.powerbi.com@evil.example/views/oauthredirect.html"), nil, ""), 400, false},
		{"longer path", rig.request("GET", authorize(powerBIRedirect+".evil"), nil, ""), 400, false},
		{"extra query", rig.request("GET", authorize(powerBIRedirect+"?next=https://evil.example"), nil, ""), 400, false},
		{"fragment", rig.request("GET", authorize(powerBIRedirect+"#https://evil.example"), nil, ""), 400, false},
		{"other case", rig.request("GET", authorize("https://OAUTH.powerbi.com/views/oauthredirect.html"), nil, ""), 400, false},
		{"dot segments", rig.request("GET", authorize("https://oauth.powerbi.com/views/../views/oauthredirect.html"), nil, ""), 400, false},
		{"scheme-relative", rig.request("GET", authorize("//evil.example/cb"), nil, ""), 400, false},
		{"javascript", rig.request("GET", authorize("javascript:alert(1)"), nil, ""), 400, false},
		{"two redirect URIs", rig.request("GET", authorize(powerBIRedirect, "redirect_uri="+url.QueryEscape("https://evil.example/")), nil, ""), 400, false},
		{"unknown client", rig.request("GET", strings.Replace(authorize(powerBIRedirect), "client_id=powerbi", "client_id=evil", 1), nil, ""), 400, false},
		{"registered URI, spoofed forwarding headers", rig.request("GET", authorize(powerBIRedirect), spoof, ""), 302, true},
		{"registered URI, Host of another site", fmt.Sprintf("GET %s HTTP/1.1\r\nHost: evil.example\r\n\r\n", authorize(powerBIRedirect)), 302, true},
		{"page sign-in with return parameters", rig.request("GET", "/signin?return=https://evil.example&next=//evil.example&redirect_uri=https://evil.example", spoof, ""), 302, true},
		{"feed root without a slash", rig.request("GET", "/odata/faulty?x=//evil.example", spoof, ""), 301, true},
		{"encoded slashes as a source", rig.request("GET", "/odata/%2f%2fevil.example", spoof, ""), 404, false},
		{"sign-out", rig.request("POST", "/signout", spoof, ""), 303, true},
		{"callback with an unknown state", rig.request("GET", "/oauth/callback?state=forged&code=x", spoof, ""), 400, false},
		{"admin consent to another tenant", rig.request("GET", "/admin/consent?tenant=evil.example%2f..", spoof, ""), 404, false},
	} {
		r := rig.raw(t, tc.req)
		loc := r.header.Get("Location")
		if r.status != tc.want || (loc != "") != tc.wantLoc {
			t.Errorf("%s: status %d, Location %q; want %d and a Location %v", tc.name, r.status, loc, tc.want, tc.wantLoc)
		}
		if loc != "" {
			checkRedirectSafe(t, tc.name, loc, rig)
		}
	}
	if n := rig.reached.Load(); n != 0 {
		t.Errorf("the sentinel server received %d requests", n)
	}
}

package connector

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns the path of Debian's Chromium. Outside CI a machine
// without it skips the browser test; in CI its absence is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is not installed; .ci/run installs Debian's chromium")
	}
	t.Skip("Chromium is not installed (apt-get install chromium); CI runs this test")
	return ""
}

// artifactDir is where the browser walk's screenshots go.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("BRIDGE_TEST_ARTIFACTS"); d != "" {
		os.MkdirAll(d, 0o755)
		return d
	}
	return t.TempDir()
}

// profileDir is a Chromium profile directory for one test. Chromium's helper
// processes (crashpad, the GPU process) may still write to it for a moment
// after the browser exits, which makes t.TempDir's cleanup fail with
// "directory not empty"; this one is removed with retries instead.
func profileDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "bridge-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		for range 50 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("Chromium profile %s left behind: %v", dir, err)
	})
	return dir
}

// TestSignInPageWalk signs in on the page in headless Chromium (the
// sign-in cookie binds the round trip to this browser), creates a feed
// key, uses it with Basic as Excel does, revokes it and signs out.
func TestSignInPageWalk(t *testing.T) {
	exe := chromium(t)
	b := newBridge(t, nil)
	dir := artifactDir(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profileDir(t)),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var buf []byte
			if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644)
		})
	}

	var signedIn, key, feedURL string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(b.url+"/"),
		chromedp.WaitVisible("#sign-in", chromedp.ByID),
		shot("1-signed-out"),
		chromedp.Click("#sign-in", chromedp.ByID),
		chromedp.WaitVisible("#sign-out", chromedp.ByID),
		chromedp.Text("#you", &signedIn, chromedp.ByID),
		chromedp.Text("#feed-test", &feedURL, chromedp.ByID),
		shot("2-signed-in"),
		chromedp.SendKeys("#key-name", "Excel on my laptop", chromedp.ByID),
		chromedp.Click("#create-key-button", chromedp.ByID),
		chromedp.WaitVisible("#new-key", chromedp.ByID),
		chromedp.Text("#new-key-value", &key, chromedp.ByID),
		shot("3-key-created"),
	); err != nil {
		t.Fatalf("browser walk: %v", err)
	}
	if !strings.Contains(signedIn, "Signed in as") {
		t.Errorf("page heading %q, want the user's name", signedIn)
	}
	if feedURL != b.url+"/odata/test/" {
		t.Errorf("feed URL on the page = %q, want %q", feedURL, b.url+"/odata/test/")
	}
	if !strings.HasPrefix(key, "obk_") {
		t.Fatalf("key on the page = %q, want an obk_ key", key)
	}

	// The key in use, as Excel sends it.
	basic := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("anyone:"+key))}}
	if resp, body := b.get(t, "/odata/test/People", basic); resp.StatusCode != http.StatusOK {
		t.Fatalf("feed with the new key: status %d %s", resp.StatusCode, body)
	}
	if resp, _ := b.get(t, "/odata/test/People?api_key="+url.QueryEscape(key), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("feed with the key as api_key: status %d", resp.StatusCode)
	}

	var rows int
	if err := chromedp.Run(ctx,
		chromedp.Click("button.revoke", chromedp.ByQuery),
		chromedp.WaitNotPresent("button.revoke", chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll("#key-list tbody tr").length`, &rows),
		shot("4-key-revoked"),
	); err != nil {
		t.Fatalf("revoke in the browser: %v", err)
	}
	if rows != 0 {
		t.Errorf("%d keys listed after revoking, want 0", rows)
	}
	b.clock.Advance(10 * time.Second) // past the hot cache bound
	if resp, _ := b.get(t, "/odata/test/People", basic); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("feed with the revoked key: status %d, want 401", resp.StatusCode)
	}
	if strings.Contains(b.logs.String(), key) {
		t.Error("the feed key reached the logs")
	}

	// Signing out ends the page session: the page shows the sign-in again.
	if err := chromedp.Run(ctx,
		chromedp.Click("#sign-out", chromedp.ByID),
		chromedp.WaitVisible("#sign-in", chromedp.ByID),
		shot("5-signed-out"),
	); err != nil {
		t.Fatalf("sign-out in the browser: %v", err)
	}
	t.Logf("screenshots in %s", dir)
}

func TestPageSecurity(t *testing.T) {
	b := newBridge(t, nil)
	resp, _ := b.get(t, "/", nil)
	for h, want := range map[string]string{
		"X-Frame-Options": "DENY",
		"Referrer-Policy": "no-referrer",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q, want a strict policy", csp)
	}

	// A signed-in cookie without the CSRF token cannot create a key.
	access, _ := b.signIn(t)
	sid, err := b.store.Authenticate(context.Background(), access)
	if err != nil {
		t.Fatal(err)
	}
	srv := b.srv.Config.Handler.(*Server)
	pc, err := srv.newPageSession(context.Background(), sid)
	if err != nil {
		t.Fatal(err)
	}
	pc.CSRF = "right"
	cookie := &http.Cookie{Name: cookieName, Value: srv.sealCookie(pc)}
	for name, token := range map[string]string{"no token": "", "wrong token": "wrong"} {
		req, _ := http.NewRequest(http.MethodPost, b.url+"/api/keys", strings.NewReader(`{"name":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "https://evil.example")
		if token != "" {
			req.Header.Set("X-CSRF-Token", token)
		}
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: cross-site POST /api/keys = %d, want 403", name, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, b.url+"/api/keys", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", "right")
	req.AddCookie(cookie)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("POST /api/keys with the cookie and its CSRF token = %d, want 201", resp.StatusCode)
	}
	// A tampered cookie is no session.
	bad := &http.Cookie{Name: cookieName, Value: cookie.Value[:len(cookie.Value)-2] + "AA"}
	req, _ = http.NewRequest(http.MethodGet, b.url+"/api/keys", nil)
	req.AddCookie(bad)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/keys with a tampered cookie = %d, want 401", resp.StatusCode)
	}

	// Sign-out is a form post carrying the CSRF token; a form body past
	// maxFormBody is refused, however right its token.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"wrong token", "csrf=wrong", http.StatusForbidden},
		{"oversized form", "pad=" + strings.Repeat("a", maxFormBody) + "&csrf=right", http.StatusForbidden},
		{"right token", "csrf=right", http.StatusSeeOther},
	} {
		req, _ := http.NewRequest(http.MethodPost, b.url+"/signout", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(cookie)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("sign-out, %s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

func TestFeedKeyRefusals(t *testing.T) {
	b := newBridge(t, nil)
	basic := func(s string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(s))}}
	}
	for name, h := range map[string]http.Header{
		"no credentials":   nil,
		"wrong key":        basic("x:obk_" + strings.Repeat("A", 43)),
		"not a key":        basic("x:password"),
		"empty password":   basic("x:"),
		"no colon":         basic("obk_abc"),
		"malformed base64": {"Authorization": {"Basic !!!"}},
		"unknown scheme":   {"Authorization": {"Digest abc"}},
		"empty bearer":     {"Authorization": {"Bearer "}},
		"unknown bearer":   bearer(strings.Repeat("x", 4096)),
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := b.get(t, "/odata/test/People", h)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if ch := strings.Join(resp.Header.Values("WWW-Authenticate"), ", "); !strings.Contains(ch, `Basic realm="OData Bridge"`) {
				t.Errorf("WWW-Authenticate = %q, want the Basic challenge", ch)
			}
			if !strings.Contains(body, `"error"`) {
				t.Errorf("body %s, want an OData error", body)
			}
		})
	}
}

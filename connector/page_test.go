package connector

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/odata-bridge/bridge/odata"
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
// browserContext starts headless Chromium (exe) on a profile of its own, as
// this machine allows it (no sandbox, no GPU, no background networking), and
// returns its context, which ends with the test or after timeout.
func browserContext(t *testing.T, exe string, timeout time.Duration) context.Context {
	t.Helper()
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
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancel(); cancelBrowser(); cancelAlloc() })
	return ctx
}

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
// sign-in cookie binds the round trip to this browser), lists a source's
// tables, creates feed keys, uses one with Basic as Excel does, revokes
// keys (one already revoked elsewhere) and signs out. At 390 and 1280 px
// wide, no page scrolls sideways: the signed-out page, an error page, and
// the signed-in page without keys and with them.
func TestSignInPageWalk(t *testing.T) {
	exe := chromium(t)
	up := newServiceDocuments(t)
	b := newBridge(t, nil, func(o *Options) {
		relay, err := odata.NewRelay([]odata.Upstream{{Name: "v4", URL: up.srv.URL + "/v4/", PublicBase: o.PublicURL + "/odata/v4/"}},
			odata.Options{ErrorHandler: func(w http.ResponseWriter, _ *http.Request, version string, err error) { WriteError(w, version, err) }})
		if err != nil {
			t.Fatal(err)
		}
		feed, _ := relay.Feed("v4")
		o.Sources = append(o.Sources, Source{Name: "v4", Title: "TripPin " + strings.Repeat("with a long title ", 4), Kind: "odata", Auth: AuthUser, Feed: feed})
	})
	dir := artifactDir(t)

	ctx := browserContext(t, exe, 120*time.Second)

	// confirm() dialogs are answered with accept, and counted.
	var accept atomic.Bool
	var dialogs atomic.Int32
	chromedp.ListenTarget(ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			dialogs.Add(1)
			go chromedp.Run(ctx, page.HandleJavaScriptDialog(accept.Load()))
		}
	})

	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var buf []byte
			if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644)
		})
	}
	// fits checks, at each width, that the page does not scroll sideways
	// and that it is styled by page.css and links back to the start page,
	// and takes a screenshot.
	fits := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			for _, width := range []int64{390, 1280} {
				var got struct {
					ScrollWidth, ClientWidth int
					Styled, Home             bool
				}
				if err := chromedp.Run(ctx,
					chromedp.EmulateViewport(width, 800),
					chromedp.Sleep(100*time.Millisecond), // a layout at the new width
					chromedp.Evaluate(`({
						ScrollWidth: document.documentElement.scrollWidth,
						ClientWidth: document.documentElement.clientWidth,
						Styled: Array.from(document.styleSheets).some(s => s.href && s.href.endsWith("/assets/page.css") && s.cssRules.length > 0),
						Home: document.querySelector('a[href="/"]') !== null,
					})`, &got),
					shot(fmt.Sprintf("%s-%d", name, width)),
				); err != nil {
					return err
				}
				if got.ScrollWidth > got.ClientWidth {
					t.Errorf("%s at %d px: scrollWidth %d > clientWidth %d: the page scrolls sideways", name, width, got.ScrollWidth, got.ClientWidth)
				}
				if !got.Styled || !got.Home {
					t.Errorf("%s: styled by page.css %v, links to / %v; want both", name, got.Styled, got.Home)
				}
			}
			return chromedp.EmulateViewport(1280, 800).Do(ctx)
		})
	}

	var signedIn, feedURL, noKeys string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(b.url+"/"),
		chromedp.WaitVisible("#sign-in", chromedp.ByID),
		fits("1-signed-out"),
		chromedp.Navigate(b.url+"/oauth/authorize?client_id=nosuch"),
		chromedp.WaitVisible("main", chromedp.ByQuery),
		fits("2-error-page"),
		chromedp.Navigate(b.url+"/"),
		chromedp.Click("#sign-in", chromedp.ByID),
		chromedp.WaitVisible("#sign-out", chromedp.ByID),
		chromedp.Text("#you", &signedIn, chromedp.ByID),
		chromedp.Text("#feed-test", &feedURL, chromedp.ByID),
		chromedp.Text("#no-keys", &noKeys, chromedp.ByID),
		fits("3-signed-in-no-keys"),
	); err != nil {
		t.Fatalf("browser walk: %v", err)
	}
	if !strings.Contains(signedIn, "Signed in as") {
		t.Errorf("page heading %q, want the user's name", signedIn)
	}
	if feedURL != b.url+"/odata/test/" {
		t.Errorf("feed URL on the page = %q, want %q", feedURL, b.url+"/odata/test/")
	}
	if !strings.Contains(noKeys, "no feed keys yet") {
		t.Errorf("empty key list says %q, want that there are no feed keys yet", noKeys)
	}

	// The Tables disclosure lists the source's entity sets with their .odc,
	// and says in words why a source's tables could not be read.
	var links []string
	var tablesError string
	if err := chromedp.Run(ctx,
		chromedp.Click("#tables-v4 summary", chromedp.ByQuery),
		chromedp.WaitVisible("#tables-v4 .tables-body a", chromedp.ByQuery),
		chromedp.Evaluate(`Array.from(document.querySelectorAll("#tables-v4 .tables-body a")).map(a => a.textContent + " " + a.href)`, &links),
		chromedp.Click("#tables-test summary", chromedp.ByQuery),
		chromedp.WaitVisible("#tables-test .tables-body .error", chromedp.ByQuery),
		chromedp.Text("#tables-test .tables-body .error", &tablesError, chromedp.ByQuery),
		fits("4-tables"),
	); err != nil {
		t.Fatalf("tables in the browser: %v", err)
	}
	wantLinks := []string{
		"People " + b.url + "/excel/v4/People.odc",
		"Airports " + b.url + "/excel/v4/Airports.odc",
		"Ordrés " + b.url + "/excel/v4/Ordr%C3%A9s.odc",
	}
	if !slices.Equal(links, wantLinks) {
		t.Errorf("tables of v4 = %q, want %q", links, wantLinks)
	}
	if tablesError == "" || regexp.MustCompile(`\b[45]\d\d\b`).MatchString(tablesError) {
		t.Errorf("tables error %q, want a plain sentence without a status code", tablesError)
	}

	// Without the clipboard API, Copy selects the text to copy by hand.
	var selected string
	if err := chromedp.Run(ctx,
		chromedp.Evaluate(`Object.defineProperty(navigator, "clipboard", {value: undefined, configurable: true}); true`, nil),
		chromedp.Click(`button.copy[data-copy="feed-test"]`, chromedp.ByQuery),
		chromedp.Evaluate(`window.getSelection().toString()`, &selected),
	); err != nil {
		t.Fatalf("copy in the browser: %v", err)
	}
	if selected != feedURL {
		t.Errorf("Copy without a clipboard selected %q, want the feed URL %q", selected, feedURL)
	}

	// Two keys; the banner shows the second.
	var first, second, banner string
	if err := chromedp.Run(ctx,
		chromedp.SendKeys("#key-name", "Excel on my laptop", chromedp.ByID),
		chromedp.Click("#create-key-button", chromedp.ByID),
		chromedp.WaitVisible("#new-key", chromedp.ByID),
		chromedp.Text("#new-key-value", &first, chromedp.ByID),
		chromedp.SendKeys("#key-name", "Power BI at home", chromedp.ByID),
		chromedp.Click("#create-key-button", chromedp.ByID),
		chromedp.WaitVisible(`#key-list tbody tr:nth-child(2)`, chromedp.ByQuery),
		chromedp.Text("#new-key-value", &second, chromedp.ByID),
		fits("5-keys"),
	); err != nil {
		t.Fatalf("create keys in the browser: %v", err)
	}
	if !strings.HasPrefix(first, "obk_") || !strings.HasPrefix(second, "obk_") || first == second {
		t.Fatalf("keys on the page = %q, %q; want two obk_ keys", first, second)
	}

	// The key in use, as Excel sends it.
	basic := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("anyone:"+first))}}
	if resp, body := b.get(t, "/odata/test/People", basic); resp.StatusCode != http.StatusOK {
		t.Fatalf("feed with the new key: status %d %s", resp.StatusCode, body)
	}
	if resp, _ := b.get(t, "/odata/test/People?api_key="+url.QueryEscape(first), nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("feed with the key as api_key: status %d", resp.StatusCode)
	}

	var ids []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll("#key-list tbody tr")).map(r => r.dataset.keyId)`, &ids)); err != nil || len(ids) != 2 {
		t.Fatalf("key rows %v, %v; want 2", ids, err)
	}
	revoke := func(id string) chromedp.Action {
		return chromedp.Click(`button.revoke[data-key-id="`+id+`"]`, chromedp.ByQuery)
	}
	var rows int
	var notice string
	// Dismissing the confirmation keeps the key.
	accept.Store(false)
	if err := chromedp.Run(ctx,
		revoke(ids[0]),
		chromedp.Sleep(300*time.Millisecond),
		chromedp.Evaluate(`document.querySelectorAll("#key-list tbody tr").length`, &rows),
	); err != nil {
		t.Fatalf("dismissed revoke: %v", err)
	}
	if rows != 2 || dialogs.Load() != 1 {
		t.Errorf("after a dismissed revoke: %d keys listed, %d dialogs; want 2 keys and 1 dialog", rows, dialogs.Load())
	}
	// Revoking the first key leaves the banner, which shows the second.
	accept.Store(true)
	if err := chromedp.Run(ctx,
		revoke(ids[0]),
		chromedp.WaitNotPresent(`tr[data-key-id="`+ids[0]+`"]`, chromedp.ByQuery),
		chromedp.Text("#new-key-value", &banner, chromedp.ByID),
	); err != nil {
		t.Fatalf("revoke in the browser: %v", err)
	}
	if banner != second {
		t.Errorf("after revoking the first key the banner shows %q, want the second key", banner)
	}
	// The second key is revoked elsewhere (another window, a script); the
	// page says so, and the banner that shows it goes.
	sid, err := b.store.FeedKey(context.Background(), second)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := b.store.Session(context.Background(), sid)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.store.RevokeFeedKey(context.Background(), sess.Subject, ids[1]); err != nil {
		t.Fatal(err)
	}
	var bannerHidden bool
	if err := chromedp.Run(ctx,
		revoke(ids[1]),
		chromedp.WaitNotPresent("button.revoke", chromedp.ByQuery),
		chromedp.WaitVisible("#key-notice", chromedp.ByID),
		chromedp.Text("#key-notice", &notice, chromedp.ByID),
		chromedp.Evaluate(`document.getElementById("new-key").hidden && document.getElementById("new-key-value").textContent === ""`, &bannerHidden),
		chromedp.Evaluate(`document.querySelectorAll("#key-list tbody tr").length`, &rows),
		chromedp.WaitVisible("#no-keys", chromedp.ByID),
		shot("6-keys-revoked"),
	); err != nil {
		t.Fatalf("revoke an already revoked key in the browser: %v", err)
	}
	if !strings.Contains(notice, "already revoked") {
		t.Errorf("revoking a key revoked elsewhere says %q, want \"already revoked\"", notice)
	}
	if !bannerHidden {
		t.Error("the one-time banner still shows the revoked key")
	}
	if rows != 0 {
		t.Errorf("%d keys listed after revoking, want 0", rows)
	}
	b.clock.Advance(10 * time.Second) // past the hot cache bound
	if resp, _ := b.get(t, "/odata/test/People", basic); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("feed with the revoked key: status %d, want 401", resp.StatusCode)
	}
	for _, k := range []string{first, second} {
		if strings.Contains(b.logs.String(), k) {
			t.Error("a feed key reached the logs")
		}
	}

	// Signing out ends the page session: the page shows the sign-in again.
	if err := chromedp.Run(ctx,
		chromedp.Click("#sign-out", chromedp.ByID),
		chromedp.WaitVisible("#sign-in", chromedp.ByID),
		shot("7-signed-out"),
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

package connector

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
)

// attackJS is what a hostile upstream document runs: read the sign-in page for its
// CSRF token, then create a feed key with the signed-in user's cookie. attack(name)
// resolves to the text of the POST /api/keys answer. It holds no '<' or '&', so it
// stands as it is in HTML, XHTML and SVG.
const attackJS = `function attack(name) {
  return fetch("/", {credentials: "include"})
    .then(function (r) { return r.text(); })
    .then(function (t) {
      var m = t.match(/data-csrf="([^"]+)"/);
      return fetch("/api/keys", {method: "POST", credentials: "include",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": m ? m[1] : ""},
        body: JSON.stringify({name: name})});
    })
    .then(function (r) { return r.text(); });
}`

// runAttack marks the document as run, then records the attack's outcome in its title.
const runAttack = `document.title = "ran";
attack("pwned").then(function (t) { document.title = "done:" + t; }, function (e) { document.title = "failed:" + e; });`

// hostileDocuments are an upstream's documents that run attackJS where they are shown.
var hostileDocuments = map[string]struct{ contentType, body string }{
	"Docs(1)/$value": {"text/html; charset=utf-8",
		"<!doctype html><html><head><title>hostile</title><script>" + attackJS + "\n" + runAttack + "</script></head><body>hi</body></html>"},
	"Docs(2)/$value": {"image/svg+xml",
		`<svg xmlns="http://www.w3.org/2000/svg"><title>hostile</title><script>` + attackJS + "\n" + runAttack + `</script></svg>`},
	"Docs(3)": {"application/xml",
		`<html xmlns="http://www.w3.org/1999/xhtml"><head><title>hostile</title><script>` + attackJS + "\n" + runAttack + `</script></head><body>hi</body></html>`},
	"Docs(4)": {"text/html",
		"<!doctype html><html><head><title>hostile</title><script>" + attackJS + "\n" + runAttack + "</script></head><body>hi</body></html>"},
}

// TestUpstreamScriptCannotActOnTheBridge signs in on the page in headless Chromium,
// then opens /odata links to an upstream's HTML, SVG and XHTML documents whose script
// tries to read the page's CSRF token and create a feed key: none runs on the
// bridge's origin, and no key is created. Two controls keep the test honest: the same
// attack run on the bridge's page does create a key, and the same documents opened on
// the upstream's own origin do run their script.
func TestUpstreamScriptCannotActOnTheBridge(t *testing.T) {
	exe := chromium(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		doc, ok := hostileDocuments[strings.TrimPrefix(r.URL.EscapedPath(), "/svc/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", doc.contentType)
		io.WriteString(w, doc.body)
	}))
	t.Cleanup(up.Close)
	rl, err := odata.NewRelay([]odata.Upstream{{Name: "hostile", URL: up.URL + "/svc/", PublicBase: "http://bridge.invalid/odata/hostile/"}}, odata.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := newBridge(t, func(*idp.Provider) []Source {
		feed, _ := rl.Feed("hostile")
		return []Source{{Name: "hostile", Kind: "odata", Auth: AuthNone, Feed: feed}}
	})

	ctx := browserContext(t, exe, 120*time.Second)

	// Control: on the bridge's own page, the attack creates a key.
	var started bool
	var created string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(b.url+"/"),
		chromedp.WaitVisible("#sign-in", chromedp.ByID),
		chromedp.Click("#sign-in", chromedp.ByID),
		chromedp.WaitVisible("#sign-out", chromedp.ByID),
		chromedp.Evaluate(attackJS+`
window.attackResult = "";
attack("control").then(function (t) { window.attackResult = t; }, function (e) { window.attackResult = "failed:" + e; });
true`, &started),
		chromedp.Poll(`window.attackResult`, &created, chromedp.WithPollingTimeout(20*time.Second)),
	); err != nil {
		t.Fatalf("sign-in and control attack: %v", err)
	}
	var key struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(created), &key); err != nil || !strings.HasPrefix(key.Key, "obk_") {
		t.Fatalf("the control attack on the bridge's page got %q, want a new key: the attack script is broken", created)
	}

	for _, path := range []string{"Docs(1)/$value", "Docs(2)/$value", "Docs(3)", "Docs(4)"} {
		t.Run(path, func(t *testing.T) {
			// Control: on the upstream's own origin the document's script runs.
			var title string
			if err := chromedp.Run(ctx,
				chromedp.Navigate(up.URL+"/svc/"+path),
				chromedp.Poll(`document.title !== "hostile" && document.title !== "" && document.title`, &title, chromedp.WithPollingTimeout(10*time.Second)),
			); err != nil {
				t.Fatalf("the document's script did not run on the upstream's origin either (%v): the test proves nothing", err)
			}

			target := b.url + "/odata/hostile/" + path + "?api_key=" + url.QueryEscape(key.Key)
			if err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
				t.Fatal(err)
			}
			// An attachment is a download, which ends the navigation with an error and
			// leaves the blank page.
			navErr := chromedp.Run(ctx, chromedp.Navigate(target))
			time.Sleep(2 * time.Second) // room for the attack's two requests
			var href, origin string
			if err := chromedp.Run(ctx,
				chromedp.Evaluate(`location.href`, &href),
				chromedp.Evaluate(`document.title`, &title),
				chromedp.Evaluate(`self.origin`, &origin),
			); err != nil {
				t.Fatal(err)
			}
			t.Logf("navigation: %v; at %s, origin %s, title %q", navErr, href, origin, title)
			if title == "ran" || strings.HasPrefix(title, "done:") || strings.HasPrefix(title, "failed:") {
				t.Errorf("the upstream's script ran at %s (origin %s): title %q", href, origin, title)
			}
			if href == target && origin != "null" {
				t.Errorf("the upstream's document was shown on origin %s, want an opaque one (\"null\")", origin)
			}
		})
	}

	var keys string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(b.url+"/"),
		chromedp.WaitVisible("#sign-out", chromedp.ByID),
		chromedp.Evaluate(`window.keyList = ""; fetch("/api/keys", {credentials: "same-origin"}).then(function (r) { return r.text(); }).then(function (t) { window.keyList = t; }); true`, &started),
		chromedp.Poll(`window.keyList`, &keys, chromedp.WithPollingTimeout(10*time.Second)),
	); err != nil {
		t.Fatalf("listing the keys: %v", err)
	}
	if !strings.Contains(keys, `"control"`) {
		t.Errorf("the key list %s lacks the control key: it cannot show an attack's key", keys)
	}
	if strings.Contains(keys, "pwned") {
		t.Errorf("an upstream document created a feed key: %s", keys)
	}
}

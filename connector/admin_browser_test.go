package connector

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// TestAdminPageWalk opens /admin in headless Chromium as an admin after a
// scripted day of traffic: the charts have one bar per hour of the week and
// show the day, the page's CSP reports no violation, nothing scrolls sideways
// at a desktop and a phone width, and the sign-in page lists the user's key
// use per day.
func TestAdminPageWalk(t *testing.T) {
	exe := chromium(t)
	b, ledger := newAdminBridge(t)
	dir := artifactDir(t)

	// A day of traffic with a feed key: every hour a refresh of People (three
	// pages) and zero to four reads of $metadata.
	b.idp.m.QueueUser(ada)
	access, _ := b.signIn(t)
	status, body := b.call(t, http.MethodPost, "/api/keys", nil, http.Header{"Authorization": {"Bearer " + access}, "Content-Type": {"application/json"}}, `{"name":"laptop"}`)
	if status != http.StatusCreated {
		t.Fatalf("create key: %d %s", status, body)
	}
	var created struct{ ID, Key string }
	json.Unmarshal([]byte(body), &created)
	basic := http.Header{"Authorization": {"Basic " + basicValue("x", created.Key)}}
	total := 0
	for h := range 24 {
		paths := []string{"/odata/test/People", "/odata/test/People?$skiptoken=1", "/odata/test/People?$skiptoken=2"}
		for range h % 5 {
			paths = append(paths, "/odata/test/$metadata")
		}
		for _, p := range paths {
			if resp, body := b.get(t, p, basic); resp.StatusCode != http.StatusOK {
				t.Fatalf("hour %d, %s: %d %s", h, p, resp.StatusCode, body)
			}
			total++
		}
		b.clock.Advance(time.Hour)
	}
	if err := ledger.Flush(context.Background()); err != nil { // the flusher's job in a deployment
		t.Fatal(err)
	}

	ctx := browserContext(t, exe, 90*time.Second)

	// Console errors and log entries (where Chromium reports a refused
	// script or style) are collected; so are securitypolicyviolation events,
	// through a listener installed before any page script runs.
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *cdplog.EventEntryAdded:
			// The browser's own favicon request is no page's resource.
			if ev.Entry.Level == cdplog.LevelError && !strings.HasSuffix(ev.Entry.URL, "/favicon.ico") {
				problems = append(problems, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError {
				problems = append(problems, "console error")
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+ev.ExceptionDetails.Text)
		}
	})
	var violations []string
	b.idp.m.QueueUser(ada)
	if err := chromedp.Run(ctx,
		cdplog.Enable(),
		runtime.Enable(),
		chromedp.ActionFunc(func(ctx context.Context) error {
			_, err := page.AddScriptToEvaluateOnNewDocument(`window.__csp = []; document.addEventListener("securitypolicyviolation", e => window.__csp.push(e.violatedDirective + " " + e.blockedURI));`).Do(ctx)
			return err
		}),
		chromedp.Navigate(b.url+"/signin"),
		chromedp.WaitVisible("#sign-out", chromedp.ByID),
	); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	var keyUse string
	if err := chromedp.Run(ctx, chromedp.Text("#key-usage-list", &keyUse, chromedp.ByID)); err != nil {
		t.Fatalf("key use on the sign-in page: %v", err)
	}
	if !strings.Contains(keyUse, "laptop") {
		t.Errorf("key use on the sign-in page: got %q, want the key's requests per day", keyUse)
	}

	for _, width := range []int64{1280, 390} {
		var bars []int
		var drawn, scrollW, clientW int
		if err := chromedp.Run(ctx,
			chromedp.EmulateViewport(width, 900),
			chromedp.Navigate(b.url+"/admin"),
			chromedp.WaitVisible("#health", chromedp.ByID),
			chromedp.Evaluate(`[...document.querySelectorAll("figure.chart svg")].map(s => s.querySelectorAll("rect").length)`, &bars),
			chromedp.Evaluate(`[...document.querySelectorAll("figure.chart")[0].querySelectorAll("rect")].filter(r => r.getBBox().height > 0).length`, &drawn),
			chromedp.Evaluate(`document.documentElement.scrollWidth`, &scrollW),
			chromedp.Evaluate(`document.documentElement.clientWidth`, &clientW),
			chromedp.Evaluate(`window.__csp`, &violations),
			chromedp.ActionFunc(func(ctx context.Context) error {
				var buf []byte
				if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(dir, fmt.Sprintf("admin-%d.png", width)), buf, 0o644)
			}),
		); err != nil {
			t.Fatalf("/admin at %d px: %v", width, err)
		}
		if len(bars) != 3 {
			t.Errorf("%d px: got %d charts, want 3 (requests, bytes, upstream time)", width, len(bars))
		}
		for i, n := range bars {
			if n != chartHours {
				t.Errorf("%d px: chart %d has %d bars, want %d", width, i, n, chartHours)
			}
		}
		if drawn != 24 {
			t.Errorf("%d px: %d bars of the requests chart are drawn, want 24 (the scripted day)", width, drawn)
		}
		if scrollW > clientW {
			t.Errorf("%d px: the page scrolls sideways (%d > %d)", width, scrollW, clientW)
		}
		if len(violations) > 0 {
			t.Errorf("%d px: CSP violations: %v", width, violations)
		}
	}
	var topKeys string
	var complete int
	if err := chromedp.Run(ctx,
		chromedp.Text("#top-keys", &topKeys, chromedp.ByID),
		chromedp.Evaluate(`document.querySelectorAll("#refresh-list tr.outcome-complete").length`, &complete),
	); err != nil {
		t.Fatal(err)
	}
	if complete != 24 {
		t.Errorf("refresh history: %d complete refreshes listed, want 24", complete)
	}
	if !strings.Contains(topKeys, created.ID) || !strings.Contains(topKeys, fmt.Sprint(total)) {
		t.Errorf("top keys: got %q, want %s with %d requests", topKeys, created.ID, total)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("browser errors: %q", problems)
	}
	t.Logf("screenshots in %s", dir)
}

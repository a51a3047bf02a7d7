package connector

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestPagesStyleAndHome: every HTML page the bridge serves, error pages
// included, is styled by page.css and links back to the start page, and
// the sign-in page says when there are no keys yet.
func TestPagesStyleAndHome(t *testing.T) {
	b := newBridge(t, nil)
	access, _ := b.signIn(t)
	ctx := context.Background()
	sid, err := b.store.Authenticate(ctx, access)
	if err != nil {
		t.Fatal(err)
	}
	srv := b.srv.Config.Handler.(*Server)
	pc, err := srv.newPageSession(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	signedIn := http.Header{"Cookie": {cookieName + "=" + srv.sealCookie(pc)}}

	var consent strings.Builder
	if err := consentTemplate.Execute(&consent, consentView{Title: "Consent failed", Problem: "No."}); err != nil {
		t.Fatal(err)
	}
	pages := map[string]string{"consent page": consent.String()}
	for name, req := range map[string]struct {
		path   string
		header http.Header
		want   int
	}{
		"signed out":     {"/", nil, http.StatusOK},
		"signed in":      {"/", signedIn, http.StatusOK},
		"error page":     {"/oauth/authorize?client_id=nosuch", nil, http.StatusBadRequest},
		"callback error": {"/oauth/callback?state=nosuch&code=x", nil, http.StatusBadRequest},
	} {
		resp, body := b.get(t, req.path, req.header)
		if resp.StatusCode != req.want || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: status %d, Content-Type %q; want %d HTML", name, resp.StatusCode, resp.Header.Get("Content-Type"), req.want)
		}
		pages[name] = body
	}
	for name, body := range pages {
		if !strings.Contains(body, `<link rel="stylesheet" href="/assets/page.css">`) {
			t.Errorf("%s does not use page.css:\n%s", name, body)
		}
		if !strings.Contains(body, `href="/"`) {
			t.Errorf("%s does not link back to /:\n%s", name, body)
		}
		if regexp.MustCompile(`(?i)<script>|\son[a-z]+=`).MatchString(body) {
			t.Errorf("%s has inline script, which the page's CSP forbids", name)
		}
	}
	if !regexp.MustCompile(`<p id="no-keys">[^<]*no feed keys yet`).MatchString(pages["signed in"]) ||
		!strings.Contains(pages["signed in"], `id="key-table" hidden`) {
		t.Errorf("the signed-in page without keys does not say there are none:\n%s", pages["signed in"])
	}
	if !strings.Contains(pages["signed in"], `<details class="tables" id="tables-test" data-source="test" data-csrf="`+pc.CSRF+`">`) {
		t.Errorf("the signed-in page lacks the test source's Tables disclosure")
	}

	if _, _, err := b.store.CreateFeedKey(ctx, sid, "excel"); err != nil {
		t.Fatal(err)
	}
	_, body := b.get(t, "/", signedIn)
	if !strings.Contains(body, `<p id="no-keys" hidden>`) || strings.Contains(body, `id="key-table" hidden`) {
		t.Errorf("the signed-in page with a key still says there are none:\n%s", body)
	}
}

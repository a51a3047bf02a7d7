package connector

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/idp/idptest"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// adminRoutes are every route that only admins may use.
var adminPaths = []string{"/admin", "/admin/audit.csv", "/admin/audit.json", "/admin/usage.json"}

// pagedFeed answers entity-set pages: a page of one row carries
// @odata.nextLink until $skiptoken reaches last; the entity set "Broken"
// answers 503. It returns what a relay reads of such pages.
type pagedFeed int

func (last pagedFeed) ServeFeed(w http.ResponseWriter, r *http.Request, path, user string, auth odata.Authorizer) odata.Served {
	if strings.HasPrefix(path, "Broken") {
		WriteError(w, odata.Version4, tokencache.ErrProviderUnavailable)
		return odata.Served{}
	}
	n := 0
	fmt.Sscan(r.URL.Query().Get("$skiptoken"), &n)
	w.Header().Set("Content-Type", "application/json")
	body := `{"@odata.context":"x","value":[{"n":` + fmt.Sprint(n) + `}]`
	if n < int(last) {
		body += `,"@odata.nextLink":"http://bridge/odata/test/` + path + `?$skiptoken=` + fmt.Sprint(n+1) + `"`
	}
	w.Write([]byte(body + "}"))
	return odata.Served{Read: true, Rows: 1, Next: n < int(last)}
}

func (pagedFeed) Version() string { return "" }

// newAdminBridge is a bridge with a memory ledger whose admin is
// ada@example.com, over one paged source named test.
func newAdminBridge(t *testing.T, tweaks ...func(*Options)) (*bridge, *tokencache.Ledger) {
	t.Helper()
	var ledger *tokencache.Ledger
	b := newBridge(t, func(_ *idp.Provider) []Source {
		return []Source{{Name: "test", Title: "Test source", Kind: "odata", Auth: AuthNone, Feed: pagedFeed(2)}}
	}, append([]func(*Options){func(o *Options) {
		ledger = tokencache.NewLedger(tokencache.LedgerOptions{Now: o.Now, FlushInterval: -1})
		t.Cleanup(func() { ledger.Close() })
		o.Ledger = ledger
		o.Admins = []string{"ada@example.com"}
	}}, tweaks...)...)
	return b, ledger
}

var (
	ada = &mockoidc.MockUser{Subject: "ada-sub", Email: "ada@example.com", PreferredUsername: "ada"}
	bob = &mockoidc.MockUser{Subject: "bob-sub", Email: "bob@example.com", PreferredUsername: "bob"}
)

// signInAs signs a fresh browser in on the page as u.
func (b *bridge) signInAs(t *testing.T, u *mockoidc.MockUser) (*http.Cookie, string) {
	t.Helper()
	b.idp.m.QueueUser(u)
	return b.pageSignIn(t, newBrowser(t))
}

func TestAdminRoutesNeedAnAdmin(t *testing.T) {
	b, _ := newAdminBridge(t)
	adaCookie, _ := b.signInAs(t, ada)
	bobCookie, _ := b.signInAs(t, bob)
	access, _ := b.signIn(t)
	for _, path := range adminPaths {
		tests := []struct {
			who    string
			cookie *http.Cookie
			header http.Header
			want   int
		}{
			{"nobody", nil, nil, http.StatusUnauthorized},
			{"a bearer token (not a page sign-in)", nil, bearer(access), http.StatusUnauthorized},
			{"bob, not an admin", bobCookie, nil, http.StatusForbidden},
			{"ada, an admin", adaCookie, nil, http.StatusOK},
		}
		for _, tt := range tests {
			if got, body := b.call(t, http.MethodGet, path, tt.cookie, tt.header, ""); got != tt.want {
				t.Errorf("GET %s as %s: got %d, want %d: %.200s", path, tt.who, got, tt.want, body)
			}
		}
	}
	// The routes with their own rules keep them.
	if got, _ := b.call(t, http.MethodGet, "/admin/consent", bobCookie, nil, ""); got == http.StatusForbidden || got == http.StatusUnauthorized {
		t.Errorf("/admin/consent for a non-admin: got %d, want its own answer", got)
	}
}

func TestIsAdmin(t *testing.T) {
	s := &Server{opts: Options{Admins: []string{"Ada@Example.com", "oid-42", "sub-7", "grace"}}}
	tests := []struct {
		id   identity
		want bool
	}{
		{identity{Subject: "x", Email: "ada@example.com"}, true},
		{identity{Subject: "x", PreferredUsername: "GRACE"}, true},
		{identity{Subject: "x", ObjectID: "oid-42"}, true},
		{identity{Subject: "tenant:oid-42"}, true},
		{identity{Subject: "sub-7"}, true},
		{identity{Subject: "SUB-7"}, false},
		{identity{Subject: "bob", Email: "bob@example.com", PreferredUsername: "bob"}, false},
		{identity{}, false},
	}
	for _, tt := range tests {
		if got := s.isAdmin(tt.id); got != tt.want {
			t.Errorf("isAdmin(%+v): got %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestUsageCountsRelayedRequests(t *testing.T) {
	b, ledger := newAdminBridge(t)
	ctx := context.Background()
	b.idp.m.QueueUser(ada)
	access, _ := b.signIn(t)
	for range 3 {
		if resp, body := b.get(t, "/odata/test/People", bearer(access)); resp.StatusCode != http.StatusOK {
			t.Fatalf("feed: %d %s", resp.StatusCode, body)
		}
	}
	resp, _ := b.get(t, "/odata/test/Broken", bearer(access))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("broken: got %d, want 503", resp.StatusCode)
	}
	// Not counted: refused before the relay, or no such source.
	b.get(t, "/odata/test/People", nil)
	b.get(t, "/odata/nosuch/People", bearer(access))
	if err := ledger.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	hours, err := ledger.Hours(ctx, b.clock.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(hours) != 1 || hours[0].Source != "test" || hours[0].Requests != 4 || hours[0].Errors5xx != 1 || hours[0].Errors4xx != 0 || hours[0].Bytes == 0 {
		t.Fatalf("hours: got %+v, want one hour of test with 4 requests, one 5xx", hours)
	}
	users, _ := ledger.Days(ctx, b.clock.Now(), false)
	if len(users) != 1 || users[0].ID != "ada-sub" || users[0].Requests != 4 || users[0].Bytes != hours[0].Bytes {
		t.Errorf("users: got %+v, want ada-sub with 4 requests and %d bytes", users, hours[0].Bytes)
	}

	// A flood of distinct paths and queries adds no series.
	before, _ := ledger.Series(ctx)
	for i := range 200 {
		b.get(t, fmt.Sprintf("/odata/test/Set%d('k%d')?$filter=x%%20eq%%20%d", i, i, i), bearer(access))
	}
	_ = ledger.Flush(ctx)
	if after, _ := ledger.Series(ctx); after != before {
		t.Errorf("series after 200 distinct paths: got %d, want %d", after, before)
	}
}

func TestRefreshHistory(t *testing.T) {
	b, ledger := newAdminBridge(t)
	ctx := context.Background()
	b.idp.m.QueueUser(ada)
	access, _ := b.signIn(t)
	for _, p := range []string{"/odata/test/People", "/odata/test/$metadata", "/odata/test/People?$skiptoken=1", "/odata/test/People?$skiptoken=2"} {
		if resp, body := b.get(t, p, bearer(access)); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
	// Abandoned: two pages of Orders, each with a next link, then a pause.
	b.get(t, "/odata/test/Orders", bearer(access))
	b.get(t, "/odata/test/Orders?$skiptoken=1", bearer(access))
	b.clock.Advance(2 * time.Minute)
	if err := ledger.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	runs, err := ledger.Refreshes(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]tokencache.RefreshRun{}
	for _, r := range runs {
		got[r.EntitySet] = r
	}
	tests := []struct {
		set     string
		pages   int
		outcome string
	}{
		{"People", 3, tokencache.RefreshComplete},
		{"Orders", 2, tokencache.RefreshAbandoned},
	}
	if len(runs) != len(tests) {
		t.Errorf("runs: got %+v, want %d", runs, len(tests))
	}
	for _, tt := range tests {
		r := got[tt.set]
		if r.Pages != tt.pages || r.Rows != int64(tt.pages) || r.Outcome != tt.outcome || r.Subject != "ada-sub" || r.Bytes == 0 {
			t.Errorf("%s: got %+v, want %d pages of one row, %s, by ada-sub", tt.set, r, tt.pages, tt.outcome)
		}
	}
}

func TestAuditEvents(t *testing.T) {
	b, ledger := newAdminBridge(t, func(o *Options) { o.RateLimit = 1 })
	ctx := context.Background()

	// The page: sign-in, a key created, used twice, rate limited twice, revoked, sign-out.
	browser := newBrowser(t)
	b.idp.m.QueueUser(ada)
	cookie, csrf := b.pageSignIn(t, browser)
	status, body := b.call(t, http.MethodPost, "/api/keys", cookie, http.Header{"X-CSRF-Token": {csrf}, "Content-Type": {"application/json"}}, `{"name":"laptop"}`)
	if status != http.StatusCreated {
		t.Fatalf("create key: %d %s", status, body)
	}
	var created struct{ ID, Key string }
	json.Unmarshal([]byte(body), &created)
	basic := http.Header{"Authorization": {"Basic " + basicValue("x", created.Key)}}
	for i, want := range []int{http.StatusOK, http.StatusTooManyRequests, http.StatusTooManyRequests} {
		if resp, _ := b.get(t, "/odata/test/People", basic); resp.StatusCode != want {
			t.Fatalf("feed with the key, call %d: got %d, want %d", i, resp.StatusCode, want)
		}
	}
	b.clock.Advance(time.Minute) // a new rate-limit window, the same hour
	if resp, _ := b.get(t, "/odata/test/People", basic); resp.StatusCode != http.StatusOK {
		t.Fatalf("feed in the next minute: got %d", resp.StatusCode)
	}
	if status, body := b.call(t, http.MethodDelete, "/api/keys/"+created.ID, cookie, http.Header{"X-CSRF-Token": {csrf}}, ""); status != http.StatusNoContent {
		t.Fatalf("revoke key: %d %s", status, body)
	}
	if status, _ := b.call(t, http.MethodPost, "/signout", cookie, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "csrf="+url.QueryEscape(csrf)); status != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", status)
	}

	// The connector: sign-in, refresh-token reuse, then another session revoked.
	b.idp.m.QueueUser(bob)
	bobAccess, refresh := b.signIn(t)
	if resp, _ := b.get(t, "/odata/test/People", bearer(bobAccess)); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's feed: %d", resp.StatusCode)
	}
	r2 := b.postForm(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"powerbi"}})
	if r2.status != http.StatusOK {
		t.Fatalf("refresh: %d %v", r2.status, r2.body)
	}
	b.clock.Advance(31 * time.Second)
	if r3 := b.postForm(t, "/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"powerbi"}}); r3.status != http.StatusBadRequest {
		t.Fatalf("reused refresh token: %d, want 400", r3.status)
	}
	b.idp.m.QueueUser(bob)
	access3, refresh3 := b.signIn(t)
	if rv := b.postForm(t, "/oauth/revoke", url.Values{"token": {access3}}); rv.status != http.StatusOK {
		t.Fatalf("revoke: %d", rv.status)
	}
	// An unknown token revokes nothing and writes nothing.
	b.postForm(t, "/oauth/revoke", url.Values{"token": {"nonsense"}})

	type want struct {
		subject, keyID string
		session        bool
	}
	wants := map[string][]want{
		tokencache.AuditSignIn:         {{subject: "ada-sub", session: true}, {subject: "bob-sub", session: true}, {subject: "bob-sub", session: true}},
		tokencache.AuditKeyCreated:     {{subject: "ada-sub", keyID: created.ID, session: true}},
		tokencache.AuditKeyFirstUse:    {{subject: "ada-sub", keyID: created.ID, session: true}},
		tokencache.AuditRateLimited:    {{keyID: created.ID, session: true}},
		tokencache.AuditKeyRevoked:     {{subject: "ada-sub", keyID: created.ID, session: true}},
		tokencache.AuditSignOut:        {{subject: "ada-sub", session: true}},
		tokencache.AuditRefreshReuse:   {{subject: "bob-sub", session: true}}, // known from bob's feed request
		tokencache.AuditSessionRevoked: {{subject: "bob-sub", session: true}},
	}
	events, err := ledger.AuditTrail(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]tokencache.Event{}
	for i := len(events) - 1; i >= 0; i-- {
		got[events[i].Kind] = append(got[events[i].Kind], events[i])
	}
	for kind, ws := range wants {
		if len(got[kind]) != len(ws) {
			t.Errorf("%s: got %d events %+v, want %d", kind, len(got[kind]), got[kind], len(ws))
			continue
		}
		for i, w := range ws {
			e := got[kind][i]
			if e.Subject != w.subject || e.KeyID != w.keyID || (e.Session != "") != w.session || e.Time.IsZero() {
				t.Errorf("%s #%d: got %+v, want subject %q, key %q, session %v", kind, i, e, w.subject, w.keyID, w.session)
			}
		}
	}
	if len(events) != 10 {
		t.Errorf("events: got %d, want 10: %+v", len(events), events)
	}

	// Every event is one log line with audit=true; no secret reaches the logs.
	logs := b.logs.String()
	lines := 0
	for line := range strings.SplitSeq(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["audit"] == true {
			lines++
		}
	}
	if lines != len(events) {
		t.Errorf("audit log lines: got %d, want %d", lines, len(events))
	}
	for name, secret := range map[string]string{"bob's access token": bobAccess, "feed key": created.Key, "refresh token": refresh, "access token": access3, "other refresh token": refresh3, "csrf": csrf} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s reached the logs", name)
		}
		for _, e := range events {
			if raw, _ := json.Marshal(e); bytes.Contains(raw, []byte(secret)) {
				t.Errorf("the %s reached the audit trail: %s", name, raw)
			}
		}
	}
}

func TestAdminExportsParse(t *testing.T) {
	b, _ := newAdminBridge(t)
	cookie, _ := b.signInAs(t, ada)
	b.idp.m.QueueUser(bob)
	access, _ := b.signIn(t)
	b.get(t, "/odata/test/People", bearer(access))

	status, body := b.call(t, http.MethodGet, "/admin/audit.csv", cookie, nil, "")
	if status != http.StatusOK {
		t.Fatalf("audit.csv: %d", status)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("audit.csv does not parse: %v", err)
	}
	if len(rows) != 3 || strings.Join(rows[0], ",") != "time,kind,subject,email,session,key_id,detail" || rows[1][1] != tokencache.AuditSignIn || rows[1][2] != "bob-sub" {
		t.Errorf("audit.csv: got %q, want a header and two sign-ins, bob's first", rows)
	}

	status, body = b.call(t, http.MethodGet, "/admin/audit.json?user=ada-sub", cookie, nil, "")
	var events []tokencache.Event
	if err := json.Unmarshal([]byte(body), &events); status != http.StatusOK || err != nil {
		t.Fatalf("audit.json: %d %v", status, err)
	}
	if len(events) != 1 || events[0].Subject != "ada-sub" {
		t.Errorf("audit.json?user=ada-sub: got %+v, want ada's sign-in", events)
	}

	status, body = b.call(t, http.MethodGet, "/admin/usage.json", cookie, nil, "")
	var usage usageExport
	if err := json.Unmarshal([]byte(body), &usage); status != http.StatusOK || err != nil {
		t.Fatalf("usage.json: %d %v", status, err)
	}
	if len(usage.Hours) != 1 || usage.Hours[0].Requests != 1 || len(usage.Users) != 1 || usage.Users[0].ID != "bob-sub" {
		t.Errorf("usage.json: got %+v, want one hour with one request by bob-sub", usage)
	}
}

func TestCSVSafe(t *testing.T) {
	tests := []struct{ in, want string }{{"=1+1", "'=1+1"}, {"@x", "'@x"}, {"ada", "ada"}, {"", ""}, {"-2", "'-2"}}
	for _, tt := range tests {
		if got := csvSafe(tt.in); got != tt.want {
			t.Errorf("csvSafe(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEntitySet(t *testing.T) {
	tests := []struct{ path, want string }{
		{"People", "People"}, {"People('a%2Fb')/Orders", ""}, {"", ""}, {"$metadata", ""}, {"%24batch", ""}, {"Items(1)", ""}, {"Items/$count", ""},
	}
	for _, tt := range tests {
		if got := entitySetOf(tt.path); got != tt.want {
			t.Errorf("entitySetOf(%q): got %q, want %q", tt.path, got, tt.want)
		}
	}
}

// TestConsentAudit: starting admin consent and each result are audit events.
func TestConsentAudit(t *testing.T) {
	p := idptest.NewEntra(t)
	store, err := tokencache.New(tokencache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ledger := tokencache.NewLedger(tokencache.LedgerOptions{FlushInterval: -1})
	srv := httptest.NewUnstartedServer(nil)
	public := "http://" + srv.Listener.Addr().String()
	s, err := New(Options{PublicURL: public, Store: store, Ledger: ledger,
		Entra: idp.EntraConfig{Authority: p.URL, AllowedTenants: []string{tenantA, tenantB}, ClientID: entraClientID, ClientSecret: entraSecret}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = s
	srv.Start()
	t.Cleanup(srv.Close)

	browser := newBrowser(t)
	granted := "/oauth/callback?admin_consent=True&tenant=" + tenantA + "&state=" + url.QueryEscape(startConsent(t, public, browser))
	browse(t, browser, public+granted)
	refused := "/oauth/callback?error=access_denied&error_description=declined&state=" + url.QueryEscape(startConsent(t, public, browser))
	browse(t, browser, public+refused)

	events, err := ledger.AuditTrail(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := len(events) - 1; i >= 0; i-- {
		got = append(got, events[i].Kind+" "+events[i].Detail)
	}
	want := []string{
		tokencache.AuditConsentStarted + " tenant=" + tenantA,
		tokencache.AuditConsentResult + " granted tenant=" + tenantA,
		tokencache.AuditConsentStarted + " tenant=" + tenantA,
		tokencache.AuditConsentResult + " refused tenant= error=access_denied",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("consent events:\ngot  %q\nwant %q", got, want)
	}
}

// TestTailWriterSeesNextLinks: the next link is found at the start or the
// end of a body written in pieces of any size, and not in the middle.
// TestPanicUnderMeter: a feed that panics before writing still gets the
// recovery middleware's 500 through the metered writer.
func TestPanicUnderMeter(t *testing.T) {
	b, _ := newAdminBridge(t, func(o *Options) {
		o.Sources[0].Feed = feedFunc(func(http.ResponseWriter, *http.Request, string, string, odata.Authorizer) { panic("boom") })
	})
	b.idp.m.QueueUser(ada)
	access, _ := b.signIn(t)
	if resp, body := b.get(t, "/odata/test/People", bearer(access)); resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("panicking feed: got %d %s, want 500", resp.StatusCode, body)
	}
}

package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/odata"
)

// k2Upstream is a test double of K2's Workflow REST API (api/workflow/v1)
// in the documented shapes: every user sees only their own tasks, like K2
// trims the worklist per user.
type k2Upstream struct {
	srv    *httptest.Server
	tasks  map[string][]map[string]any // bearer token → tasks
	calls  atomic.Int64
	paging string // "", "page", "offset" or "next": how tasks are paged
	size   int    // upstream page size when paging
	status int    // when set, every answer has this status
	body   string // when set, every answer has this body
}

const upstreamBase = "/api/workflow/v1/"

func newK2Upstream(t *testing.T) *k2Upstream {
	t.Helper()
	u := &k2Upstream{tasks: map[string][]map[string]any{
		"alice": makeTasks("alice", 53),
		"bob":   makeTasks("bob", 4),
		"carol": nil,
	}, size: 10}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+upstreamBase+"tasks", u.serveTasks)
	mux.HandleFunc("GET "+upstreamBase+"workflows", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"itemCount": 2, "workflows": []map[string]any{
			{"id": 1, "defaultVersionId": 11, "name": "Leave Request", "folder": "HR", "systemName": "HR\\Leave Request"},
			{"id": 2, "defaultVersionId": 21, "name": "Expense Claim", "folder": "Finance", "systemName": "Finance\\Expense Claim"},
		}})
	})
	mux.HandleFunc("GET "+upstreamBase+"instances", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"itemCount": 3, "instances": []map[string]any{
			instance(100, 1), instance(101, 1), instance(200, 2),
		}})
	})
	mux.HandleFunc("GET "+upstreamBase+"workflows/{id}/instances", func(w http.ResponseWriter, r *http.Request) {
		var list []map[string]any
		switch r.PathValue("id") {
		case "1":
			list = []map[string]any{instance(100, 0), instance(101, 0)}
		case "2":
			list = []map[string]any{instance(200, 0)}
		}
		writeJSON(w, map[string]any{"itemCount": len(list), "instances": list})
	})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		if _, ok := u.tasks[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]; !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if u.status != 0 {
			http.Error(w, "upstream says no", u.status)
			return
		}
		if u.body != "" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(u.body))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func instance(id, workflowID int) map[string]any {
	m := map[string]any{
		"id": id, "folio": fmt.Sprintf("Folio %d", id), "status": "Active", "priority": 1,
		"startDate": "2026-02-01T08:00:00Z", "finishDate": nil,
		"originator": map[string]any{"username": "K2:DENALLIX\\alice", "displayName": "Alice"},
	}
	if workflowID != 0 {
		m["workflowId"] = workflowID
	}
	return m
}

func (u *k2Upstream) serveTasks(w http.ResponseWriter, r *http.Request) {
	all := u.tasks[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	q := r.URL.Query()
	from, to := 0, len(all)
	var next string
	switch u.paging {
	case "page":
		page, _ := strconv.Atoi(q.Get("page"))
		size, _ := strconv.Atoi(q.Get("pageSize"))
		from = min((page-1)*size, len(all))
		to = min(from+size, len(all))
	case "offset":
		off, _ := strconv.Atoi(q.Get("offset"))
		from = min(off, len(all))
		to = min(from+u.size, len(all))
	case "next":
		from, _ = strconv.Atoi(q.Get("cursor"))
		from = min(from, len(all))
		to = min(from+u.size, len(all))
		if to < len(all) {
			next = "tasks?cursor=" + strconv.Itoa(to)
		}
	}
	body := map[string]any{"itemCount": len(all), "tasks": all[from:to]}
	if u.paging == "next" {
		body = map[string]any{"links": map[string]any{"self": "x", "next": next}, "tasks": all[from:to], "itemCount": len(all)}
	}
	writeJSON(w, body)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

var taskStatuses = []string{"Available", "Allocated", "Open", "Completed"}

func makeTasks(user string, n int) []map[string]any {
	start := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{
			"serialNumber":          fmt.Sprintf("%s_%d", user, i+1),
			"status":                taskStatuses[i%len(taskStatuses)],
			"taskStartDate":         start.Add(time.Duration(i) * 7 * time.Hour).Format("2006-01-02T15:04:05.000Z"),
			"sleepUntil":            nil,
			"priority":              i % 3,
			"formURL":               "https://k2.example.com/Runtime/Form/Approve?SN=" + strconv.Itoa(i+1),
			"workflowID":            1 + i%2,
			"workflowName":          []string{"Leave Request", "Expense Claim"}[i%2],
			"workflowInstanceID":    100 + i,
			"workflowInstanceFolio": fmt.Sprintf("Folio %d", 100+i),
			"activityName":          "Manager Approval",
			"originator": map[string]any{
				"username": "K2:DENALLIX\\" + user, "fqn": "K2:DENALLIX\\" + user,
				"email": user + "@denallix.com", "manager": "K2:DENALLIX\\boss", "displayName": strings.ToUpper(user[:1]) + user[1:],
			},
			"actions": map[string]any{
				"nonBatchableActions": []string{},
				"batchableActions":    []string{"Approve", "Decline"},
				"systemActions":       []string{"Redirect", "Sleep"},
			},
		}
	}
	return tasks
}

// bearer is a test odata.Authorizer: it sends token, or renewed after a 401.
type bearer struct {
	token, renewed string
	renews         int
}

func (b *bearer) Authorize(_ context.Context, out *http.Request, renew bool) error {
	t := b.token
	if renew {
		b.renews++
		t = b.renewed
	}
	out.Header.Set("Authorization", "Bearer "+t)
	return nil
}

var _ odata.Authorizer = (*bearer)(nil)

// statusOf maps the odata sentinels as the connector does.
func statusOf(err error) int {
	switch {
	case errors.Is(err, odata.ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, odata.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, odata.ErrNotImplemented):
		return http.StatusNotImplemented
	case errors.Is(err, odata.ErrUpstreamUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, odata.ErrUpstreamUnreachable):
		return http.StatusBadGateway
	case errors.Is(err, odata.ErrUpstreamTimeout):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func testErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(statusOf(err))
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": strconv.Itoa(statusOf(err)), "message": err.Error()}})
}

const publicBase = "https://bridge.example.com/odata/workflow/"

// newTestService builds the k2-workflow service against the test upstream.
func newTestService(t *testing.T, u *k2Upstream, edit func(*Config)) *Service {
	t.Helper()
	sets, err := Preset(PresetK2Workflow)
	if err != nil {
		t.Fatal(err)
	}
	src := Config{Name: "workflow", URL: u.srv.URL + upstreamBase, PublicBase: publicBase, EntitySets: sets}
	if edit != nil {
		edit(&src)
	}
	s, err := New(src, Options{Client: u.srv.Client(), Secret: []byte("test-secret"), ErrorHandler: testErrorHandler})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// get serves one request; target is a full bridge URL or a path under the service root.
func get(t *testing.T, s *Service, target, user string, auth odata.Authorizer, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = publicBase + target
	}
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	path, ok := strings.CutPrefix(r.URL.EscapedPath(), "/odata/workflow/")
	if !ok {
		t.Fatalf("target %q is not under /odata/workflow/", target)
	}
	w := httptest.NewRecorder()
	s.ServeFeed(w, r, path, user, auth)
	return w
}

// feed is a decoded entity-set answer.
type feed struct {
	Context  string           `json:"@odata.context"`
	Count    *int             `json:"@odata.count"`
	Value    []map[string]any `json:"value"`
	NextLink string           `json:"@odata.nextLink"`
}

func decodeFeed(t *testing.T, w *httptest.ResponseRecorder) feed {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status: got %d, want 200; body %s", w.Code, w.Body)
	}
	var f feed
	if err := json.Unmarshal(w.Body.Bytes(), &f); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, w.Body)
	}
	return f
}

func errorMessage(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body is not JSON: %v\n%s", err, w.Body)
	}
	return e.Error.Message
}

// withQuery is a helper for building escaped targets.
func target(path string, opts ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(opts); i += 2 {
		v.Add(opts[i], opts[i+1])
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + strings.ReplaceAll(v.Encode(), "+", "%20")
}

package rest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/odata"
)

// serve is get that also returns what ServeFeed returned.
func serve(t *testing.T, s *Service, method, target string) (*httptest.ResponseRecorder, odata.Served) {
	t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = publicBase + target
	}
	r := httptest.NewRequest(method, target, nil)
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/odata/workflow/")
	w := httptest.NewRecorder()
	return w, s.ServeFeed(w, r, path, "alice", &bearer{token: "alice"})
}

func TestServedPages(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, func(src *Config) { src.PageSize = 20 })
	// alice has 53 tasks: pages of 20, 20 and 13.
	next := "Tasks"
	for i, want := range []odata.Served{
		{Read: true, Rows: 20, Next: true},
		{Read: true, Rows: 20, Next: true},
		{Read: true, Rows: 13},
	} {
		w, got := serve(t, s, http.MethodGet, next)
		if got != want {
			t.Errorf("page %d: served %+v, want %+v", i, got, want)
		}
		f := decodeFeed(t, w)
		if int64(len(f.Value)) != got.Rows || (f.NextLink != "") != got.Next {
			t.Errorf("page %d: served %+v, but the page has %d rows and next link %q", i, got, len(f.Value), f.NextLink)
		}
		next = f.NextLink
	}
	if next != "" {
		t.Errorf("the last page names a next one: %s", next)
	}
	// An empty page is read, with no rows.
	if _, got := serve(t, s, http.MethodGet, target("Tasks", "$filter", "status eq 'Nope'")); got != (odata.Served{Read: true}) {
		t.Errorf("empty page: served %+v, want read with no rows", got)
	}
}

func TestServedNotPages(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	for _, tc := range []struct{ method, target string }{
		{http.MethodGet, ""},
		{http.MethodGet, "$metadata"},
		{http.MethodGet, "Tasks/$count"},
		{http.MethodGet, "Tasks('alice_1')"},
		{http.MethodGet, "Nope"},
		{http.MethodHead, "Tasks"},
	} {
		w, got := serve(t, s, tc.method, tc.target)
		if got != (odata.Served{}) {
			t.Errorf("%s %q (status %d): served %+v, want nothing read", tc.method, tc.target, w.Code, got)
		}
	}
}

// failingWriter is a ResponseWriter whose client is gone.
type failingWriter struct{ *httptest.ResponseRecorder }

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

func TestServedWriteFails(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	r := httptest.NewRequest(http.MethodGet, publicBase+"Tasks", nil)
	if got := s.ServeFeed(failingWriter{httptest.NewRecorder()}, r, "Tasks", "alice", &bearer{token: "alice"}); got != (odata.Served{}) {
		t.Errorf("served %+v to a client that is gone, want nothing read", got)
	}
}

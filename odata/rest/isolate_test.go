package rest

import (
	"net/http"
	"testing"

	"github.com/odata-bridge/bridge/odata"
)

// Every answer of the REST service, success or error, carries the isolation headers of
// every response under /odata.
func TestServiceResponsesAreIsolated(t *testing.T) {
	u := newK2Upstream(t)
	s := newTestService(t, u, nil)
	auth := &bearer{token: "alice"}
	for _, tt := range []struct {
		target string
		status int
	}{
		{"", http.StatusOK},
		{"$metadata", http.StatusOK},
		{"Tasks", http.StatusOK},
		{"Tasks/$count", http.StatusOK},
		{"Tasks?$apply=groupby((status))", http.StatusNotImplemented},
		{"Tasks?$top=-1", http.StatusBadRequest},
		{"Nope", http.StatusNotFound},
	} {
		w := get(t, s, tt.target, "alice", auth)
		if w.Code != tt.status {
			t.Errorf("%q: status %d, want %d; body %s", tt.target, w.Code, tt.status, w.Body)
		}
		h := w.Result().Header
		if got := h.Values("Content-Security-Policy"); len(got) != 1 || got[0] != odata.ContentSecurityPolicy {
			t.Errorf("%q: Content-Security-Policy = %q, want %q", tt.target, got, odata.ContentSecurityPolicy)
		}
		if got := h.Values("X-Content-Type-Options"); len(got) != 1 || got[0] != "nosniff" {
			t.Errorf("%q: X-Content-Type-Options = %q, want nosniff", tt.target, got)
		}
	}
}

package odata

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// countingTransport counts the requests that pass through it.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// TestWrapTransport: every upstream call goes through the wrapper, whether
// the transport is the relay's own or given, and a wrapped own transport
// still enforces the header timeout.
func TestWrapTransport(t *testing.T) {
	cases := []struct {
		name      string
		transport http.RoundTripper
	}{
		{"own", nil},
		{"given", &http.Transport{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/svc/Slow" {
					select {
					case <-release:
					case <-r.Context().Done():
					}
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"value":[]}`))
			})
			defer close(release)
			var calls, wraps atomic.Int64
			opts := Options{Transport: tc.transport, WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
				wraps.Add(1)
				return countingTransport{rt, &calls}
			}}
			b := newBridge(t, Upstream{URL: u.base(), HeaderTimeout: 200 * time.Millisecond}, opts, nil)
			for _, path := range []string{"/odata/s/Items", "/odata/s/Slow"} {
				res, _, err := b.do(t, "GET", path, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				if path == "/odata/s/Slow" {
					if res.StatusCode != http.StatusGatewayTimeout {
						t.Errorf("%s: status %d, want 504", path, res.StatusCode)
					}
					if got := <-b.errs; !errors.Is(got, ErrUpstreamTimeout) {
						t.Errorf("error = %v, want ErrUpstreamTimeout", got)
					}
				} else if res.StatusCode != http.StatusOK {
					t.Errorf("%s: status %d, want 200", path, res.StatusCode)
				}
			}
			if got := wraps.Load(); got != 1 {
				t.Errorf("wrapped %d transports, want 1", got)
			}
			if got := calls.Load(); got != 2 {
				t.Errorf("%d calls through the wrapper, want 2", got)
			}
		})
	}
}

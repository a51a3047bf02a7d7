package fault_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/odata-bridge/bridge/fault"
)

var errGone = fault.Sentinel(fault.NotFound, "Gone", "It is gone.")

func TestWithKeepsSentinelAndMessage(t *testing.T) {
	err := fmt.Errorf("lookup: %w", fault.Withf(errGone, "no item %q", "a:b: c"))
	if !errors.Is(err, errGone) {
		t.Fatalf("errors.Is(err, errGone) = false")
	}
	fe := fault.As(err)
	if fe == nil {
		t.Fatal("As = nil")
	}
	// The message is the one given, whole, however many ": " it holds.
	if got, want := fe.Message, `no item "a:b: c"`; got != want {
		t.Errorf("Message = %q, want %q", got, want)
	}
	if got, want := fe.Code, "Gone"; got != want {
		t.Errorf("Code = %q, want %q", got, want)
	}
	if got, want := fe.Kind.Status(), http.StatusNotFound; got != want {
		t.Errorf("Status = %d, want %d", got, want)
	}
}

func TestBecauseKeepsCauseOutOfMessage(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.1:443: connection refused")
	down := fault.Sentinel(fault.BadGateway, "UpstreamUnreachable", "The upstream could not be reached.")
	err := fault.Because(down, cause)
	if !errors.Is(err, down) || !errors.Is(err, cause) {
		t.Fatalf("errors.Is: sentinel %v, cause %v; want both", errors.Is(err, down), errors.Is(err, cause))
	}
	if got, want := fault.As(err).Message, "The upstream could not be reached."; got != want {
		t.Errorf("Message = %q, want %q", got, want)
	}
	if got, want := err.Error(), "The upstream could not be reached.: "+cause.Error(); got != want {
		t.Errorf("Error() = %q, want %q (the cause is for logs)", got, want)
	}
}

func TestKindStatus(t *testing.T) {
	for _, tc := range []struct {
		kind  fault.Kind
		want  int
		retry bool
	}{
		{fault.Internal, 500, false},
		{fault.BadRequest, 400, false},
		{fault.Unauthorized, 401, false},
		{fault.Forbidden, 403, false},
		{fault.NotFound, 404, false},
		{fault.Conflict, 409, false},
		{fault.TooManyRequests, 429, false},
		{fault.NotImplemented, 501, false},
		{fault.BadGateway, 502, false},
		{fault.Unavailable, 503, true},
		{fault.Timeout, 504, false},
		{fault.Kind(200), 500, false},
	} {
		if got := tc.kind.Status(); got != tc.want {
			t.Errorf("Kind(%d).Status() = %d, want %d", tc.kind, got, tc.want)
		}
		if got := tc.kind.Retry(); got != tc.retry {
			t.Errorf("Kind(%d).Retry() = %v, want %v", tc.kind, got, tc.retry)
		}
	}
}

func TestAsWithoutFault(t *testing.T) {
	if fe := fault.As(errors.New("plain")); fe != nil {
		t.Errorf("As(plain) = %v, want nil", fe)
	}
}

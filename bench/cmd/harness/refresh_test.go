package main

import (
	"context"
	"testing"
	"time"
)

func TestReplayRefreshSendsThePowerQueryPattern(t *testing.T) {
	tests := []struct {
		pages, rows                int
		wantRequests, wantDistinct int
	}{
		// $metadata and the service document twice, the first page twice, then the rest.
		{pages: 1, rows: 3, wantRequests: 6, wantDistinct: 3},
		{pages: 5, rows: 2, wantRequests: 10, wantDistinct: 7},
	}
	for _, tt := range tests {
		up, err := startSlowUpstream(context.Background(), tt.rows, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		res := replayRefresh(context.Background(), newRefreshClient(), up.base, "", tt.pages, tt.rows, time.Millisecond)
		if res.err != nil {
			t.Fatalf("%d pages: %v", tt.pages, res.err)
		}
		if res.pages != tt.pages {
			t.Errorf("%d pages: read %d", tt.pages, res.pages)
		}
		if n, d := up.counts(); n != tt.wantRequests || d != tt.wantDistinct {
			t.Errorf("%d pages: %d requests (%d distinct), want %d (%d)", tt.pages, n, d, tt.wantRequests, tt.wantDistinct)
		}
		if res.wall < time.Duration(tt.wantRequests)*time.Millisecond {
			t.Errorf("%d pages: wall %s shorter than the upstream's time", tt.pages, res.wall)
		}
		up.close()
	}
}

func TestNextLinkOf(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"value":[],"@odata.nextLink":"http://h/svc/Rows?total=2\u0026$skiptoken=1"}`, "http://h/svc/Rows?total=2&$skiptoken=1"},
		{`{"value":[]}`, ""},
	}
	for _, tt := range tests {
		if got := nextLinkOf([]byte(tt.body)); got != tt.want {
			t.Errorf("nextLinkOf(%s) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestParseBudget(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "1GiB": 1 << 30, "64KiB": 64 << 10} {
		if got, err := parseBudget(in); got != want || err != nil {
			t.Errorf("parseBudget(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseBudget("lots"); err == nil {
		t.Error(`parseBudget("lots") succeeded`)
	}
}

package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/odata"
)

// newTestUpstream serves an Upstream with pageRows rows a page on a test server.
func newTestUpstream(t *testing.T, pageRows int) (*httptest.Server, *Upstream) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String() + "/svc/"
	u := NewUpstream(base, pageRows)
	srv.Config.Handler = u
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, u
}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestUpstreamEntity(t *testing.T) {
	_, u := newTestUpstream(t, 10)
	status, h, b := get(t, u.Base+"Items(1)")
	if status != http.StatusOK {
		t.Fatalf("status = %d, want 200", status)
	}
	if len(b) != entitySize {
		t.Errorf("entity is %d bytes, want %d", len(b), entitySize)
	}
	if got := h.Get("OData-Version"); got != odata.Version4 {
		t.Errorf("OData-Version = %q, want 4.0", got)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("entity is not JSON: %v", err)
	}
	if got, want := v["@odata.id"], u.Base+"Items(1)"; got != want {
		t.Errorf("@odata.id = %v, want %v", got, want)
	}
}

type page struct {
	Value []map[string]any `json:"value"`
	Next  string           `json:"@odata.nextLink"`
}

func TestUpstreamPagesFollowAbsoluteNextLinks(t *testing.T) {
	_, u := newTestUpstream(t, 10)
	tests := []struct {
		total     int
		wantPages int
		wantRows  int
	}{
		{total: 10, wantPages: 1, wantRows: 10},
		{total: 25, wantPages: 3, wantRows: 30},
		{total: 30, wantPages: 3, wantRows: 30},
	}
	for _, tt := range tests {
		next := u.Base + "Rows?total=" + itoa(tt.total)
		pages, rows := 0, 0
		for next != "" && pages < 100 {
			if !strings.HasPrefix(next, u.Base) {
				t.Fatalf("total=%d: next link %q is not absolute under %q", tt.total, next, u.Base)
			}
			status, _, b := get(t, next)
			if status != http.StatusOK {
				t.Fatalf("total=%d: GET %s = %d", tt.total, next, status)
			}
			var p page
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatalf("total=%d: page is not JSON: %v", tt.total, err)
			}
			pages++
			rows += len(p.Value)
			next = p.Next
		}
		if pages != tt.wantPages || rows != tt.wantRows {
			t.Errorf("total=%d: got %d pages, %d rows; want %d pages, %d rows", tt.total, pages, rows, tt.wantPages, tt.wantRows)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestUpstreamPageIsAbout275KB(t *testing.T) {
	_, u := newTestUpstream(t, 1000)
	_, _, b := get(t, u.Base+"Rows?total=5000")
	if n := len(b); n < 250_000 || n > 300_000 {
		t.Errorf("1,000-row page is %d bytes, want about 275 KB", n)
	}
}

func TestUpstreamBig(t *testing.T) {
	_, u := newTestUpstream(t, 1000)
	for _, size := range []int{1 << 10, 1 << 20, 3<<20 + 17} {
		_, _, b := get(t, u.Base+"Big?bytes="+itoa(size))
		var p page
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("bytes=%d: body is not JSON: %v", size, err)
		}
		if len(b) > size+len(u.block) || (size > len(u.block) && len(b) < size-len(u.block)) {
			t.Errorf("bytes=%d: body is %d bytes, want within a block (%d) of it", size, len(b), len(u.block))
		}
	}
	if status, _, _ := get(t, u.Base+"Big"); status != http.StatusBadRequest {
		t.Errorf("Big without bytes = %d, want 400", status)
	}
	if status, _, _ := get(t, u.Base+"Nope"); status != http.StatusNotFound {
		t.Errorf("unknown path = %d, want 404", status)
	}
}

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    wrkResult
		wantErr error
	}{
		{
			name: "result line among wrk's own output",
			out:  "Running 1s test @ http://127.0.0.1:1\n  1 threads and 2 connections\n" + resultPrefix + `{"requests":100,"bytes":2000,"duration_us":1000000,"p50_us":10,"p99_us":90,"connect":0,"read":1,"write":0,"status":2,"timeout":0}` + "\n",
			want: wrkResult{Requests: 100, Bytes: 2000, Micros: 1e6, P50: 10, P99: 90, Read: 1, Status: 2},
		},
		{name: "no result line", out: "Running 1s test\n", wantErr: errNoResult},
		{name: "zero duration", out: resultPrefix + `{"requests":0,"duration_us":0}`, wantErr: errNoResult},
	}
	for _, tt := range tests {
		got, err := parseWrk([]byte(tt.out))
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
	r := wrkResult{Requests: 100, Bytes: 2000, Micros: 2e6, Read: 1, Status: 2}
	if got := r.ReqPerSec(); got != 50 {
		t.Errorf("ReqPerSec = %v, want 50", got)
	}
	if got := r.BytesPerSec(); got != 1000 {
		t.Errorf("BytesPerSec = %v, want 1000", got)
	}
	if got := r.Errors(); got != 3 {
		t.Errorf("Errors = %v, want 3", got)
	}
}

func FuzzParseWrk(f *testing.F) {
	seed, err := os.ReadFile("testdata/wrk-output.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(resultPrefix + "{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseWrk(b)
		if err == nil && r.Micros <= 0 {
			t.Errorf("parseWrk accepted a zero duration: %+v", r)
		}
	})
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		line string
		want float64
	}{
		{"1234 (bridge) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0", 3},
		{"99 (a) b) c) R 1 99 99 0 -1 0 0 0 0 0 100 100 0 0", 2},
		{"garbage", 0},
		{"1 (x) S 1", 0},
	}
	for _, tt := range tests {
		if got := parseStatCPU([]byte(tt.line)); got != tt.want {
			t.Errorf("parseStatCPU(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}

func TestMeterSeesThisProcess(t *testing.T) {
	m := startMeter(os.Getpid())
	x := 0
	for i := range 10_000_000 {
		x += i
	}
	u := m.stop()[0]
	if u.PeakRSS <= 0 || u.HWM <= 0 {
		t.Errorf("usage = %+v, want a positive RSS and VmHWM (x=%d)", u, x)
	}
}

func TestAlternateReversesEveryOtherRound(t *testing.T) {
	var got []string
	err := alternate(t.Context(), 3, []string{"a", "b", "c"}, func(_ int, n string) error {
		got = append(got, n)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "abccbaabc"
	if strings.Join(got, "") != want {
		t.Errorf("order = %v, want %s", got, want)
	}
}

func TestLuaScriptListsPathsAndHeaders(t *testing.T) {
	dir := t.TempDir()
	l := wrkLoad{Paths: []string{"/a", "/b"}, Auth: []string{"Bearer x"}}
	f, err := l.luaScript(dir, "t")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := os.ReadFile(f)
	for _, want := range []string{dir + "/t.paths", dir + "/t.auth", "function done", "function request"} {
		if !strings.Contains(string(s), want) {
			t.Errorf("script lacks %q", want)
		}
	}
	p, _ := os.ReadFile(dir + "/t.paths")
	if string(p) != "/a\n/b\n" {
		t.Errorf("paths file = %q, want %q", p, "/a\n/b\n")
	}
}

func TestCheckToolsNamesWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := checkTools()
	if _, statErr := os.Stat("/usr/sbin/nginx"); statErr == nil {
		// nginx is found through /usr/sbin even without PATH; wrk and go are not.
		if !errors.Is(err, errMissingTool) || !strings.Contains(err.Error(), "wrk (Debian package wrk)") {
			t.Fatalf("checkTools() = %v, want it to name wrk", err)
		}
		return
	}
	if !errors.Is(err, errMissingTool) || !strings.Contains(err.Error(), "nginx-light") || !strings.Contains(err.Error(), "apt-get install -y nginx-light wrk") {
		t.Fatalf("checkTools() = %v, want it to name nginx-light and the install command", err)
	}
}

package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/odata-bridge/bridge/demo"
	"github.com/odata-bridge/bridge/odata"
)

// demoBridge is the bridge in front of the demo world, as `bridge demo`
// runs it, with a feed key per demo user.
type demoBridge struct {
	url  string
	keys map[string]string
}

func startDemo(t *testing.T) *demoBridge {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	world, err := demo.Start(ctx, demo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	public := "http://" + ln.Addr().String()
	cfg, err := demoConfig(world, public)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, io.Discard, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		world.Close()
	})
	d := &demoBridge{url: public, keys: map[string]string{}}
	for _, user := range world.Users[:2] {
		key, err := demoFeedKey(ctx, public, user)
		if err != nil {
			t.Fatalf("feed key for %s: %v", user, err)
		}
		d.keys[user] = key
	}
	return d
}

// powerQueryHeaders are the headers Power Query's OData.Feed sends.
func powerQueryHeaders(req *http.Request) {
	req.Header.Set("User-Agent", "Microsoft.Data.Mashup (https://go.microsoft.com/fwlink/?LinkID=304225)")
	req.Header.Set("Accept", "application/json;odata.metadata=minimal;q=1.0,application/json;odata=minimalmetadata;q=0.9,application/atomsvc+xml;q=0.8,application/atom+xml;q=0.8,application/xml;q=0.7,text/plain;q=0.7")
	req.Header.Set("OData-MaxVersion", odata.Version4)
	req.Header.Set("MaxDataServiceVersion", odata.Version3)
	req.Header.Set("Accept-Encoding", "gzip, deflate")
}

func (d *demoBridge) get(t *testing.T, user, rawURL string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	powerQueryHeaders(req)
	req.SetBasicAuth(user, d.keys[user])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	raw := readBody(t, resp)
	if err := json.Unmarshal(raw, &body); err != nil && resp.StatusCode == http.StatusOK {
		t.Fatalf("GET %s: body is not JSON: %v", rawURL, err)
	}
	return resp.StatusCode, resp.Header, body
}

// followAll reads a feed to its end, as Power Query does, and returns every
// row's key.
func (d *demoBridge) followAll(t *testing.T, user, start, keyField, nextField string) []string {
	t.Helper()
	var keys []string
	next := start
	for pages := 0; next != ""; pages++ {
		if pages > 1000 {
			t.Fatal("more than 1000 pages")
		}
		if !strings.HasPrefix(next, d.url+"/odata/") {
			t.Fatalf("next link %q left the bridge", next)
		}
		status, _, body := d.get(t, user, next)
		if status != http.StatusOK {
			t.Fatalf("GET %s: status %d %v", next, status, body)
		}
		rows, _ := body["value"].([]any)
		for _, r := range rows {
			keys = append(keys, fmt.Sprint(r.(map[string]any)[keyField]))
		}
		next, _ = body[nextField].(string)
	}
	return keys
}

// readBody reads a response, gunzipping it: Power Query asks for gzip
// itself, so Go's transport leaves the body compressed.
func readBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return raw
}

func exactlyOnce(t *testing.T, keys []string, want int) {
	t.Helper()
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			t.Fatalf("row %s arrived twice", k)
		}
		seen[k] = true
	}
	if len(keys) != want {
		t.Fatalf("%d rows arrived, want %d", len(keys), want)
	}
}

func TestDemoPowerQueryReplay(t *testing.T) {
	d := startDemo(t)
	for _, tc := range []struct {
		source, set, key, next, count string
	}{
		{"smartobjects", "Orders", "OrderID", "@odata.nextLink", "@odata.count"},
		{"smartobjects-v3", "Orders", "OrderID", "odata.nextLink", "odata.count"},
	} {
		t.Run(tc.source, func(t *testing.T) {
			countURL := d.url + "/odata/" + tc.source + "/" + tc.set + "?$top=0&$count=true"
			if tc.source == "smartobjects-v3" {
				countURL = d.url + "/odata/" + tc.source + "/" + tc.set + "?$top=0&$inlinecount=allpages"
			}
			status, _, body := d.get(t, "alice", countURL)
			if status != http.StatusOK {
				t.Fatalf("count: status %d %v", status, body)
			}
			n, err := count(body[tc.count])
			if err != nil || n < 5000 {
				t.Fatalf("%s = %v, want ≥ 5000 rows in the demo's largest set", tc.count, body[tc.count])
			}
			keys := d.followAll(t, "alice", d.url+"/odata/"+tc.source+"/"+tc.set, tc.key, tc.next)
			exactlyOnce(t, keys, n)
		})
	}
}

func count(v any) (int, error) {
	switch v := v.(type) {
	case float64:
		return int(v), nil
	case string:
		var n int
		_, err := fmt.Sscan(v, &n)
		return n, err
	}
	return 0, fmt.Errorf("not a count: %v", v)
}

func TestDemoWorkflowAsOData(t *testing.T) {
	d := startDemo(t)
	base := d.url + "/odata/workflow/"

	status, _, all := d.get(t, "alice", base+"Tasks?$count=true&$top=0")
	if status != http.StatusOK {
		t.Fatalf("Tasks count: %d %v", status, all)
	}
	total, _ := count(all["@odata.count"])
	if total == 0 {
		t.Fatal("alice has no tasks in the demo")
	}

	// Counting tasks by status with $filter and $count adds up to the total.
	sum := 0
	for _, st := range []string{"Open", "Allocated", "Available", "Sleep", "Completed"} {
		status, _, body := d.get(t, "alice", base+"Tasks?$count=true&$top=0&$filter="+url.QueryEscape("status eq '"+st+"'"))
		if status != http.StatusOK {
			t.Fatalf("filter status %s: %d %v", st, status, body)
		}
		n, _ := count(body["@odata.count"])
		sum += n
	}
	if sum != total {
		t.Errorf("tasks by status add up to %d, want %d", sum, total)
	}

	// Server-driven paging delivers every task exactly once.
	req := base + "Tasks?$select=serialNumber"
	keys := d.followPaged(t, "alice", req, 50)
	exactlyOnce(t, keys, total)

	// $select with $orderby.
	status, _, body := d.get(t, "alice", base+"Tasks?$select=serialNumber,taskStartDate&$orderby=taskStartDate%20desc,serialNumber&$top=20")
	if status != http.StatusOK {
		t.Fatalf("select+orderby: %d %v", status, body)
	}
	prev := "9999"
	for _, r := range body["value"].([]any) {
		row := r.(map[string]any)
		if len(row) != 2 {
			t.Errorf("row %v: $select should leave two properties", row)
		}
		d, _ := row["taskStartDate"].(string)
		if d > prev {
			t.Errorf("taskStartDate %s after %s: not descending", d, prev)
		}
		prev = d
	}

	// A tampered skiptoken is refused; $apply is not implemented.
	status, hdr, paged := d.getPrefer(t, "alice", base+"Tasks", 10)
	next, _ := paged["@odata.nextLink"].(string)
	if status != http.StatusOK || next == "" {
		t.Fatalf("no next link with maxpagesize=10: %d %v", status, hdr)
	}
	u, _ := url.Parse(next)
	q := u.Query()
	tok := q.Get("$skiptoken")
	q.Set("$skiptoken", tok[:len(tok)-2]+"xx")
	u.RawQuery = q.Encode()
	if status, _, body := d.get(t, "alice", u.String()); status != http.StatusBadRequest {
		t.Errorf("tampered skiptoken: %d %v, want 400", status, body)
	}
	if status, _, body := d.get(t, "alice", base+"Tasks?$apply=groupby((status))"); status != http.StatusNotImplemented {
		t.Errorf("$apply: %d %v, want 501", status, body)
	}

	// Per-user isolation: bob sees his own tasks, none of alice's.
	aliceKeys := map[string]bool{}
	for _, k := range keys {
		aliceKeys[k] = true
	}
	bobKeys := d.followPaged(t, "bob", req, 1000)
	if len(bobKeys) == 0 {
		t.Fatal("bob has no tasks in the demo")
	}
	for _, k := range bobKeys {
		if aliceKeys[k] {
			t.Fatalf("bob sees alice's task %s", k)
		}
	}
}

func (d *demoBridge) getPrefer(t *testing.T, user, rawURL string, pageSize int) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	powerQueryHeaders(req)
	req.Header.Set("Prefer", fmt.Sprintf("odata.maxpagesize=%d", pageSize))
	req.SetBasicAuth(user, d.keys[user])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.Unmarshal(readBody(t, resp), &body); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v", rawURL, err)
	}
	if pa := resp.Header.Get("Preference-Applied"); !strings.Contains(pa, "maxpagesize=") {
		t.Errorf("Preference-Applied = %q, want the page size", pa)
	}
	return resp.StatusCode, resp.Header, body
}

// followPaged is followAll with a Prefer: odata.maxpagesize on every page.
func (d *demoBridge) followPaged(t *testing.T, user, start string, pageSize int) []string {
	t.Helper()
	var keys []string
	deadline := time.Now().Add(2 * time.Minute)
	for next := start; next != ""; {
		if time.Now().After(deadline) {
			t.Fatal("paging did not end")
		}
		status, _, body := d.getPrefer(t, user, next, pageSize)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %v", next, status, body)
		}
		for _, r := range body["value"].([]any) {
			keys = append(keys, fmt.Sprint(r.(map[string]any)["serialNumber"]))
		}
		next, _ = body["@odata.nextLink"].(string)
		if next != "" && !strings.HasPrefix(next, d.url+"/odata/workflow/") {
			t.Fatalf("next link %q left the bridge", next)
		}
	}
	return keys
}

func TestDemoCommandPrintsWhatWorks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--listen", "127.0.0.1:0"}, func(string) string { return "" }, pw)
		pw.Close()
	}()
	defer func() {
		cancel()
		<-done
	}()
	var out strings.Builder
	buf := make([]byte, 4096)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("demo printed no instructions:\n%s", out.String())
		}
		n, err := pr.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			t.Fatalf("demo output ended: %v\n%s", err, out.String())
		}
	}
	go io.Copy(io.Discard, pr)
	text := out.String()
	var curl string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "curl -u ") {
			curl = strings.TrimSpace(line)
		}
	}
	if curl == "" {
		t.Fatalf("no curl line in:\n%s", text)
	}
	// curl -u alice:KEY 'URL'
	fields := strings.Fields(curl)
	user, key, _ := strings.Cut(fields[2], ":")
	target := strings.Trim(fields[3], "'")
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.SetBasicAuth(user, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"value"`) {
		t.Errorf("the printed curl command: %d %s", resp.StatusCode, body)
	}
	base := strings.TrimSuffix(target[:strings.Index(target, "/odata/")], "/")
	for _, path := range []string{"/healthz", "/readyz", "/api/sources", "/"} {
		if got := status(t, base+path); got != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, got)
		}
	}
	// The operators' page is wired and names its admin; without a sign-in it answers 401.
	if !strings.Contains(text, base+"/admin   (sign in as alice)") {
		t.Errorf("demo output names no operators' page:\n%s", text)
	}
	if got := status(t, base+"/admin"); got != http.StatusUnauthorized {
		t.Errorf("GET /admin without a sign-in = %d, want 401", got)
	}
	if got := status(t, base+"/metrics"); got != http.StatusNotFound {
		t.Errorf("GET /metrics on the public listener = %d, want 404", got)
	}
	// The printed metrics URL: a loopback listener of its own.
	var metricsURL string
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Metrics:" {
			metricsURL = f[1]
		}
	}
	if !strings.HasPrefix(metricsURL, "http://127.0.0.1:") || strings.HasPrefix(metricsURL, base) {
		t.Fatalf("printed metrics URL %q, want a loopback listener other than %s", metricsURL, base)
	}
	if got := status(t, metricsURL); got != http.StatusOK {
		t.Errorf("GET %s = %d, want 200", metricsURL, got)
	}
}

// TestDemoVersionsKnownAtStart: every demo source's OData version is in
// /api/sources before any feed is read, so the connector opens a v3 source
// the v3 way right after a start.
func TestDemoVersionsKnownAtStart(t *testing.T) {
	d := startDemo(t)
	resp, err := http.Get(d.url + "/api/sources")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct {
		Name         string  `json:"name"`
		ODataVersion *string `json:"odata_version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"smartobjects": "4.0", "smartobjects-v3": "3.0", "workflow": "4.0"}
	for _, s := range list {
		if s.ODataVersion == nil || *s.ODataVersion != want[s.Name] {
			t.Errorf("%s: odata_version %v, want %q", s.Name, s.ODataVersion, want[s.Name])
		}
	}
	if len(list) != len(want) {
		t.Errorf("%d sources, want %d", len(list), len(want))
	}
}

package odata

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const benchBase = "http://upstream.example:8080/V4/(S(4taa1h2202lz2pi2bpqff3uy))/TripPinServiceRW/"

// benchFeed returns a v4 JSON feed of about size bytes shaped like a TripPin page: with
// full metadata every row carries an absolute id and editLink (two bases per ~450 bytes);
// with minimal metadata, what Power Query asks for, only the context and the next link do.
func benchFeed(size int, full bool) []byte {
	var b bytes.Buffer
	b.Grow(size + 4096)
	fmt.Fprintf(&b, `{"@odata.context":"%s$metadata#People","@odata.nextLink":"%sPeople?%%24skiptoken=20","value":[`, benchBase, benchBase)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		if full {
			fmt.Fprintf(&b, `"@odata.id":"%sPeople('user%d')","@odata.etag":"W/\"08D5EC66AC170EC5\"","@odata.editLink":"%sPeople('user%d')",`, benchBase, i, benchBase, i)
		}
		fmt.Fprintf(&b, `"UserName":"user%d","FirstName":"Russell","LastName":"Whyte","Emails":["Russell@example.com","Russell@contoso.com"],"AddressInfo":[{"Address":"187 Suffolk Ln.","City":{"CountryRegion":"United States","Name":"Boise","Region":"ID"}}],"Gender":"Male","Concurrency":%d,"Age":9007199254740993,"Price":"12345678901234567890.125"}`, i, 635000000000000000+i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// chunkReader hands out at most 32 KiB per Read, like a socket through ReverseProxy.
type chunkReader struct{ b []byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 32<<10)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// BenchmarkRewriter measures the Rewriter on 128 MiB v4 feeds, next to a plain io.Copy
// of the same bytes through the same 32 KiB buffer, so the ratio comes from one run.
func BenchmarkRewriter(b *testing.B) {
	for _, full := range []bool{false, true} {
		name := "metadata=minimal"
		if full {
			name = "metadata=full"
		}
		feed := benchFeed(128<<20, full)
		buf := make([]byte, 32<<10)
		b.Run(name+"/io.Copy", func(b *testing.B) {
			b.SetBytes(int64(len(feed)))
			for b.Loop() {
				io.CopyBuffer(io.Discard, &chunkReader{feed}, buf)
			}
		})
		b.Run(name+"/rewrite", func(b *testing.B) {
			b.SetBytes(int64(len(feed)))
			for b.Loop() {
				rw := NewRewriter(io.Discard, []string{benchBase, "http://internal.example/svc/"}, "https://bridge.example.com/odata/trippin/")
				if _, err := io.CopyBuffer(onlyWriter{rw}, &chunkReader{feed}, buf); err != nil {
					b.Fatal(err)
				}
				if err := rw.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// onlyWriter hides ReadFrom so io.CopyBuffer uses the given buffer.
type onlyWriter struct{ io.Writer }

// feedUpstream streams a v4 JSON feed of n bytes, a 64 KiB run of benchFeed rows
// repeated, with its links pointing at the upstream itself.
func feedUpstream(b *testing.B, n int64, full bool) *httptest.Server {
	b.Helper()
	var chunk []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;odata.metadata=full")
		w.Header()["OData-Version"] = []string{"4.0"}
		for left := n; left > 0; {
			k := min(left, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			left -= k
		}
	}))
	rows := benchFeed(64<<10, full)
	rows = rows[bytes.Index(rows, []byte(`"value":[`))+len(`"value":[`) : bytes.LastIndexByte(rows, '}')+1]
	chunk = bytes.ReplaceAll(append(rows, ','), []byte(benchBase), []byte(srv.URL+"/svc/"))
	b.Cleanup(srv.Close)
	return srv
}

// vmHWM returns the process's peak resident set size in MiB, from /proc (Linux only).
func vmHWM() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkRelayEndToEnd streams a 1 GiB v4 feed through the bridge, which rewrites every
// link, and through a bare httputil.ReverseProxy of the same upstream, for a minimal-metadata
// feed (what Power Query asks for) and a full-metadata one (two links per ~480-byte row).
// Each iteration runs both paths, alternating which goes first, so a noisy shared machine
// loads both alike; the metrics are each path's MB/s, their ratio and the process's peak
// RSS (which includes the upstream and the client).
func BenchmarkRelayEndToEnd(b *testing.B) {
	for _, full := range []bool{false, true} {
		name := "metadata=minimal"
		if full {
			name = "metadata=full"
		}
		b.Run(name, func(b *testing.B) { benchEndToEnd(b, full) })
	}
}

func benchEndToEnd(b *testing.B, full bool) {
	const size = 1 << 30
	up := feedUpstream(b, size, full)
	target, _ := url.Parse(up.URL)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }})
	defer proxy.Close()
	rl, err := NewRelay([]Upstream{{Name: "s", URL: up.URL + "/svc/", PublicBase: "https://bridge.example.com/odata/s/"}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	bridge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rl.Serve(w, r, "s", strings.TrimPrefix(r.URL.EscapedPath(), "/odata/s/"), "", nil)
	}))
	defer bridge.Close()
	buf := make([]byte, 32<<10)
	fetch := func(base string) time.Duration {
		start := time.Now()
		res, err := client.Get(base + "/odata/s/People")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, onlyReader{res.Body}, buf)
		res.Body.Close()
		if err != nil || n < size-1 {
			b.Fatalf("read %d bytes: %v", n, err)
		}
		return time.Since(start)
	}
	var tProxy, tBridge time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			tProxy += fetch(proxy.URL)
			tBridge += fetch(bridge.URL)
		} else {
			tBridge += fetch(bridge.URL)
			tProxy += fetch(proxy.URL)
		}
		i++
	}
	mbps := func(d time.Duration) float64 { return float64(i) * size / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(tProxy), "proxy-MB/s")
	b.ReportMetric(mbps(tBridge), "bridge-MB/s")
	b.ReportMetric(tProxy.Seconds()/tBridge.Seconds(), "bridge/proxy")
	b.ReportMetric(vmHWM(), "peak-RSS-MiB")
}

// onlyReader hides WriteTo so io.CopyBuffer uses the given buffer.
type onlyReader struct{ io.Reader }

// BenchmarkRelaySmall relays a 1 KiB v4 entity with two links, through the bridge and
// through a bare httputil.ReverseProxy, alternating per iteration; the metrics are each
// path's requests per second and their ratio.
func BenchmarkRelaySmall(b *testing.B) {
	var entity []byte
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
		w.Header()["OData-Version"] = []string{"4.0"}
		w.Write(entity)
	}))
	defer up.Close()
	entity = []byte(fmt.Sprintf(`{"@odata.context":"%[1]s/svc/$metadata#People/$entity","@odata.id":"%[1]s/svc/People('russellwhyte')",%[2]s}`, up.URL, strings.Repeat(`"Name":"Russell Whyte","City":"Boise",`, 22)+`"Age":42`))
	target, _ := url.Parse(up.URL)
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }})
	defer proxy.Close()
	rl, err := NewRelay([]Upstream{{Name: "s", URL: up.URL + "/svc/", PublicBase: "https://bridge.example.com/odata/s/"}}, Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	auth := &staticAuth{}
	bridge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rl.Serve(w, r, "s", strings.TrimPrefix(r.URL.EscapedPath(), "/odata/s/"), "", auth)
	}))
	defer bridge.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 8}}
	get := func(base string) time.Duration {
		start := time.Now()
		res, err := client.Get(base + "/odata/s/People('russellwhyte')")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return time.Since(start)
	}
	var tProxy, tBridge time.Duration
	n := 0
	for b.Loop() {
		tProxy += get(proxy.URL)
		tBridge += get(bridge.URL)
		n++
	}
	b.ReportMetric(float64(n)/tProxy.Seconds(), "proxy-req/s")
	b.ReportMetric(float64(n)/tBridge.Seconds(), "bridge-req/s")
	b.ReportMetric(tProxy.Seconds()/tBridge.Seconds(), "bridge/proxy")
}

// cannedTransport answers every request at once with the same small response, so a
// benchmark measures the relay's own work and nothing of the network.
type cannedTransport struct{ body []byte }

func (c cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{"Content-Type": {"application/json;odata.metadata=minimal"}, "Odata-Version": {"4.0"}},
		Body:          io.NopCloser(bytes.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       r,
	}, nil
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkRelayServe is Relay.Serve alone on the 1 KiB entity of BenchmarkRelaySmall,
// with a transport that answers at once: its ns/op and allocs/op are the relay's own
// per-request cost (the canned response and the writer add 7 allocations). With
// transport=own the transport stands in for the relay's own, which bounds the header wait
// itself; with transport=given the relay times each request, as for Options.Transport.
func BenchmarkRelayServe(b *testing.B) {
	const base = "http://upstream.example/svc/"
	body := []byte(`{"@odata.context":"` + base + `$metadata#People/$entity","@odata.id":"` + base + `People('russellwhyte')",` +
		strings.Repeat(`"Name":"Russell Whyte","City":"Boise",`, 22) + `"Age":42}`)
	for _, own := range []bool{true, false} {
		name := "transport=given"
		if own {
			name = "transport=own"
		}
		b.Run(name, func(b *testing.B) {
			rl, err := NewRelay([]Upstream{{Name: "s", URL: base, PublicBase: "https://bridge.example.com/odata/s/"}},
				Options{Transport: cannedTransport{body}, Registerer: prometheus.NewRegistry()})
			if err != nil {
				b.Fatal(err)
			}
			rl.sources["s"].timesHeaders = own
			auth := &staticAuth{}
			req := httptest.NewRequest("GET", "/odata/s/People('russellwhyte')", nil)
			req.Header = http.Header{"Accept": {"application/json"}, "User-Agent": {"wrk"}, "Authorization": {"Bearer bridge-token"}}
			b.ReportAllocs()
			for b.Loop() {
				rl.Serve(&discardWriter{h: http.Header{}}, req, "s", "People('russellwhyte')", "", auth)
			}
		})
	}
}

// BenchmarkRelayPages is Relay.Serve alone on 1,000-row v4 pages with a next link (about
// 330 KB with minimal metadata, 600 KB with full), answered at once by a canned transport,
// for a client without and with gzip: its MB/s is the relay's own cost per byte of a page
// (the Rewriter, reading what the page held, the copies and gzip).
func BenchmarkRelayPages(b *testing.B) {
	const base = "http://upstream.example/svc/"
	for _, full := range []bool{false, true} {
		page := bytes.ReplaceAll(benchPage(1000, full), []byte(benchBase), []byte(base))
		for _, gz := range []bool{false, true} {
			name := fmt.Sprintf("metadata=minimal/gzip=%v", gz)
			if full {
				name = fmt.Sprintf("metadata=full/gzip=%v", gz)
			}
			b.Run(name, func(b *testing.B) {
				rl, err := NewRelay([]Upstream{{Name: "s", URL: base, PublicBase: "https://bridge.example.com/odata/s/"}},
					Options{Transport: cannedTransport{page}, Registerer: prometheus.NewRegistry()})
				if err != nil {
					b.Fatal(err)
				}
				rl.sources["s"].timesHeaders = true
				req := httptest.NewRequest("GET", "/odata/s/People", nil)
				req.Header = http.Header{"Accept": {"application/json"}, "User-Agent": {"wrk"}}
				if gz {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				b.SetBytes(int64(len(page)))
				b.ReportAllocs()
				for b.Loop() {
					rl.Serve(&discardWriter{h: http.Header{}}, req, "s", "People", "", nil)
				}
			})
		}
	}
}

// benchPage returns a v4 page of n rows of benchFeed, with its next link.
func benchPage(n int, full bool) []byte {
	feed := benchFeed(1<<20, full)
	// Cut after the n-th row: rows are separated by "},{" at the top of the array.
	at := bytes.Index(feed, []byte(`"value":[`)) + len(`"value":[`)
	end := at
	for range n {
		k := bytes.Index(feed[end:], []byte(`"Price":"12345678901234567890.125"}`))
		end += k + len(`"Price":"12345678901234567890.125"}`)
		if feed[end] == ',' {
			end++
		}
	}
	return append(bytes.TrimSuffix(feed[:end], []byte(",")), "]}"...)
}

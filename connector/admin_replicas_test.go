package connector

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// ledgerRedis is the Redis the replicas' ledgers share: the real one when
// BRIDGE_TEST_REDIS_URL names it, else an in-process one, and a prefix of
// this test's own.
func ledgerRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	var rdb *redis.Client
	if u := os.Getenv("BRIDGE_TEST_REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		rdb = redis.NewClient(o)
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	}
	t.Cleanup(func() { rdb.Close() })
	b := make([]byte, 6)
	rand.Read(b)
	return rdb, "test-" + hex.EncodeToString(b) + ":"
}

// ledgerKeys seal the replicas' records, as the store's keys do in a deployment.
var ledgerKeys = []tokencache.Key{{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}}

// pagedUpstream serves the entity set Orders in pages of three rows, with
// upstream next links up to the page last.
func pagedUpstream(t *testing.T, last int) *httptest.Server {
	t.Helper()
	var up *httptest.Server
	up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		fmt.Sscan(r.URL.Query().Get("$skiptoken"), &n)
		rows := make([]string, 3)
		for i := range rows {
			rows[i] = fmt.Sprintf(`{"OrderID":%d,"Note":"row {%d} of \"page\" %d, value: [x]"}`, 3*n+i, i, n)
		}
		body := `{"@odata.context":"` + up.URL + `/svc/$metadata#Orders","value":[` + strings.Join(rows, ",") + `]`
		if n < last {
			body += fmt.Sprintf(`,"@odata.nextLink":"%s/svc/Orders?$skiptoken=%d"`, up.URL, n+1)
		}
		w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
		w.Header().Set("OData-Version", "4.0")
		io.WriteString(w, body+"}")
	}))
	t.Cleanup(up.Close)
	return up
}

// TestUsageAcrossReplicas: two replicas share one Redis ledger; a client that
// accepts gzip pages one entity set through both in turn, as a load balancer
// would send it. Usage adds up over both, and the refresh is one, complete,
// with every page, although every answer was compressed; its rows are counted
// when the source counts them.
func TestUsageAcrossReplicas(t *testing.T) {
	for _, count := range []bool{true, false} {
		t.Run(fmt.Sprintf("count_rows=%v", count), func(t *testing.T) { testUsageAcrossReplicas(t, count) })
	}
}

func testUsageAcrossReplicas(t *testing.T, count bool) {
	const last = 5 // six pages of three rows
	up := pagedUpstream(t, last)
	rdb, prefix := ledgerRedis(t)
	var ledgers []*tokencache.Ledger
	replica := func(store *tokencache.Store) *bridge {
		return newBridge(t, func(*idp.Provider) []Source { return nil }, func(o *Options) {
			if store != nil {
				o.Store = store // the replicas share sessions, as on one Redis
			}
			relay, err := odata.NewRelay([]odata.Upstream{{Name: "k2", URL: up.URL + "/svc/", PublicBase: o.PublicURL + "/odata/k2/", CountRows: count}}, odata.Options{})
			if err != nil {
				t.Fatal(err)
			}
			feed, _ := relay.Feed("k2")
			o.Sources = []Source{{Name: "k2", Kind: "odata", Auth: AuthNone, Feed: feed}}
			l := tokencache.NewLedger(tokencache.LedgerOptions{Redis: rdb, Prefix: prefix, Keys: ledgerKeys, Now: o.Now, FlushInterval: -1})
			t.Cleanup(func() { l.Close() })
			ledgers = append(ledgers, l)
			o.Ledger = l
		})
	}
	first := replica(nil)
	replicas := []*bridge{first, replica(first.store)}
	ctx := context.Background()
	first.idp.m.QueueUser(ada)
	access, _ := first.signIn(t)

	next, pages, rows := replicas[0].url+"/odata/k2/Orders", 0, 0
	for next != "" {
		b := replicas[pages%2]
		path := next[strings.Index(next, "/odata/"):]
		req, _ := http.NewRequest(http.MethodGet, b.url+path, nil)
		req.Header.Set("Accept-Encoding", "gzip") // set by hand: the client sees the compressed body
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("page %d: status %d, encoding %q; want 200 gzip", pages, resp.StatusCode, resp.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Value []json.RawMessage `json:"value"`
			Next  string            `json:"@odata.nextLink"`
		}
		if err := json.NewDecoder(zr).Decode(&page); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// Each replica records a page as it is served; the other sees it in the store.
		if err := ledgers[pages%2].Flush(ctx); err != nil {
			t.Fatal(err)
		}
		pages++
		rows += len(page.Value)
		next = page.Next
	}
	if pages != last+1 || rows != 3*(last+1) {
		t.Fatalf("paged %d pages, %d rows; want %d and %d", pages, rows, last+1, 3*(last+1))
	}
	for _, l := range ledgers {
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wantRows, wantRunRows := int64(rows), int64(rows)
	if !count {
		wantRows, wantRunRows = 0, -1
	}
	hours, err := ledgers[1].Hours(ctx, replicas[0].clock.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(hours) != 1 || hours[0].Requests != int64(pages) || hours[0].Rows != wantRows {
		t.Errorf("hours: got %+v, want k2 with %d requests and %d rows from both replicas", hours, pages, wantRows)
	}
	runs, err := ledgers[0].Refreshes(ctx, "k2")
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Pages != pages || runs[0].Rows != wantRunRows || runs[0].Outcome != tokencache.RefreshComplete ||
		runs[0].EntitySet != "Orders" || runs[0].Subject != ada.Subject {
		t.Errorf("refreshes: got %+v, want one complete refresh of Orders by %s, %d pages, %d rows", runs, ada.Subject, pages, wantRunRows)
	}
}

package odata

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// powerQueryHeaders are the request headers Power Query's OData.Feed sends (captured from
// Power BI Desktop), replayed as they are.
var powerQueryHeaders = http.Header{
	"User-Agent":            {"Microsoft.Data.Mashup (https://go.microsoft.com/fwlink/?LinkID=304225)"},
	"Accept":                {"application/json;odata.metadata=minimal;q=1.0,application/json;odata=minimalmetadata;q=0.9,application/atomsvc+xml;q=0.8,application/atom+xml;q=0.8,application/xml;q=0.7,text/plain;q=0.7"},
	"Odata-Maxversion":      {"4.0"},
	"Maxdataserviceversion": {"3.0"},
	"Accept-Encoding":       {"gzip, deflate"},
}

const pagingRows, pagingPage = 95, 10

// pagingUpstream pages People with absolute next links, the way K2's SmartObject OData
// API does at its record limit: v4 (@odata.nextLink), v3 JSON light (odata.nextLink) and
// v2 verbose JSON (__next, with \/-escaped slashes).
func pagingUpstream(u *upstream, w http.ResponseWriter, r *http.Request) {
	version, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/svc/"), "/")
	skip, _ := strconv.Atoi(r.URL.Query().Get("$skiptoken"))
	base := u.base() + version + "/"
	var rows []string
	for i := skip; i < min(skip+pagingPage, pagingRows); i++ {
		switch version {
		case "v2":
			rows = append(rows, fmt.Sprintf(`{"__metadata":{"uri":%q},"ID":%d}`, strings.ReplaceAll(base, "/", `\/`)+fmt.Sprintf("People(%d)", i), i))
		default:
			rows = append(rows, fmt.Sprintf(`{"ID":%d,"Name":"P%d"}`, i, i))
		}
	}
	next := ""
	if skip+pagingPage < pagingRows {
		next = fmt.Sprintf("%sPeople?$skiptoken=%d", base, skip+pagingPage)
	}
	var body string
	switch version {
	case "v4":
		w.Header()["OData-Version"] = []string{"4.0"}
		w.Header().Set("Content-Type", "application/json;odata.metadata=minimal")
		body = fmt.Sprintf(`{"@odata.context":"%s$metadata#People","value":[%s]`, base, strings.Join(rows, ","))
		if next != "" {
			body += fmt.Sprintf(`,"@odata.nextLink":%q`, next)
		}
	case "v3":
		w.Header().Set("DataServiceVersion", "3.0;")
		w.Header().Set("Content-Type", "application/json;odata=minimalmetadata")
		body = fmt.Sprintf(`{"odata.metadata":"%s$metadata#People","value":[%s]`, base, strings.Join(rows, ","))
		if next != "" {
			body += fmt.Sprintf(`,"odata.nextLink":%q`, next)
		}
	case "v2":
		w.Header().Set("DataServiceVersion", "2.0;")
		w.Header().Set("Content-Type", "application/json")
		body = fmt.Sprintf(`{"d":{"results":[%s]`, strings.Join(rows, ","))
		if next != "" {
			body += fmt.Sprintf(`,"__next":"%s"`, strings.ReplaceAll(next, "/", `\/`))
		}
		body += "}"
	default:
		http.NotFound(w, r)
		return
	}
	io.WriteString(w, body+"}")
}

var absURL = regexp.MustCompile(`https?:(?:\\?/){2}[^"\\/]+`)

func TestPowerQueryReplay(t *testing.T) {
	for _, version := range []string{"v4", "v3", "v2"} {
		t.Run(version, func(t *testing.T) {
			u := newUpstream(t, pagingUpstream)
			b := newBridge(t, Upstream{Name: "pq", URL: u.base(), PublicBase: selfBase}, Options{}, &staticAuth{})
			seen := map[int]int{}
			target := b.rl.sources["pq"].src.PublicBase + version + "/People"
			for pages := 0; target != ""; pages++ {
				if pages > pagingRows {
					t.Fatal("next links never end")
				}
				if !strings.HasPrefix(target, b.rl.sources["pq"].src.PublicBase) {
					t.Fatalf("next link left the bridge: %s", target)
				}
				res, body, err := b.do(t, "GET", strings.TrimPrefix(target, b.URL), powerQueryHeaders, nil)
				if err != nil || res.StatusCode != 200 {
					t.Fatalf("GET %s: %v %v %s", target, err, res, body)
				}
				if res.Header.Get("Content-Encoding") != "gzip" {
					t.Fatalf("Content-Encoding = %q, want gzip for Accept-Encoding: gzip, deflate", res.Header.Get("Content-Encoding"))
				}
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
				for _, host := range absURL.FindAllString(string(body), -1) {
					if h := strings.ReplaceAll(host, `\/`, "/"); !strings.HasPrefix(b.rl.sources["pq"].src.PublicBase, h) {
						t.Errorf("link not on the bridge: %s", host)
					}
				}
				var page struct {
					Value []struct{ ID int } `json:"value"`
					Next4 string             `json:"@odata.nextLink"`
					Next3 string             `json:"odata.nextLink"`
					D     struct {
						Results []struct{ ID int } `json:"results"`
						Next    string             `json:"__next"`
					} `json:"d"`
				}
				if err := json.Unmarshal(body, &page); err != nil {
					t.Fatalf("page %d: %v: %s", pages, err, body)
				}
				for _, r := range append(page.Value, page.D.Results...) {
					seen[r.ID]++
				}
				target = page.Next4 + page.Next3 + page.D.Next
			}
			for i := range pagingRows {
				if seen[i] != 1 {
					t.Errorf("row %d arrived %d times, want once", i, seen[i])
				}
			}
			if len(seen) != pagingRows {
				t.Errorf("%d distinct rows, want %d", len(seen), pagingRows)
			}
			if got := u.last().Header.Get("User-Agent"); got != powerQueryHeaders.Get("User-Agent") {
				t.Errorf("upstream User-Agent = %q", got)
			}
		})
	}
}

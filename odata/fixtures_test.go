package odata

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/internal/fixtures"
)

const olingoV4 = "http://localhost:${tomcat.servlet.port}/stub/StaticService/V40/Static.svc/"

// fixtureCases are the real payloads of the shared fixture set (see its MANIFEST.md), by
// file name, with the service bases they print. The first base becomes the test
// upstream's own URL, the others its aliases, so every absolute link points at the
// upstream as it would live.
var fixtureCases = []struct {
	file, ctype string
	bases       []string
}{
	{"TripPin_result_20.json", "application/json;odata.metadata=full", []string{
		"http://services.odata.org/V4/(S(4taa1h2202lz2pi2bpqff3uy))/TripPinServiceRW/",
		"https://services.odata.org/V4/(S(4taa1h2202lz2pi2bpqff3uy))/TripPinServiceRW/"}},
	{"AccountTasksAndLink.json", "application/json", []string{"https://demoodataendpoint.crm4.dynamics.com/api/data/v8.1/"}},
	{"AccountTasksOnlyLink.json", "application/json", []string{"https://demoodataendpoint.crm4.dynamics.com/api/data/v8.1/"}},
	{"OpenTypeV401.json", "application/json", []string{"http://localhost/ApiActionExample/odata/"}},
	{"Customers.json", "application/json", []string{"https://services.odata.org/V4/Northwind/Northwind.svc/"}},
	{"V40_People_feed.full.json", "application/json;odata.metadata=full", []string{olingoV4}},
	{"V40_People_skiptoken_5.full.json", "application/json;odata.metadata=full", []string{olingoV4}},
	{"V40_delta.full.json", "application/json;odata.metadata=full", []string{olingoV4}},
	{"V40_badRequest.json", "application/json", []string{olingoV4}},
	{"V40_Customers_feed.xml", "application/atom+xml;type=feed", []string{olingoV4}},
	{"V40_northwind-metadata.xml", "application/xml", []string{"http://localhost:${tomcat.servlet.port}/stub/StaticService/V40/"}},
	{"V40_metadata.xml", "application/xml", []string{olingoV4}},
	{"V30_Customer_-10_links_Orders.full.json", "application/json;odata=fullmetadata", []string{"http://localhost:${tomcat.servlet.port}/stub/StaticService/V30/Static.svc/"}},
	{"V30_Customer_feed.full.json", "application/json;odata=fullmetadata", []string{"http://localhost:${tomcat.servlet.port}/stub/StaticService/V30/Static.svc/"}},
	{"northwind-v3-customers-page1.json", "application/json;odata=minimalmetadata", []string{"https://services.odata.org/Northwind/Northwind.svc/"}},
	{"JsonBuildingWithInlineRoomsAndNextLinkAndCount.json", "application/json", []string{"http://localhost:8080/ReferenceScenario.svc/"}},
	{"JsonEmployee.json", "application/json", []string{"http://localhost:8080/ReferenceScenario.svc/"}},
	{"JsonTeamsWithCount.json", "application/json", []string{"http://localhost:8080/ReferenceScenario.svc/"}},
	{"feed_rooms_small.xml", "application/atom+xml;type=feed", []string{"http://localhost:8080/ReferenceScenario.svc/"}},
	{"partial_feed_part_1.xml", "application/atom+xml;type=feed", []string{"http://test.com/test.svc/"}},
	{"MultipleProducts.xml", "application/atom+xml;type=feed", []string{"http://services.odata.org/Northwind/Northwind.svc/"}},
	{"SingleProduct.xml", "application/atom+xml;type=entry", []string{"http://services.odata.org/Northwind/Northwind.svc/"}},
	{"SingleCustomerWithAddress.xml", "application/atom+xml;type=entry", []string{"http://services.odata.org/Northwind/Northwind.svc/"}},
	{"SingleCategoryWithProducts.xml", "application/atom+xml;type=entry", []string{"http://services.odata.org/Northwind/Northwind.svc/"}},
	{"ResponseReaderV4Tests.GetRelativeNextPageLink.2.txt", "application/json", []string{"http://localhost/functions/"}},
	{"ResponseReaderV4Tests.GetRelativeNextPageLink.4.txt", "application/json", []string{"http://localhost/functions/"}},
	{"Northwind.xml", "application/xml", []string{"http://services.odata.org/Northwind/Northwind.svc/"}},
	{"Northwind3.xml", "application/xml", []string{"http://services.odata.org/Northwind/Northwind.svc/"}},
	{"Northwind4.xml", "application/xml", []string{"http://services.odata.org/V4/Northwind/Northwind.svc/"}},
	{"Northwind.metadata.xml", "application/xml", []string{"http://services.odata.org/V4/Northwind/Northwind.svc/"}},
	{"TripPin.xml", "application/xml", []string{"http://services.odata.org/V4/TripPinService/"}},
}

// replaceBases replaces each from[i] with to[i], in plain and \/-escaped form, leftmost
// and longest first at equal positions, over the whole input at once. It is the
// specification the relay's output is checked against, so it shares no code with the
// Rewriter or the relay.
func replaceBases(b []byte, from, to []string) []byte {
	var pf, pt [][]byte
	for i := range from {
		pf = append(pf, []byte(from[i]), []byte(strings.ReplaceAll(from[i], "/", `\/`)))
		pt = append(pt, []byte(to[i]), []byte(strings.ReplaceAll(to[i], "/", `\/`)))
	}
	var out []byte
	for i := 0; i < len(b); {
		best := -1
		for k, f := range pf {
			if len(f) > 0 && bytes.HasPrefix(b[i:], f) && (best < 0 || len(f) > len(pf[best])) {
				best = k
			}
		}
		if best < 0 {
			out = append(out, b[i])
			i++
			continue
		}
		out = append(out, pt[best]...)
		i += len(pf[best])
	}
	return out
}

// TestFixtures relays every shared OData payload and checks that links are rewritten
// and every other byte is identical.
func TestFixtures(t *testing.T) {
	files := fixtures.OData(t)
	cased := map[string]bool{}
	for _, gc := range fixtureCases {
		cased[gc.file] = true
	}
	for name := range files {
		if !cased[name] {
			t.Errorf("fixture %s has no case: every fixture needs one", name)
		}
	}
	for _, gc := range fixtureCases {
		t.Run(gc.file, func(t *testing.T) {
			path, ok := files[gc.file]
			if !ok {
				t.Fatalf("fixture %s is missing from the shared set", gc.file)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var served []byte
			u := newUpstream(t, func(u *upstream, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", gc.ctype)
				// Odd-sized flushed chunks, so bases straddle the relay's reads.
				for b := served; len(b) > 0; {
					n := min(len(b), 977)
					w.Write(b[:n])
					w.(http.Flusher).Flush()
					b = b[n:]
				}
			})
			upBases := []string{u.base()}
			publics := []string{publicBase}
			for i := range gc.bases[1:] {
				upBases = append(upBases, fmt.Sprintf("http://alias%d.example/svc/", i+1))
				publics = append(publics, publicBase)
			}
			served = replaceBases(raw, gc.bases, upBases)
			b := newBridge(t, Source{URL: u.base(), Aliases: upBases[1:]}, Options{}, nil)
			res, got, err := b.do(t, "GET", "/odata/s/Feed", nil, nil)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("GET: %v %v", err, res)
			}
			// Links rewritten, every other byte identical: the fixture with its bases
			// replaced by the public base, computed without the Rewriter.
			if want := replaceBases(raw, gc.bases, publics); !bytes.Equal(got, want) {
				t.Errorf("body differs from the fixture with public links (%d vs %d bytes)", len(got), len(want))
			}
			if bytes.Contains(got, []byte(u.Listener.Addr().String())) {
				t.Errorf("an upstream link survived")
			}
			for _, alias := range upBases[1:] {
				if bytes.Contains(got, []byte(alias)) {
					t.Errorf("an alias link %s survived", alias)
				}
			}
		})
	}
}

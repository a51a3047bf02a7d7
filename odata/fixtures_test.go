package odata

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/internal/fixtures"
)

// The services the payloads were written as coming from.
const (
	staticV4 = "http://localhost:8080/static/V40/Static.svc/"
	staticV3 = "http://localhost:8080/static/V30/Static.svc/"
	refV2    = "http://localhost:8080/Reference.svc/"
	catalog  = "http://catalog.example.org/Catalog.svc/"
)

// fixtureCases are the payloads of internal/fixtures (see its
// testdata/MANIFEST.md), by file name, with the service bases they print. The
// first base becomes the test upstream's own URL, the others its aliases, so every
// absolute link points at the upstream as it would live.
var fixtureCases = []struct {
	file, ctype string
	bases       []string
}{
	{"people-page.full.json", "application/json;odata.metadata=full", []string{
		"http://people.example.org/v4/(S(k3x9q2mfa1b7c8d4e5f6g0hz))/PeopleService/",
		"https://people.example.org/v4/(S(k3x9q2mfa1b7c8d4e5f6g0hz))/PeopleService/"}},
	{"account-tasks.json", "application/json", []string{"https://crm.example.com/api/data/v9.2/"}},
	{"account-tasks-empty.json", "application/json", []string{"https://crm.example.com/api/data/v9.2/"}},
	{"open-type.json", "application/json", []string{"http://localhost/OpenTypes/odata/"}},
	{"customers-minified.json", "application/json", []string{"https://shop.example.net/v4/Shop.svc/"}},
	{"people-v3-style-next.full.json", "application/json;odata.metadata=full", []string{staticV4}},
	{"people-last-page.full.json", "application/json;odata.metadata=full", []string{staticV4}},
	{"delta.full.json", "application/json;odata.metadata=full", []string{staticV4}},
	{"bad-request.json", "application/json", []string{staticV4}},
	{"customers-feed.xml", "application/atom+xml;type=feed", []string{staticV4}},
	{"reference-metadata.xml", "application/xml", []string{"http://localhost:8080/static/V40/"}},
	{"people-metadata.xml", "application/xml", []string{"http://people.example.org/v4/(S(k3x9q2mfa1b7c8d4e5f6g0hz))/PeopleService/"}},
	{"unprefixed-metadata.xml", "application/xml", []string{"https://shop.example.net/v4/Shop.svc/"}},
	{"recorded-relative-next.txt", "application/json", []string{"http://localhost/functions/"}},
	{"recorded-last-page.txt", "application/json", []string{"http://localhost/functions/"}},
	{"orders-links.full.json", "application/json;odata=fullmetadata", []string{staticV3}},
	{"customer-feed.full.json", "application/json;odata=fullmetadata", []string{staticV3}},
	{"customers-page.json", "application/json;odata=minimalmetadata", []string{"https://shop.example.net/v3/Shop.svc/"}},
	{"catalog-metadata.xml", "application/xml", []string{catalog}},
	{"category-inline-entry.xml", "application/atom+xml;type=entry", []string{catalog}},
	{"rooms-verbose.json", "application/json", []string{refV2}},
	{"building-inline.json", "application/json", []string{refV2}},
	{"employee.json", "application/json", []string{refV2}},
	{"products-feed.xml", "application/atom+xml;type=feed", []string{catalog}},
	{"customer-entry.xml", "application/atom+xml;type=entry", []string{catalog}},
	{"partial-feed.xml", "application/atom+xml;type=feed", []string{"http://test.example/partial.svc/"}},
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

// TestFixtures relays every OData payload of internal/fixtures and checks that links are rewritten
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
			raw, ok := files[gc.file]
			if !ok {
				t.Fatalf("fixture %s is missing from internal/fixtures", gc.file)
			}
			for _, base := range gc.bases {
				if !bytes.Contains(raw, []byte(base)) && !bytes.Contains(raw, []byte(strings.ReplaceAll(base, "/", `\/`))) {
					t.Errorf("fixture %s never prints its base %s", gc.file, base)
				}
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
			b := newBridge(t, Upstream{URL: u.base(), Aliases: upBases[1:]}, Options{}, nil)
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

package odata

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/internal/fixtures"
)

// edgesChunks runs the edge reader over b cut into chunks of n bytes.
func edgesChunks(b []byte, n int) Served {
	var e edges
	for len(b) > 0 {
		k := min(n, len(b))
		e.write(b[:k])
		b = b[k:]
	}
	return e.result(true)
}

// checkEdges compares the edge reader's next link with want's, in several chunkings.
func checkEdges(t *testing.T, b []byte, want Served) {
	t.Helper()
	for _, n := range []int{len(b) + 1, 1, 7, 512, edgeTail - 1, edgeTail, 3 * edgeTail} {
		got := edgesChunks(b, n)
		if got.Read != want.Read || got.Next != want.Next || (got.Read && got.Rows != -1) {
			t.Errorf("chunks of %d: got %+v, want Read %v, Next %v, rows not counted", n, got, want.Read, want.Next)
		}
	}
}

// TestEdgesFixtures: on every payload of the fixtures, the ends of a page tell its next
// link as the whole-document reading does.
func TestEdgesFixtures(t *testing.T) {
	files := fixtures.OData(t)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		t.Run(name, func(t *testing.T) {
			want := fixtureServed[name]
			if !want.Read {
				return // not a page: the relay does not read it
			}
			checkEdges(t, files[name], want)
		})
	}
}

// TestEdgesPages covers the forms of next links and the links that must not count:
// those of expanded collections and inline feeds, and strings that look like them.
func TestEdgesPages(t *testing.T) {
	filler := strings.Repeat(`{"ID":1,"Name":"a \"quoted\" value: [x]","Tags":["a","b"]},`, 200)
	atomEntries := strings.Repeat(`<entry><id>x</id><content type="application/xml"><m:properties><d:ID>1</d:ID></m:properties></content></entry>`, 100)
	long := strings.Repeat("t", 3000) // a long $skiptoken
	tests := []struct {
		name string
		body string
		next bool
	}{
		{"v4 at the end", `{"@odata.context":"x","value":[` + filler + `{}],"@odata.nextLink":"n?$skiptoken=` + long + `"}`, true},
		{"v4 last page", `{"@odata.context":"x","value":[` + filler + `{}]}`, false},
		{"v4 before value", `{"@odata.context":"x","@odata.nextLink":"n","value":[` + filler + `{}]}`, true},
		{"v4 count after", `{"value":[` + filler + `{}],"@odata.nextLink":"n","@odata.count":5}`, true},
		{"v3", `{"odata.metadata":"m","value":[` + filler + `{}],"odata.nextLink":"n"}`, true},
		{"v2", `{"d":{"results":[` + filler + `{}],"__count":"9","__next":"n"}}`, true},
		{"v2 before results", `{"d":{"__next":"n","results":[` + filler + `{}]}}`, true},
		{"v2 last page", `{"d":{"results":[` + filler + `{}]}}`, false},
		{"v2 inline next in the last entity", `{"d":{"results":[` + filler + `{"Rooms":{"results":[{}],"__next":"x"}}]}}`, false},
		{"expanded next link in the last entity", `{"value":[` + filler + `{"Orders":[{}],"Orders@odata.nextLink":"o"}]}`, false},
		{"annotation of a property at the top", `{"value":[` + filler + `{}],"Orders@odata.nextLink":"o"}`, false},
		{"next link quoted in a value", `{"value":[` + filler + `{"a":"\"@odata.nextLink\":\"x\""}]}`, false},
		{"null next link", `{"value":[` + filler + `{}],"@odata.nextLink":null}`, false},
		{"pretty-printed", "{\n  \"value\": [\n    {}\n  ],\n  \"@odata.nextLink\" : \"n\"\n}\n", true},
		{"byte order mark", "\xEF\xBB\xBF{\"value\":[{}],\"@odata.nextLink\":\"n\"}", true},
		{"atom at the end", `<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">` + atomEntries + `<link rel="next" href="n?$skiptoken=` + long + `"/></feed>`, true},
		{"atom first", `<feed><link href="n" rel='next'/>` + atomEntries + `</feed>`, true},
		{"atom IANA next", `<feed>` + atomEntries + `<link rel="http://www.iana.org/assignments/relation/next" href="n"/></feed>`, true},
		{"atom prefixed", `<a:feed xmlns:a="http://www.w3.org/2005/Atom"><a:entry/><a:link rel="next" href="n"/></a:feed>`, true},
		{"atom last page", `<feed><link rel="self" href="s"/>` + atomEntries + `</feed>`, false},
		{"atom inline feed's next link", `<feed>` + atomEntries + `<entry><link rel="related"><m:inline><feed><entry/><link rel="next" href="x"/></feed></m:inline></link></entry></feed>`, false},
		{"atom entry root", `<entry><link rel="related"><m:inline><feed><entry/><link rel="next" href="x"/></feed></m:inline></link></entry>`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkEdges(t, []byte(tt.body), Served{Read: true, Next: tt.next})
		})
	}
	for _, body := range []string{``, `42`, `[{}]`, `<edmx:Edmx Version="4.0"/>`, `<service><workspace/></service>`, "--batch_1\r\n\r\n{}"} {
		if got := edgesChunks([]byte(body), 3); got != (Served{}) {
			t.Errorf("%q: got %+v, want nothing read", body, got)
		}
	}
	if got := (&edges{}).result(false); got != (Served{}) {
		t.Errorf("a body that did not end: got %+v, want nothing read", got)
	}
}

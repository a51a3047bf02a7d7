package odata

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/odata-bridge/bridge/internal/fixtures"
)

// scanChunks runs the scanner over b cut into chunks of the sizes next returns.
func scanChunks(b []byte, next func() int) Served {
	var s scanner
	s.reset()
	for len(b) > 0 {
		n := min(max(next(), 1), len(b))
		s.write(b[:n])
		b = b[n:]
	}
	return s.result(true)
}

func scanWhole(b []byte) Served { return scanChunks(b, func() int { return len(b) }) }

func scanBytes(b []byte) Served { return scanChunks(b, func() int { return 1 }) }

func scanRandom(b []byte, seed uint64) Served {
	r := rand.New(rand.NewPCG(seed, 7))
	return scanChunks(b, func() int { return 1 + r.IntN(97) })
}

// chunkings are the ways each document is fed to the scanner.
var chunkings = []struct {
	name string
	scan func([]byte) Served
}{
	{"whole", scanWhole},
	{"1-byte", scanBytes},
	{"random-1", func(b []byte) Served { return scanRandom(b, 1) }},
	{"random-2", func(b []byte) Served { return scanRandom(b, 2) }},
	{"random-3", func(b []byte) Served { return scanRandom(b, 3) }},
}

// checkScan compares the scanner's result on b, in every chunking and cut in two at
// every byte of a small document, with want.
func checkScan(t *testing.T, b []byte, want Served) {
	t.Helper()
	for _, c := range chunkings {
		if got := c.scan(b); got != want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, want)
		}
	}
	if len(b) > 4096 {
		return
	}
	for cut := 1; cut < len(b); cut++ {
		var s scanner
		s.reset()
		s.write(b[:cut])
		s.write(b[cut:])
		if got := s.result(true); got != want {
			t.Errorf("cut at %d (%q|%q): got %+v, want %+v", cut, b[:cut], b[cut:], got, want)
			return
		}
	}
}

var bom = []byte("\xEF\xBB\xBF")

// refServed is the specification of the scanner, by a whole-document decode with
// encoding/json or encoding/xml that shares no code with it.
func refServed(b []byte) Served {
	b = bytes.TrimLeft(bytes.TrimPrefix(b, bom), " \t\r\n")
	switch {
	case len(b) > 0 && b[0] == '{':
		return refJSON(b)
	case len(b) > 0 && b[0] == '<':
		return refAtom(b)
	}
	return Served{}
}

func refJSON(b []byte) Served {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return Served{}
	}
	s := Served{Read: true}
	s.Rows += refObjects(top["value"])
	if d, ok := top["d"]; ok {
		s.Rows += refObjects(d)
		var inD map[string]json.RawMessage
		if json.Unmarshal(d, &inD) == nil {
			s.Rows += refObjects(inD["results"])
			s.Next = refString(inD["__next"])
		}
	}
	s.Next = s.Next || refString(top["@odata.nextLink"]) || refString(top["odata.nextLink"])
	return s
}

// refObjects counts the objects in raw when it is an array.
func refObjects(raw json.RawMessage) int64 {
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return 0
	}
	var n int64
	for _, it := range items {
		var obj map[string]json.RawMessage
		if json.Unmarshal(it, &obj) == nil && obj != nil {
			n++
		}
	}
	return n
}

func refString(raw json.RawMessage) bool {
	var s string
	return raw != nil && json.Unmarshal(raw, &s) == nil && bytes.TrimSpace(raw)[0] == '"'
}

func refAtom(b []byte) Served {
	var doc struct {
		XMLName xml.Name
		Entries []struct{} `xml:"entry"`
		Links   []struct {
			Rel string `xml:"rel,attr"`
		} `xml:"link"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return Served{}
	}
	switch doc.XMLName.Local {
	case "entry":
		return Served{Read: true}
	case "feed":
		s := Served{Read: true, Rows: int64(len(doc.Entries))}
		for _, l := range doc.Links {
			s.Next = s.Next || l.Rel == "next" || l.Rel == "http://www.iana.org/assignments/relation/next"
		}
		return s
	}
	return Served{}
}

// fixtureServed is what each payload of internal/fixtures holds, read by hand from
// the files, so that a fault of the reference decode shows too.
var fixtureServed = map[string]Served{
	"people-page.full.json":          {Read: true, Rows: 3, Next: true},
	"account-tasks.json":             {Read: true},                      // one entity; its expanded collection's next link is not the page's
	"account-tasks-empty.json":       {Read: true},                      // the same, empty
	"open-type.json":                 {Read: true},                      // one entity
	"customers-minified.json":        {Read: true, Rows: 3},             // no next link
	"people-v3-style-next.full.json": {Read: true, Rows: 2, Next: true}, // v3's odata.nextLink in v4
	"people-last-page.full.json":     {Read: true, Rows: 1},             // the last page
	"delta.full.json":                {Read: true, Rows: 5},             // a delta page: its deltaLink is no next page
	"bad-request.json":               {Read: true},                      // an error body, read as any object
	"customers-feed.xml":             {Read: true, Rows: 2},             // Atom without a next link
	"reference-metadata.xml":         {},                                // CSDL
	"people-metadata.xml":            {},                                // CSDL
	"unprefixed-metadata.xml":        {},                                // CSDL
	"recorded-relative-next.txt":     {Read: true},                      // the page is a string inside the envelope
	"recorded-last-page.txt":         {Read: true},                      // the same
	"orders-links.full.json":         {Read: true, Rows: 3, Next: true}, // $links
	"customer-feed.full.json":        {Read: true, Rows: 2, Next: true}, // v3 full metadata
	"customers-page.json":            {Read: true, Rows: 3, Next: true}, // v3 minimal metadata
	"catalog-metadata.xml":           {},                                // CSDL
	"category-inline-entry.xml":      {Read: true},                      // an Atom entry: its inline feed's entries are not rows
	"rooms-verbose.json":             {Read: true, Rows: 2, Next: true}, // v2 d.results and __next
	"building-inline.json":           {Read: true},                      // v2 entity: its inline feed's __next is not the page's
	"employee.json":                  {Read: true},                      // v2 entity
	"products-feed.xml":              {Read: true, Rows: 2, Next: true}, // Atom with rel="next"
	"customer-entry.xml":             {Read: true},                      // Atom entry
	"partial-feed.xml":               {Read: true, Rows: 1, Next: true}, // Atom with rel="next"
}

func TestScanFixtures(t *testing.T) {
	files := fixtures.OData(t)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		t.Run(name, func(t *testing.T) {
			b := files[name]
			want, ok := fixtureServed[name]
			if !ok {
				t.Fatalf("no expected result for %s: add one to fixtureServed", name)
			}
			if ref := refServed(b); ref != want {
				t.Fatalf("reference decode %+v, want %+v", ref, want)
			}
			checkScan(t, b, want)
		})
	}
	if len(fixtureServed) != len(files) {
		t.Errorf("fixtureServed has %d entries for %d payloads", len(fixtureServed), len(files))
	}
}

func TestScanCases(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Served
	}{
		{"v4 page", `{"@odata.context":"x","value":[{"a":1},{"b":2}],"@odata.nextLink":"n"}`, Served{true, 2, true}},
		{"v4 next before value", `{"@odata.context":"x","@odata.nextLink":"n","value":[{},{},{}]}`, Served{true, 3, true}},
		{"v4 last page", `{"@odata.context":"x","value":[{"a":1}]}`, Served{true, 1, false}},
		{"empty collection", `{"value":[]}`, Served{true, 0, false}},
		{"empty collection with next", "{ \"value\" : [ ] ,\n \"@odata.nextLink\" : \"n\" }", Served{true, 0, true}},
		{"v3 next", `{"odata.metadata":"m","value":[{"a":1}],"odata.nextLink":"n"}`, Served{true, 1, true}},
		{"v2 results and next", `{"d":{"results":[{"a":1},{"a":2}],"__count":"9","__next":"n"}}`, Served{true, 2, true}},
		{"v2 next before results", `{"d":{"__next":"n","results":[{"a":1}]}}`, Served{true, 1, true}},
		{"v2 last page", `{"d":{"results":[{"a":1}]}}`, Served{true, 1, false}},
		{"v1 array", `{"d":[{"a":1},{"a":2},{"a":3}]}`, Served{true, 3, false}},
		{"v2 entity", `{"d":{"__metadata":{"uri":"u"},"ID":1}}`, Served{true, 0, false}},
		{"v4 entity", `{"@odata.context":"x/$entity","ID":1,"Name":"value"}`, Served{true, 0, false}},
		{"strings that look like structure", `{"value":[{"a":"{[{\"value\":[{}]}","b":"]}}"},{"c":"\"@odata.nextLink\":\"x\""}],"s":"\"value\":[{},{}]"}`, Served{true, 2, false}},
		{"escaped quotes and backslash runs", `{"value":[{"a":"\\"},{"b":"\\\""},{"c":"\\\\\"\\"},{"d":"x\\\\\\\\"}],"z":"\\\\\\\"@odata.nextLink\\\""}`, Served{true, 4, false}},
		{"nested value arrays", `{"value":[{"value":[{},{},{}],"x":{"value":[{}]}},{"value":[]}]}`, Served{true, 2, false}},
		{"expanded next links", `{"value":[{"Orders":[{}],"Orders@odata.nextLink":"o"},{"Orders@odata.nextLink":"p","@odata.nextLink":"q","odata.nextLink":"r","__next":"s"}]}`, Served{true, 2, false}},
		{"top-level annotation of a property", `{"value":[{}],"Orders@odata.nextLink":"o"}`, Served{true, 1, false}},
		{"next link nested in an object", `{"x":{"@odata.nextLink":"n","value":[{}]},"value":[{}]}`, Served{true, 1, false}},
		{"next link as a value", `{"a":"@odata.nextLink","b":"n","value":[{}]}`, Served{true, 1, false}},
		{"null next link", `{"value":[{}],"@odata.nextLink":null}`, Served{true, 1, false}},
		{"__next at the top", `{"value":[{}],"__next":"n"}`, Served{true, 1, false}},
		{"__next deep in d", `{"d":{"results":[{"Rooms":{"results":[{}],"__next":"x"}}]}}`, Served{true, 1, false}},
		{"results outside d", `{"results":[{},{}]}`, Served{true, 0, false}},
		{"primitive collection", `{"value":["a","b",1,null,{"c":1},[{}]]}`, Served{true, 1, false}},
		{"escaped member names", `{"\u0076alue":[{},{}],"\u0040odata.nextLink":"n"}`, Served{true, 2, true}},
		{"escaped quote in a name", `{"va\"lue":[{}],"value":[{}]}`, Served{true, 1, false}},
		{"long member name", `{"` + strings.Repeat("v", 300) + `":[{}],"value":[{}]}`, Served{true, 1, false}},
		{"byte order mark", "\xEF\xBB\xBF{\"value\":[{}]}", Served{true, 1, false}},
		{"white space around", " \r\n\t{\"value\":[{}]}\n", Served{true, 1, false}},
		{"cut short", `{"value":[{},{}`, Served{}},
		{"cut in a string", `{"value":[{"a":"b`, Served{}},
		{"trailing garbage", `{"value":[{}]}x`, Served{}},
		{"second root", `{"value":[{}]}{}`, Served{}},
		{"root array", `[{}]`, Served{}},
		{"mismatched", `{"value":[{}}}`, Served{}},
		{"text", `42`, Served{}},
		{"empty", ``, Served{}},
		{"broken byte order mark", "\xEF\xBB{\"value\":[]}", Served{}},
		{"batch", "--batch_1\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{\"value\":[{}]}\r\n--batch_1--", Served{}},

		{"atom feed", `<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><id>1</id></entry><entry><id>2</id></entry><link rel="next" href="n"/></feed>`, Served{true, 2, true}},
		{"atom next first", `<feed><link href="n" rel='next'/><entry/><entry></entry></feed>`, Served{true, 2, true}},
		{"atom IANA next", `<feed><link rel="http://www.iana.org/assignments/relation/next" href="n"/></feed>`, Served{true, 0, true}},
		{"atom last page", `<feed><link rel="self" href="s"/><entry><link rel="edit" href="e"/></entry></feed>`, Served{true, 1, false}},
		{"atom prefixes", `<a:feed xmlns:a="http://www.w3.org/2005/Atom"><a:entry/><a:entry><a:id>x</a:id></a:entry><a:link rel="next" href="n"/></a:feed>`, Served{true, 2, true}},
		{"atom inline feed", `<feed><entry><link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/Orders" type="application/atom+xml;type=feed"><m:inline><feed><entry/><entry/><link rel="next" href="x"/></feed></m:inline></link></entry><entry><link rel="next" href="y"/></entry></feed>`, Served{true, 2, false}},
		{"atom text that says entry", `<feed><title type="html">&lt;entry&gt; entry <![CDATA[<entry><link rel="next"/>]]></title><!-- <entry/> <link rel="next"/> --><?entry <link rel="next"?><entry><summary>&lt;entry/&gt;</summary></entry></feed>`, Served{true, 1, false}},
		{"atom attribute with >", `<feed><entry title="a>b" x='entry/>'/><link title="link rel='next'>" rel="self"/></feed>`, Served{true, 1, false}},
		{"atom '>' inside an entry", `<feed><entry><a t="x>y"/><b t='>'>text > more</b><c>&gt;</c><d x="1"/></entry><entry><e></e></entry></feed>`, Served{true, 2, false}},
		{"atom markup inside an entry", `<feed><entry><!-- </entry> --><![CDATA[</entry><entry>]]><?pi </entry>?><x/></entry><entry/><link rel="next" href="n"/></feed>`, Served{true, 2, true}},
		{"atom entry root", `<entry><link rel="next" href="n"/><m:inline><feed><entry/></feed></m:inline></entry>`, Served{true, 0, false}},
		{"atom doctype", `<!DOCTYPE feed [<!ENTITY x "y">]><feed><entry/></feed>`, Served{true, 1, false}},
		{"atom white space and bom", "\xEF\xBB\xBF\n<feed >\n<entry\n/>\n<link\n rel = \"next\"\n/></feed >\n", Served{true, 1, true}},
		{"atom rel next of another element", `<feed><entry/><category rel="next"/></feed>`, Served{true, 1, false}},
		{"atom entries of a similar name", `<feed><entryx/><xentry/><m:entries/><entry/></feed>`, Served{true, 1, false}},
		{"atom cut short", `<feed><entry/><entry>`, Served{}},
		{"csdl", `<edmx:Edmx Version="4.0"><edmx:DataServices><Schema><EntityType Name="entry"/></Schema></edmx:DataServices></edmx:Edmx>`, Served{}},
		{"atom service document", `<service><workspace><collection href="People"/></workspace></service>`, Served{}},
		{"xml error", `<m:error><m:code/><m:message>entry</m:message></m:error>`, Served{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.body)
			if ref := refServed(b); ref != tt.want {
				t.Fatalf("reference decode %+v, want %+v", ref, tt.want)
			}
			checkScan(t, b, tt.want)
		})
	}
}

// TestScanEscapesAcrossChunks cuts runs of backslashes before a quote at every
// point, the case where a string's end depends on bytes of an earlier chunk.
func TestScanEscapesAcrossChunks(t *testing.T) {
	for run := 0; run <= 7; run++ {
		// An even run ends the string at the quote; an odd one escapes it, and the
		// string goes on to the next quote.
		str := strings.Repeat(`\`, run) + `"`
		if run%2 == 1 {
			str += `,{\"value\":[{}]}\\"`
		}
		body := `{"value":[{"a":"x` + str + `},{}]}`
		want := Served{true, 2, false}
		if ref := refServed([]byte(body)); ref != want {
			t.Fatalf("run %d: reference %+v, want %+v for %s", run, ref, want, body)
		}
		checkScan(t, []byte(body), want)
		// Chunks of every size from 1 to 9.
		for size := 1; size <= 9; size++ {
			if got := scanChunks([]byte(body), func() int { return size }); got != want {
				t.Errorf("run %d, chunks of %d: got %+v, want %+v", run, size, got, want)
			}
		}
	}
}

// TestScanLargePage reads a benchmark-sized page, whose counts are known.
func TestScanLargePage(t *testing.T) {
	feed := benchFeed(1<<20, true)
	want := Served{Read: true, Rows: int64(bytes.Count(feed, []byte(`"UserName"`))), Next: true}
	if ref := refServed(feed); ref != want {
		t.Fatalf("reference %+v, want %+v", ref, want)
	}
	for _, c := range chunkings {
		if got := c.scan(feed); got != want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, want)
		}
	}
	atom := benchAtom(1 << 20)
	want = Served{Read: true, Rows: int64(bytes.Count(atom, []byte(`<entry>`))), Next: true}
	if ref := refServed(atom); ref != want {
		t.Fatalf("Atom reference %+v, want %+v", ref, want)
	}
	for _, c := range chunkings {
		if got := c.scan(atom); got != want {
			t.Errorf("Atom %s: got %+v, want %+v", c.name, got, want)
		}
	}
}

// jsonGen builds a valid JSON document shaped like an OData answer from fuzz bytes,
// with the members that matter at every depth, strings full of the bytes that
// matter, and no member twice in an object (the reference decode keeps only the last).
type jsonGen struct {
	in  []byte
	out bytes.Buffer
}

func (g *jsonGen) byte() byte {
	if len(g.in) == 0 {
		return 0
	}
	c := g.in[0]
	g.in = g.in[1:]
	return c
}

var genNames = []string{"value", "d", "results", "@odata.nextLink", "odata.nextLink", "__next",
	"Orders@odata.nextLink", "@odata.context", "x", "va\"lue", "\\", "{["}

var genStrings = []string{"", "value", "@odata.nextLink", "{", "[", "}", "]", `"`, `\`, `\\"`, `"value":[{}]`, "é\u2028", "\x01"}

func (g *jsonGen) space() {
	switch g.byte() % 8 {
	case 1:
		g.out.WriteByte(' ')
	case 2:
		g.out.WriteString("\n\t ")
	}
}

func (g *jsonGen) str(s string, escapeAll bool) {
	if !escapeAll {
		b, _ := json.Marshal(s)
		g.out.Write(b)
		return
	}
	g.out.WriteByte('"')
	for _, r := range s {
		fmt.Fprintf(&g.out, `\u%04x`, r)
	}
	g.out.WriteByte('"')
}

func (g *jsonGen) value(depth int) {
	g.space()
	c := g.byte()
	if depth > 6 {
		c %= 4 // scalars only
	}
	switch c % 8 {
	case 0:
		g.out.WriteString("null")
	case 1:
		fmt.Fprintf(&g.out, "%d", int(g.byte())-100)
	case 2, 3:
		s := genStrings[int(g.byte())%len(genStrings)]
		if c%8 == 3 {
			s = genNames[int(g.byte())%len(genNames)]
		}
		g.str(s, g.byte()%11 == 0)
	case 4, 5:
		g.out.WriteByte('[')
		n := int(g.byte() % 5)
		for i := range n {
			if i > 0 {
				g.out.WriteByte(',')
			}
			if g.byte()%3 == 0 {
				g.value(depth + 1)
			} else {
				g.object(depth + 1)
			}
		}
		g.space()
		g.out.WriteByte(']')
	default:
		g.object(depth + 1)
	}
	g.space()
}

func (g *jsonGen) object(depth int) {
	g.space()
	g.out.WriteByte('{')
	n := int(g.byte() % 6)
	used := map[string]bool{}
	first := true
	for range n {
		name := genNames[int(g.byte())%len(genNames)]
		if used[name] {
			continue
		}
		used[name] = true
		if !first {
			g.out.WriteByte(',')
		}
		first = false
		g.space()
		g.str(name, g.byte()%13 == 0)
		g.space()
		g.out.WriteByte(':')
		g.value(depth)
	}
	g.space()
	g.out.WriteByte('}')
	g.space()
}

func FuzzScanJSON(f *testing.F) {
	f.Add([]byte("\x05\x00\x00\x01\x04\x03\x05\x00\x00\x03"), uint8(1))
	f.Add([]byte("\x05\x00\x03\x03\x00\x05\x00\x02\x00\x00\x01\x03\x01\x00\x03\x00\x00\x03\x00\x01\x03\x00\x00\x00\x02\x00\x00"), uint8(3))
	f.Add([]byte(strings.Repeat("\x04\x05\x00\x03\x02\x01\x00\x07", 40)), uint8(0))
	f.Add([]byte(strings.Repeat("\x01\x05\x04\x03\x02\x02\x00\x07\x09", 60)), uint8(17))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		g := &jsonGen{in: in}
		g.object(0)
		b := g.out.Bytes()
		if !json.Valid(b) {
			t.Fatalf("the generator made invalid JSON: %s", b)
		}
		want := refServed(b)
		size := int(chunk)%64 + 1
		if got := scanChunks(b, func() int { return size }); got != want {
			t.Fatalf("chunks of %d: got %+v, want %+v for %s", size, got, want, b)
		}
		if got := scanWhole(b); got != want {
			t.Fatalf("whole: got %+v, want %+v for %s", got, want, b)
		}
	})
}

// FuzzScanChunking checks, for any bytes at all, that the scanner does not panic;
// that it finds the same whatever the chunks, for any JSON-like input and for
// well-formed XML (inside an entry, XML that is not may be read tag by tag or byte
// by byte, which may differ); and that it agrees with the reference on an object
// that encoding/json reads.
func FuzzScanChunking(f *testing.F) {
	fixtures.SeedOData(f, ".json", uint8(3))
	fixtures.SeedOData(f, ".xml", uint8(5))
	f.Add([]byte(`{"value":[{"a":"\\\""}],"@odata.nextLink":"n"}`), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint8) {
		whole := scanWhole(b)
		if rest := bytes.TrimLeft(bytes.TrimPrefix(b, bom), " \t\r\n"); len(rest) > 0 && rest[0] == '<' && !wellFormedXML(b) {
			scanBytes(b) // must not panic
			return
		}
		size := int(chunk)%64 + 1
		if got := scanChunks(b, func() int { return size }); got != whole {
			t.Fatalf("chunks of %d: got %+v, whole %+v", size, got, whole)
		}
		if got := scanBytes(b); got != whole {
			t.Fatalf("1-byte chunks: got %+v, whole %+v", got, whole)
		}
		if rest := bytes.TrimLeft(bytes.TrimPrefix(b, bom), " \t\r\n"); len(rest) > 0 && rest[0] == '{' && json.Valid(b) && !dupMembers(b) {
			if want := refServed(b); whole != want {
				t.Fatalf("got %+v, reference %+v for %q", whole, want, b)
			}
		}
	})
}

// wellFormedXML reports whether encoding/xml reads b to its end without an error.
func wellFormedXML(b []byte) bool {
	dec := xml.NewDecoder(bytes.NewReader(bytes.TrimPrefix(b, bom)))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// dupMembers reports whether an object the scanner reads members of (the root, or
// its "d") names a member twice, which the reference decode reads only once.
func dupMembers(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(b, bom)))
	var walk func(depth int, inD bool) bool
	walk = func(depth int, inD bool) bool {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return false
		}
		dup := false
		seen := map[string]bool{}
		for dec.More() {
			if d == '{' {
				k, _ := dec.Token()
				name, _ := k.(string)
				if (depth == 0 || inD) && seen[name] {
					dup = true
				}
				seen[name] = true
				dup = walk(depth+1, depth == 0 && name == "d") || dup
			} else {
				dup = walk(depth+1, false) || dup
			}
		}
		dec.Token()
		return dup
	}
	return walk(0, false)
}

// benchAtom returns an Atom feed of about size bytes shaped like an OData v2 page.
func benchAtom(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 4096)
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="utf-8"?><feed xml:base="%s" xmlns="http://www.w3.org/2005/Atom" xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"><id>%sPeople</id><title type="text">People</title><updated>2024-01-01T00:00:00Z</updated><link rel="self" title="People" href="People" />`, benchBase, benchBase)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, `<entry><id>%[1]sPeople('user%[2]d')</id><category term="Microsoft.OData.SampleService.Models.TripPin.Person" scheme="http://schemas.microsoft.com/ado/2007/08/dataservices/scheme" /><link rel="edit" title="Person" href="People('user%[2]d')" /><link rel="http://schemas.microsoft.com/ado/2007/08/dataservices/related/Friends" type="application/atom+xml;type=feed" title="Friends" href="People('user%[2]d')/Friends" /><title /><updated>2024-01-01T00:00:00Z</updated><author><name /></author><content type="application/xml"><m:properties><d:UserName>user%[2]d</d:UserName><d:FirstName>Russell</d:FirstName><d:LastName>Whyte</d:LastName><d:Gender>Male</d:Gender><d:Concurrency m:type="Edm.Int64">%[3]d</d:Concurrency></m:properties></content></entry>`, benchBase, i, 635000000000000000+i)
	}
	fmt.Fprintf(&b, `<link rel="next" href="%sPeople?$skiptoken=20" /></feed>`, benchBase)
	return b.Bytes()
}

// BenchmarkScan measures the scanner alone on a 1 MiB v4 page (minimal and full
// metadata) and a 1 MiB Atom page, fed in the relay's 64 KiB chunks.
func BenchmarkScan(b *testing.B) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"json/metadata=minimal", benchFeed(1<<20, false)},
		{"json/metadata=full", benchFeed(1<<20, true)},
		{"atom", benchAtom(1 << 20)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			want := refServed(tc.body)
			b.SetBytes(int64(len(tc.body)))
			var s scanner
			for b.Loop() {
				s.reset()
				for p := tc.body; len(p) > 0; {
					n := min(len(p), copyBufSize)
					s.write(p[:n])
					p = p[n:]
				}
			}
			if got := s.result(true); got != want {
				b.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}

package odata

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math/bits"
	"sync"
)

// Served is what a feed learned of the body it answered with, read as the body
// passed through, for the operators' records of every page relayed.
//
// Only a 2xx JSON or Atom OData document is read, and only when it reached the
// client whole: a JSON body whose root is an object, or an Atom <feed> or
// <entry>. Rows cannot be counted, and Read is false, for every other body:
// media, $value, $count, $metadata, the service document, $batch, errors, HEAD,
// and a stream that was aborted mid-body.
//
// Next is read from the ends of the body, which costs next to nothing. Rows are
// counted only for a source with Upstream.CountRows, by a scanner that reads every
// byte (see BENCHMARKS.md for its cost), and by the REST service, which writes them.
type Served struct {
	Read bool  // the body was a JSON or Atom OData document relayed to its end: Rows and Next hold
	Rows int64 // entities of its top-level collection; 0 for a single entity; -1: not counted
	Next bool  // it named a next page
}

// scanner reads an OData document as it streams, in any chunking, for the
// entities of its top-level collection and whether it names a next page:
//
//   - JSON: the objects directly inside the array of a top-level "value" (v3,
//     v4), "d" (v1, v2) or "d"."results" (v2 verbose); the next page is a
//     top-level "@odata.nextLink" (v4) or "odata.nextLink" (v3), or "__next"
//     directly in "d" (v2), with a string value. Annotations of expanded
//     collections ("Orders@odata.nextLink") and anything nested do not count.
//   - Atom (the body starts with '<'): the <entry> children of the root <feed>,
//     with any namespace prefix, and a <link rel="next"> child of the feed;
//     entries and links of inline expanded feeds do not count.
//
// It is a small state machine that keeps no part of the body beyond a short
// member or element name. Most bytes of a page are inside its entities, where only
// the nesting counts: there it goes from bracket to bracket (or tag to tag) with
// bytes.IndexByte and bytes.Count rather than byte by byte (skip, entryTags), and
// it reads the members of the root object the same way up to the next bracket
// (members); the byte-by-byte reading takes what those cannot, such as a string
// cut by the end of a chunk. It does not validate: a malformed body gives counts
// of no meaning (or Read false when its nesting breaks), never a panic.
type scanner struct {
	mode  uint8 // scanStart, scanJSON, scanAtom, scanOther
	bom   uint8 // bytes of the UTF-8 byte order mark seen at the start
	bad   bool  // the nesting broke, or a second root began
	ended bool  // the root value or element closed
	next  bool
	rows  int64

	// JSON. Containers at depth 1 and 2 are the only ones whose members matter;
	// depth counts the open objects and arrays.
	depth    int32
	coll     int32 // depth of the collection array; -1 none
	inStr    bool  // inside a string
	esc      bool  // the bytes so far end in an odd run of backslashes
	skipping byte  // '{' or '[': the kind of the container skip is in; 0 none
	level    int32 // containers of that kind open in skip, the skipped one included
	wantKey  bool  // the next string is a member name of a container that matters
	keying   bool  // inside such a member name
	inD      bool  // the object at depth 2 is the v2 "d"
	kind2    byte  // '{' or '[' at depth 2
	member   uint8 // the member whose value comes next: memNone, memValue...
	keyLen   int   // bytes of keyBuf in use; keyCap+1 when the name is longer
	keyBuf   [keyCap]byte
	keyFresh bool // the name began in the current chunk, at keyAt
	keyAt    int

	// Atom.
	xs       uint8 // xText, xLT, ...
	xdepth   int32 // open elements
	root     uint8 // rootNone, rootFeed, rootEntry
	endTag   bool  // the name being read is an end tag's
	slash    bool  // a '/' in a start tag: it closes itself
	linkTag  bool  // a <link> child of the root feed: its rel is read
	attrRel  bool  // the attribute value being read is a link's rel
	quote    byte  // the quote of the attribute value being read
	nameLen  int   // of nameBuf; nameCap+1 when longer
	nameBuf  [nameCap]byte
	valLen   int // of valBuf; valCap+1 when longer
	valBuf   [valCap]byte
	run      int // dashes, brackets or '?' just seen in a comment, CDATA or PI
	declNest int // '[' open in a <!DOCTYPE>
}

const (
	scanStart = iota
	scanJSON
	scanAtom
	scanOther // not a document the scanner reads: it gives up
)

// The members of a JSON container that matters.
const (
	memNone = iota
	memValue
	memD
	memResults
	memNext
)

const (
	keyCap  = 128 // longer member names match nothing
	nameCap = 64  // longer element and attribute names match nothing
	valCap  = 64  // longer rel values are not "next"
)

// jsonStop marks the bytes outside strings that the JSON scan stops at.
var jsonStop = func() (t [256]bool) {
	for _, c := range []byte(`"{}[],`) {
		t[c] = true
	}
	return t
}()

func (s *scanner) reset() {
	*s = scanner{coll: -1}
}

// result is what the scan found, once the body ended; complete is false when
// it was cut short.
func (s *scanner) result(complete bool) Served {
	if !complete || s.bad || !s.ended || s.mode == scanOther || s.mode == scanStart {
		return Served{}
	}
	if s.mode == scanAtom && s.root == rootOther {
		return Served{}
	}
	return Served{Read: true, Rows: s.rows, Next: s.next}
}

// write reads the next chunk of the body.
func (s *scanner) write(p []byte) {
	switch s.mode {
	case scanJSON:
		s.json(p)
	case scanAtom:
		s.atom(p)
	case scanStart:
		s.start(p)
	}
}

// start finds what the body is from its first byte after an optional byte order
// mark and white space.
func (s *scanner) start(p []byte) {
	for i, c := range p {
		if s.bom < 3 && c == "\xEF\xBB\xBF"[s.bom] {
			s.bom++
			continue
		}
		switch {
		case s.bom == 1 || s.bom == 2:
			s.mode = scanOther // a broken byte order mark
		case isSpace(c):
			s.bom = 3 // none may follow
			continue
		case c == '{':
			s.mode = scanJSON
		case c == '<':
			s.mode = scanAtom
		default:
			s.mode = scanOther
		}
		if s.mode != scanOther {
			s.write(p[i:])
		}
		return
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// json reads a chunk of a JSON document.
func (s *scanner) json(p []byte) {
	i, n := 0, len(p)
	// The next '{', '[', '}', ']' and '\\' of p at or after where they were looked
	// for; -1: not looked for yet.
	next := [5]int{-1, -1, -1, -1, -1}
	slow := 0 // the bytes before slow go through the byte-by-byte reading
	for i < n {
		if s.skipping != 0 {
			// Inside an entity, or a value nested deeper than the members that matter.
			i = s.skip(p, i, &next[4])
			continue
		}
		if i >= slow && !s.inStr && !s.ended && s.member == memNone && (s.depth == 1 || s.depth == 2 && s.inD) {
			k, ok := s.members(p, i, &next)
			if !ok {
				slow = k
			} else {
				i = k
			}
		}
		if s.inStr {
			from := i
			i = s.skipString(p, i)
			if s.keying {
				s.key(p, from, i)
			}
			continue
		}
		if s.ended {
			for ; i < n; i++ {
				if !isSpace(p[i]) {
					s.bad = true
					s.mode = scanOther
					return
				}
			}
			return
		}
		for i < n && !jsonStop[p[i]] {
			i++
		}
		if i == n {
			return
		}
		c := p[i]
		i++
		switch c {
		case '"':
			j := -1
			if i+8 <= n {
				if m := quoteWord(binary.LittleEndian.Uint64(p[i:])); m != 0 {
					j = bits.TrailingZeros64(m) >> 3
				}
			}
			if j < 0 {
				j = quoteIndex(p[i:])
			}
			if j >= 0 && (j == 0 || p[i+j-1] != '\\') {
				// The whole string is in this chunk, and no backslash stands before its
				// closing quote: the common case, read at once.
				if s.wantKey {
					s.wantKey = false
					s.member = s.memberOf(p[i : i+j])
				} else {
					s.next = s.next || s.member == memNext
					s.member = memNone
				}
				i += j + 1
				continue
			}
			s.inStr, s.esc = true, false
			if s.wantKey {
				s.wantKey, s.keying = false, true
				// keyAt holds only within this chunk.
				s.keyLen, s.keyFresh, s.keyAt = 0, i < n, i
			} else if s.member == memNext {
				s.next = true
			}
			s.member = memNone
		case '{', '[':
			if s.depth == s.coll && c == '{' {
				s.rows++
			}
			switch s.depth {
			case 0:
				if c != '{' {
					s.mode = scanOther // not an OData document
					return
				}
			case 1:
				s.kind2 = c
				switch {
				case c == '[' && (s.member == memValue || s.member == memD):
					s.coll = 2
				case c == '{' && s.member == memD:
					s.inD = true
				}
			case 2:
				if c == '[' && s.inD && s.member == memResults {
					s.coll = 3
				}
			}
			s.depth++
			s.member = memNone
			s.wantKey = c == '{' && (s.depth == 1 || s.depth == 2 && s.inD)
			if s.depth > 2 && s.depth > s.coll {
				s.skipping, s.level = c, 1
			}
		case '}', ']':
			if s.depth <= 2 {
				if s.depth <= 0 || s.depth == 1 && c != '}' || s.depth == 2 && c != s.kind2+2 {
					// '[' + 2 is ']' and '{' + 2 is '}'.
					s.bad = true
					s.mode = scanOther
					return
				}
				if s.depth == 2 {
					s.inD = false
				}
			}
			s.depth--
			if s.depth < s.coll {
				s.coll = -1
			}
			s.member, s.wantKey = memNone, false
			s.ended = s.depth == 0
		case ',':
			if s.depth <= 2 {
				s.member = memNone
				s.wantKey = s.depth == 1 || s.depth == 2 && s.inD
			}
		}
	}
}

// skip reads p from i inside a container below the ones whose members matter (an
// entity of the collection, or a value nested in one), up to the bracket that
// closes it, and returns where that is, or len(p). It counts only brackets of the
// container's own kind, which nest alone in valid JSON, and finds them with
// bytes.IndexByte; one is outside strings when the quotes before it since the
// last one, less the escaped ones, are even, which bytes.Count tells. So it
// costs a few calls per bracket, not a step per byte. nb caches the next
// backslash of p (-1: not looked for yet).
func (s *scanner) skip(p []byte, i int, nb *int) int {
	open, close := byte('{'), byte('}')
	if s.skipping == '[' {
		open, close = '[', ']'
	}
	n := len(p)
	level, in := s.level, s.inStr
	if s.esc && i < n && (p[i] == '"' || p[i] == '\\') {
		// The last chunk ended in an odd run of backslashes: this quote is escaped, or
		// this backslash ends the run evenly.
		i++
	}
	s.esc = false
	no := indexFrom(p, i, open)
	nc := indexFrom(p, i, close)
	if *nb < i {
		*nb = indexFrom(p, i, '\\')
	}
	for {
		k := min(no, nc)
		if k == n {
			break
		}
		q := bytes.Count(p[i:k], quote)
		if *nb < k {
			q -= escapedQuotes(p, i, k, nb)
		}
		in = in != (q&1 == 1)
		i = k + 1
		if k == no {
			no = indexFrom(p, i, open)
			if !in {
				level++
			}
			continue
		}
		nc = indexFrom(p, i, close)
		if !in {
			if level--; level == 0 {
				s.skipping, s.level, s.inStr = 0, 0, false
				s.depth--
				return i
			}
		}
	}
	// The chunk ends inside the container.
	q := bytes.Count(p[i:], quote)
	if *nb < n {
		q -= escapedQuotes(p, i, n, nb)
	}
	in = in != (q&1 == 1)
	// A run of backslashes escapes the next quote as escapedQuotes counts it, inside
	// a string or not (where valid JSON has none), so the scan is the same however
	// the body is cut.
	k := n
	for k > i && p[k-1] == '\\' {
		k--
	}
	s.esc = (n-k)&1 == 1
	s.level, s.inStr = level, in
	return n
}

var quote = []byte{'"'}

// members reads the members of an object whose members matter (the root, or the v2
// "d") from p[i], outside strings and between members, up to the next bracket, at
// once: when no backslash and no name that matters stands before it, and the
// bracket is outside strings, the members before it are of no interest, and the
// one whose value the bracket opens is named right before it. It returns the
// bracket's index and true, having set the member; or, when those do not hold, an
// index and false: the bytes up to it are read byte by byte. next caches the next
// brackets and backslash of p, as json keeps them.
func (s *scanner) members(p []byte, i int, next *[5]int) (int, bool) {
	n := len(p)
	k := n
	for j, c := range [5]byte{'{', '[', '}', ']', '\\'} {
		if next[j] < i {
			next[j] = indexFrom(p, i, c)
		}
		if j < 4 {
			k = min(k, next[j])
		}
	}
	switch {
	case k == n:
		return n, false // the object goes on into the next chunk
	case next[4] < k, bytes.Count(p[i:k], quote)&1 == 1:
		return k + 1, false // a backslash, or the bracket is inside a string
	case mayNameNext(p[i:k], s.depth == 2):
		return k + 1, false // perhaps the next link
	}
	if c := p[k]; c == '}' || c == ']' {
		return k, true
	}
	// The bracket opens the value of the member named last: `"name" : [`.
	j := k - 1
	for j > i && isSpace(p[j]) {
		j--
	}
	if j <= i || p[j] != ':' {
		return k + 1, false
	}
	for j--; j > i && isSpace(p[j]); j-- {
	}
	if j <= i || p[j] != '"' {
		return k + 1, false
	}
	start := bytes.LastIndexByte(p[i:j], '"')
	if start < 0 {
		return k + 1, false
	}
	start += i
	// It is a name where one is due: after '{' or ',', as the byte-by-byte reading
	// tells them apart (in valid JSON, always).
	b := start - 1
	for b >= i && isSpace(p[b]) {
		b--
	}
	if b < i && !s.wantKey || b >= i && p[b] != ',' && p[b] != '{' {
		return k + 1, false
	}
	s.member, s.wantKey = s.memberOf(p[start+1:j]), false
	return k, true
}

// mayNameNext reports whether b, without backslashes, may hold the name of a
// next link: "@odata.nextLink" or "odata.nextLink", or with v2 "__next". It looks
// for `Link"` first, whose 'L' is rare in most text, unlike the 'o' or '"' the
// names begin with.
func mayNameNext(b []byte, v2 bool) bool {
	for rest := b; ; {
		j := bytes.Index(rest, linkQuote)
		if j < 0 {
			break
		}
		if j >= 10 && string(rest[j-10:j]) == "odata.next" {
			return true
		}
		rest = rest[j+len(linkQuote):]
	}
	return v2 && bytes.Contains(b, v2Next)
}

var (
	linkQuote = []byte(`Link"`)
	v2Next    = []byte(`__next"`)
)

// indexFrom is the index of c in p at or after i, or len(p).
func indexFrom(p []byte, i int, c byte) int {
	if j := bytes.IndexByte(p[i:], c); j >= 0 {
		return i + j
	}
	return len(p)
}

// escapedQuotes counts the quotes in p[i:k] that an odd run of backslashes
// escapes, from *nb, the first backslash at or after i, which it leaves at the
// first at or after k. No run begins before i: p[i-1] is a bracket, or i is
// where a chunk begins after an even run.
func escapedQuotes(p []byte, i, k int, nb *int) int {
	n, b := 0, *nb
	for b < k {
		r := b
		for r < len(p) && p[r] == '\\' {
			r++
		}
		if (r-b)&1 == 1 && r < k && p[r] == '"' {
			n++
		}
		b = indexFrom(p, r, '\\')
	}
	*nb = b
	return n
}

// quoteIndex is bytes.IndexByte(b, '"') for the short strings of JSON, where
// the call costs more than the search: it looks at eight bytes at a time, in a
// word, and leaves long strings to bytes.IndexByte. The hot loops look at the
// first word themselves (quoteWord), inlined.
func quoteIndex(b []byte) int {
	for i := 0; i < 16 && i+8 <= len(b); i += 8 {
		if m := quoteWord(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	if len(b) < 16 {
		return bytes.IndexByte(b, '"')
	}
	if j := bytes.IndexByte(b[16:], '"'); j >= 0 {
		return 16 + j
	}
	return -1
}

// quoteWord marks the bytes of w (eight bytes of a body, the first in the lowest
// lane) that are '"', in the high bit of each lane; the lowest mark is exact (the
// borrow of a zero lane may mark only lanes above it).
func quoteWord(w uint64) uint64 {
	x := w ^ 0x2222222222222222
	return (x - 0x0101010101010101) &^ x & 0x8080808080808080
}

// skipString reads string bytes from p[i], and returns where the string ends
// (after its closing quote) or len(p). Inside a string only a quote matters,
// found by bytes.IndexByte; it ends the string unless an odd run of backslashes
// stands before it, which may have begun in an earlier chunk.
func (s *scanner) skipString(p []byte, i int) int {
	for {
		j := bytes.IndexByte(p[i:], '"')
		if j < 0 {
			k := len(p)
			for k > i && p[k-1] == '\\' {
				k--
			}
			odd := (len(p)-k)&1 == 1
			if k == i {
				s.esc = s.esc != odd
			} else {
				s.esc = odd
			}
			return len(p)
		}
		q := i + j
		k := q
		for k > i && p[k-1] == '\\' {
			k--
		}
		escaped := (q-k)&1 == 1
		if k == i && s.esc {
			escaped = !escaped
		}
		s.esc = false
		if !escaped {
			s.inStr = false
			return q + 1
		}
		i = q + 1
	}
}

// key takes the bytes p[from:to] of a member name; when the name closed, it
// notes which member's value follows.
func (s *scanner) key(p []byte, from, to int) {
	if s.inStr {
		// The name goes on in the next chunk: keep what it has so far.
		if s.keyFresh {
			from, s.keyFresh = s.keyAt, false
		}
		s.keep(p[from:to])
		return
	}
	s.keying = false
	var name []byte
	if s.keyFresh {
		name = p[s.keyAt : to-1] // the whole name is in this chunk
	} else {
		s.keep(p[from : to-1])
		if s.keyLen > keyCap {
			return
		}
		name = s.keyBuf[:s.keyLen]
	}
	s.member = s.memberOf(name)
}

func (s *scanner) keep(b []byte) {
	if s.keyLen+len(b) > keyCap {
		s.keyLen = keyCap + 1
		return
	}
	s.keyLen += copy(s.keyBuf[s.keyLen:], b)
}

// memberOf names the member called name (as written, escapes and all) in the
// container being read.
func (s *scanner) memberOf(name []byte) uint8 {
	if len(name) == 0 || len(name) > keyCap || !memberFirst[name[0]] {
		// Most names: none of the members begins with this byte, nor with an escape.
		return memNone
	}
	if bytes.IndexByte(name, '\\') >= 0 {
		// Rare: a name spelt with escapes means what it decodes to.
		var dec string
		if json.Unmarshal(append(append([]byte{'"'}, name...), '"'), &dec) != nil {
			return memNone
		}
		name = []byte(dec)
	}
	if s.depth == 1 {
		switch string(name) {
		case "value":
			return memValue
		case "d":
			return memD
		case "@odata.nextLink", "odata.nextLink":
			return memNext
		}
		return memNone
	}
	switch string(name) { // in "d"
	case "results":
		return memResults
	case "__next":
		return memNext
	}
	return memNone
}

// memberFirst marks the bytes a name of a member that matters may begin with,
// written plainly or with an escape.
var memberFirst = func() (t [256]bool) {
	for _, c := range []byte(`vdo@r_\`) {
		t[c] = true
	}
	return t
}()

// The states of the Atom scan.
const (
	xText    = iota
	xLT      // after '<'
	xName    // the element name of a start or end tag
	xTag     // in a start tag, between attributes
	xAttr    // an attribute name
	xAttrEq  // after an attribute name, before '='
	xAttrQ   // after '=', before the quote
	xAttrVal // in a quoted attribute value
	xEndTag  // after an end tag's name, before '>'
	xBang    // after "<!"
	xComment // in <!-- -->
	xCDATA   // in <![CDATA[ ]]>
	xDecl    // in <!DOCTYPE …>
	xPI      // in <? ?>
)

// The root elements of an Atom document.
const (
	rootNone = iota
	rootFeed
	rootEntry
	rootOther
)

// atom reads a chunk of an XML document.
func (s *scanner) atom(p []byte) {
	for i := 0; i < len(p); {
		switch s.xs {
		case xText:
			if s.xdepth >= 2 && s.root == rootFeed {
				// Inside an entry: only the nesting counts, read tag by tag.
				var careful bool
				if i, careful = s.entryTags(p, i); !careful {
					continue
				}
			}
			j := bytes.IndexByte(p[i:], '<')
			if j < 0 {
				return
			}
			i += j + 1
			s.xs = xLT
		case xLT:
			c := p[i]
			switch c {
			case '/':
				s.endTag, s.nameLen, s.xs = true, 0, xName
				i++
			case '!':
				s.nameLen, s.xs = 0, xBang
				i++
			case '?':
				s.run, s.xs = 0, xPI
				i++
			default:
				s.endTag, s.nameLen, s.xs = false, 0, xName
			}
		case xName:
			j := i
			for j < len(p) && !nameEnd(p[j]) {
				j++
			}
			s.nameLen = appendCapped(s.nameBuf[:], s.nameLen, p[i:j])
			i = j
			if i == len(p) {
				return
			}
			if !s.element() {
				return
			}
		case xTag:
			c := p[i]
			i++
			switch {
			case c == '>':
				s.closeTag()
			case c == '/':
				s.slash = true
			case isSpace(c):
			default:
				s.slash, s.nameLen, s.xs = false, 0, xAttr
				i--
			}
		case xAttr:
			j := i
			for j < len(p) && !nameEnd(p[j]) && p[j] != '=' {
				j++
			}
			s.nameLen = appendCapped(s.nameBuf[:], s.nameLen, p[i:j])
			i = j
			if i < len(p) {
				s.xs = xAttrEq
			}
		case xAttrEq:
			c := p[i]
			switch {
			case c == '=':
				s.xs = xAttrQ
				i++
			case isSpace(c):
				i++
			default:
				s.xs = xTag // malformed: read on as the tag
			}
		case xAttrQ:
			c := p[i]
			switch {
			case c == '"' || c == '\'':
				s.quote, s.valLen, s.xs = c, 0, xAttrVal
				s.attrRel = s.linkTag && s.nameLen == 3 && string(s.nameBuf[:3]) == "rel"
				i++
			case isSpace(c):
				i++
			default:
				s.xs = xTag
			}
		case xAttrVal:
			j := bytes.IndexByte(p[i:], s.quote)
			end := len(p)
			if j >= 0 {
				end = i + j
			}
			if s.attrRel {
				s.valLen = appendCapped(s.valBuf[:], s.valLen, p[i:end])
			}
			if j < 0 {
				return
			}
			i = end + 1
			s.xs = xTag
			if s.attrRel && s.valLen <= valCap {
				// RFC 4287 §4.2.7.2: a registered relation also has an IANA URI.
				switch string(s.valBuf[:s.valLen]) {
				case "next", "http://www.iana.org/assignments/relation/next":
					s.next = true
				}
			}
		case xEndTag:
			j := bytes.IndexByte(p[i:], '>')
			if j < 0 {
				return
			}
			i += j + 1
			s.xs = xText
			s.xdepth--
			if s.xdepth < 0 {
				s.bad, s.mode = true, scanOther
				return
			}
			if s.xdepth == 0 {
				s.ended = true
			}
		case xBang:
			// "<!--" opens a comment, "<![CDATA[" a CDATA section, and any other "<!" a
			// declaration; nameBuf holds what follows "<!" until it is clear which.
			c := p[i]
			i++
			s.nameBuf[s.nameLen] = c
			s.nameLen++
			got := string(s.nameBuf[:s.nameLen])
			switch {
			case got == "--":
				s.run, s.xs = 0, xComment
			case got == "[CDATA[":
				s.run, s.xs = 0, xCDATA
			case len(got) <= 2 && got == "--"[:len(got)], got == "[CDATA["[:len(got)]:
			default:
				s.xs, s.declNest = xDecl, bytes.Count(s.nameBuf[:s.nameLen-1], []byte("["))
				i--
			}
		case xComment, xCDATA, xPI:
			i = s.skipUntil(p, i)
		case xDecl:
			c := p[i]
			i++
			switch {
			case c == '[':
				s.declNest++
			case c == ']':
				s.declNest--
			case c == '>' && s.declNest <= 0:
				s.xs = xText
			}
		}
	}
}

// entryTags reads the text and tags inside an entry from p[i], in state xText, and
// returns where it stopped: at the end of p, or after the end tag that closes the
// entry (careful false), or at a '<' that the byte-by-byte reading must take
// (careful true). Only the nesting of elements counts there, so a tag costs a few
// bytes.IndexByte calls: an end tag ends at its first '>', and so does a start tag
// when no other '>' comes before the next '<' ('<' stands in no attribute value,
// '>' may). Comments, CDATA, processing instructions, a tag cut by the chunk's
// end and a '>' that may be in an attribute value go the careful way.
func (s *scanner) entryTags(p []byte, i int) (int, bool) {
	n := len(p)
	lt := indexFrom(p, i, '<')
	for lt < n {
		if lt+1 == n || p[lt+1] == '!' || p[lt+1] == '?' {
			return lt, true
		}
		gt := indexFrom(p, lt, '>')
		if gt == n {
			return lt, true
		}
		next := indexFrom(p, gt, '<')
		if p[lt+1] == '/' {
			if s.xdepth--; s.xdepth == 1 {
				return gt + 1, false // the entry ended
			}
		} else {
			if next == n || bytes.IndexByte(p[gt+1:next], '>') >= 0 {
				return lt, true
			}
			if p[gt-1] != '/' {
				s.xdepth++
			}
		}
		lt = next
	}
	return n, false
}

// skipUntil reads a comment, CDATA section or processing instruction from p[i]
// up to its end ("-->", "]]>", "?>"), which may be split across chunks, and
// returns where reading goes on.
func (s *scanner) skipUntil(p []byte, i int) int {
	mark, need := byte('-'), 2
	switch s.xs {
	case xCDATA:
		mark = ']'
	case xPI:
		mark, need = '?', 1
	}
	for ; i < len(p); i++ {
		switch c := p[i]; {
		case c == '>' && s.run >= need:
			s.xs = xText
			return i + 1
		case c == mark:
			s.run++
		default:
			s.run = 0
			if j := bytes.IndexByte(p[i+1:], mark); j >= 0 {
				i += j // the loop's i++ lands on the mark
			} else {
				return len(p)
			}
		}
	}
	return i
}

// element acts on the element name just read, at the byte that ended it; it
// reports whether the scan goes on.
func (s *scanner) element() bool {
	if s.endTag {
		s.xs = xEndTag
		return true
	}
	local := s.nameBuf[:min(s.nameLen, nameCap)]
	if s.nameLen > nameCap {
		local = nil
	}
	if k := bytes.LastIndexByte(local, ':'); k >= 0 {
		local = local[k+1:]
	}
	s.linkTag, s.slash, s.xs = false, false, xTag
	switch {
	case s.xdepth == 0:
		if s.ended || s.root != rootNone {
			s.bad, s.mode = true, scanOther // a second root
			return false
		}
		switch string(local) {
		case "feed":
			s.root = rootFeed
		case "entry":
			s.root = rootEntry
		default:
			s.root, s.mode = rootOther, scanOther // not Atom
			return false
		}
	case s.xdepth == 1 && s.root == rootFeed:
		switch string(local) {
		case "entry":
			s.rows++
		case "link":
			s.linkTag = true
		}
	}
	return true
}

// closeTag ends a start tag at its '>'.
func (s *scanner) closeTag() {
	s.xs = xText
	if s.slash {
		s.slash = false
		if s.xdepth == 0 {
			s.ended = true // an empty root
		}
		return
	}
	s.xdepth++
}

// nameEnd reports whether c ends an XML name in a tag.
func nameEnd(c byte) bool { return c == '>' || c == '/' || isSpace(c) }

// appendCapped appends b to buf[:n] and returns the new length, or len(buf)+1
// once it would not fit.
func appendCapped(buf []byte, n int, b []byte) int {
	if n+len(b) > len(buf) {
		return len(buf) + 1
	}
	return n + copy(buf[n:], b)
}

// scanWriter passes writes on after reading them: whole with the scanner when the
// source counts rows, only their edges otherwise.
type scanWriter struct {
	next io.Writer
	s    scanner
	e    *edges // nil: the scanner reads
}

// edgesPool keeps the edge buffers, which are too large to clear with every call.
var edgesPool = sync.Pool{New: func() any { return new(edges) }}

// start readies w for a body written on to next; full reads it whole.
func (w *scanWriter) start(next io.Writer, full bool) {
	w.next = next
	if full {
		w.s.reset()
		return
	}
	w.e = edgesPool.Get().(*edges)
	w.e.reset()
}

func (w *scanWriter) Write(p []byte) (int, error) {
	if w.e != nil {
		w.e.write(p)
	} else {
		w.s.write(p)
	}
	return w.next.Write(p)
}

// result is what w read of a body that reached its end (complete) or not. It releases
// what w holds.
func (w *scanWriter) result(complete bool) Served {
	if w.e == nil {
		return w.s.result(complete)
	}
	r := w.e.result(complete)
	edgesPool.Put(w.e)
	w.e = nil
	return r
}

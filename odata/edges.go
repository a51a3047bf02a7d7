package odata

import "bytes"

// edges keeps the first and last bytes of a body, which is enough to tell whether an
// OData page names a next page without reading the whole of it: a page's own next link
// comes after its last entity or, in some servers, before its first. It costs a copy of
// at most edgeTail bytes per write, so it reads every page of a source that does not
// count rows (Upstream.CountRows), where the scanner would cost a pass over every byte.
type edges struct {
	head  [edgeHead]byte
	nhead int
	tail  [2 * edgeTail]byte // the last edgeTail bytes or more, from its start
	ntail int
}

const (
	edgeHead = 1 << 10
	edgeTail = 4 << 10 // a next link with a long $skiptoken still fits
)

func (e *edges) reset() { e.nhead, e.ntail = 0, 0 }

func (e *edges) write(p []byte) {
	if e.nhead < edgeHead {
		e.nhead += copy(e.head[e.nhead:], p)
	}
	if len(p) >= edgeTail {
		e.ntail = copy(e.tail[:], p[len(p)-edgeTail:])
		return
	}
	if e.ntail+len(p) > len(e.tail) {
		// Keep the last edgeTail-len(p) bytes, then append p.
		e.ntail = copy(e.tail[:], e.tail[e.ntail-(edgeTail-len(p)):e.ntail])
	}
	e.ntail += copy(e.tail[e.ntail:], p)
}

// result tells what the edges of a body that reached its end show; rows are not
// counted (-1).
func (e *edges) result(complete bool) Served {
	head, tail := e.head[:e.nhead], e.tail[:e.ntail]
	head = bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xEF\xBB\xBF")), " \t\r\n")
	if !complete || len(head) == 0 {
		return Served{}
	}
	switch head[0] {
	case '{':
		return Served{Read: true, Rows: -1, Next: jsonTailNext(tail) || jsonHeadNext(head)}
	case '<':
		if !atomRootFeedOrEntry(head) {
			return Served{}
		}
		return Served{Read: true, Rows: -1, Next: atomTailNext(tail) || atomHeadNext(head)}
	}
	return Served{}
}

// nextNames are the member names of a JSON page's own next link, with the depth of the
// object that holds it: v4 and v3 in the root object, v2 in "d".
var nextNames = []struct {
	name  []byte
	depth int
}{{[]byte(`"@odata.nextLink"`), 1}, {[]byte(`"odata.nextLink"`), 1}, {[]byte(`"__next"`), 2}}

// memberAt reports whether the name at b[k:] stands where a member name does: after a
// '{' or ',' (and white space). An occurrence inside a string value cannot: its quotes
// would be escaped.
func memberAt(b []byte, k int) bool {
	i := k - 1
	for i >= 0 && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i--
	}
	return i >= 0 && (b[i] == '{' || b[i] == ',')
}

// jsonTailNext reports whether the end of a JSON page holds its own next link: the last
// next-link member with a string value, after which no array closes and exactly as many
// objects close as hold it. One of an expanded collection is followed by the close of
// the entity (and of the page's collection) that holds it.
func jsonTailNext(tail []byte) bool {
	best, end, depth := -1, 0, 0
	for _, n := range nextNames {
		for to := len(tail); ; {
			k := bytes.LastIndex(tail[:to], n.name)
			if k < 0 {
				break
			}
			if memberAt(tail, k) {
				if k > best {
					best, end, depth = k, k+len(n.name), n.depth
				}
				break
			}
			to = k
		}
	}
	if best < 0 {
		return false
	}
	_, rest, ok := stringValue(tail[end:])
	return ok && bytes.IndexByte(rest, ']') < 0 && bytes.Count(rest, []byte("}")) == depth
}

// jsonHeadNext reports whether a JSON page names its next link before its collection:
// a next-link member before the first '[', in the object that holds it.
func jsonHeadNext(head []byte) bool {
	open := bytes.IndexByte(head, '[')
	if open < 0 {
		open = len(head)
	}
	for _, n := range nextNames {
		k := bytes.Index(head[:open], n.name)
		if k < 0 || !memberAt(head, k) {
			continue
		}
		before := head[:k]
		if bytes.Count(before, []byte("{"))-bytes.Count(before, []byte("}")) != n.depth {
			continue
		}
		if _, _, ok := stringValue(head[k+len(n.name):]); ok {
			return true
		}
	}
	return false
}

// atomRootFeedOrEntry reports whether an XML body's root element is an Atom feed or
// entry (any prefix), after the declaration, comments and processing instructions.
func atomRootFeedOrEntry(head []byte) bool {
	for {
		head = bytes.TrimLeft(head, " \t\r\n")
		switch {
		case bytes.HasPrefix(head, []byte("<?")):
			i := bytes.Index(head, []byte("?>"))
			if i < 0 {
				return false
			}
			head = head[i+2:]
		case bytes.HasPrefix(head, []byte("<!--")):
			i := bytes.Index(head, []byte("-->"))
			if i < 0 {
				return false
			}
			head = head[i+3:]
		case len(head) > 1 && head[0] == '<':
			name := head[1:]
			if i := bytes.IndexAny(name, " \t\r\n/>"); i >= 0 {
				name = name[:i]
			}
			if i := bytes.IndexByte(name, ':'); i >= 0 {
				name = name[i+1:]
			}
			return string(name) == "feed" || string(name) == "entry"
		default:
			return false
		}
	}
}

// relNext are the rel attributes of a next link, short and as the IANA URI.
var relNext = [][]byte{
	[]byte(`rel="next"`), []byte(`rel='next'`),
	[]byte(`rel="http://www.iana.org/assignments/relation/next"`), []byte(`rel='http://www.iana.org/assignments/relation/next'`),
}

// linkTagAt returns the <link> tag (any prefix) around b[k:], or nil.
func linkTagAt(b []byte, k int) []byte {
	start := bytes.LastIndexByte(b[:k], '<')
	stop := bytes.IndexByte(b[k:], '>')
	if start < 0 || stop < 0 {
		return nil
	}
	tag := b[start : k+stop+1]
	name := tag[1:]
	if i := bytes.IndexAny(name, " \t\r\n"); i >= 0 {
		name = name[:i]
	}
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	if string(name) != "link" {
		return nil
	}
	return tag
}

// atomTailNext reports whether the end of an Atom feed holds its own <link rel="next">:
// the last one, after which no entry ends. One of an inline expanded feed is followed by
// the end of the entry that holds it.
func atomTailNext(tail []byte) bool {
	for _, rel := range relNext {
		k := bytes.LastIndex(tail, rel)
		if k < 0 {
			continue
		}
		tag := linkTagAt(tail, k)
		if tag == nil {
			continue
		}
		rest := tail[bytes.LastIndexByte(tail[:k], '<')+len(tag):]
		if !bytes.Contains(rest, []byte("entry>")) {
			return true
		}
	}
	return false
}

// atomHeadNext reports whether an Atom feed names its next page before its first entry.
func atomHeadNext(head []byte) bool {
	first := len(head)
	if i := bytes.Index(head, []byte("entry")); i >= 0 {
		first = i
	}
	for _, rel := range relNext {
		if k := bytes.Index(head[:first], rel); k >= 0 && linkTagAt(head, k) != nil {
			return true
		}
	}
	return false
}

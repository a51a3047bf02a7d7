package odata

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
)

// Run-ahead paging: a relayed 200 page that names a next page (v4 "@odata.nextLink", v3
// "odata.nextLink", v2 "__next", Atom <link rel="next">) starts a fetch of that page with
// the same caller's Authorizer while the client still reads the current one. The page
// waits, as a flight and then as a kept response, under the key the client's request for
// exactly that link will have; a failed fetch keeps nothing, and the client's request
// then goes upstream as it would without the accelerator.

// pageLink is a page of a source: its escaped path under the source's URL and its raw query.
type pageLink struct{ path, query string }

// nextLink finds the next page's link in a rewritten body and maps it back to the
// source, or returns nil when there is none, or it leads off the source.
func (c *call) nextLink(body []byte) *pageLink {
	raw, ok := findNext(body)
	if !ok {
		return nil
	}
	pub := c.st.src.PublicBase
	rest, ok := strings.CutPrefix(raw, pub)
	if !ok {
		// A relative link (OData v4 allows them) resolves against the request's URL.
		ref, err := url.Parse(raw)
		if err != nil || ref.IsAbs() || ref.Host != "" {
			return nil
		}
		base, err := url.Parse(pub + c.path)
		if err != nil {
			return nil
		}
		if rest, ok = strings.CutPrefix(base.ResolveReference(ref).String(), pub); !ok {
			return nil
		}
	}
	rest, _, _ = strings.Cut(rest, "#")
	p, q, _ := strings.Cut(rest, "?")
	if checkPath(p) != nil {
		return nil
	}
	return &pageLink{path: cleanEscaped(p), query: stripQuery(q, c.rl.apiKey)}
}

// findNext returns the next link of an OData page, JSON or Atom, decoded from its JSON
// string or XML attribute. The feed's own link follows its entries, so the scan runs
// backwards from the end and stops at the last link.
func findNext(b []byte) (string, bool) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n' || b[i] == 0xEF || b[i] == 0xBB || b[i] == 0xBF) {
		i++
	}
	if i < len(b) && b[i] == '<' {
		return findAtomNext(b)
	}
	best, end := -1, 0
	// "@odata.nextLink" (v4) and "odata.nextLink" (v3), not "Orders@odata.nextLink" of
	// an expanded collection.
	for to := len(b); ; {
		k := bytes.LastIndex(b[:to], []byte(`odata.nextLink"`))
		if k < 0 {
			break
		}
		if k >= 1 && b[k-1] == '"' || k >= 2 && b[k-1] == '@' && b[k-2] == '"' {
			best, end = k, k+len(`odata.nextLink"`)
			break
		}
		to = k
	}
	if k := bytes.LastIndex(b, []byte(`"__next"`)); k > best {
		best, end = k, k+len(`"__next"`)
	}
	if best < 0 {
		return "", false
	}
	return jsonStringAfter(b[end:])
}

// jsonStringAfter decodes the string value after a member name: `: "…"`.
func jsonStringAfter(b []byte) (string, bool) {
	raw, _, ok := stringValue(b)
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// stringValue finds the string value after a member name, `: "…"`, and returns it
// quoted, with what follows it.
func stringValue(b []byte) (raw, rest []byte, ok bool) {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return nil, nil, false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return b[:i+1], b[i+1:], true
		}
	}
	return nil, nil, false
}

// findAtomNext returns the href of the last <link rel="next"> of an Atom feed.
func findAtomNext(b []byte) (string, bool) {
	best := -1
	var tag []byte
	for _, rel := range relNext {
		if k := bytes.LastIndex(b, rel); k > best {
			if t := linkTagAt(b, k); t != nil {
				best, tag = k, t
			}
		}
	}
	if tag == nil {
		return "", false
	}
	h := bytes.Index(tag, []byte("href="))
	if h < 0 || h+6 > len(tag) {
		return "", false
	}
	q := tag[h+5]
	if q != '"' && q != '\'' {
		return "", false
	}
	v := tag[h+6:]
	e := bytes.IndexByte(v, q)
	if e < 0 {
		return "", false
	}
	return html.UnescapeString(string(v[:e])), true
}

// readAhead starts fetching the page after e for user, with auth and the forwarded
// headers of h, when the source reads ahead further than depth pages and the page is
// neither kept nor in flight. The fetch belongs to the relay: it ends with its page, with
// the source's header timeout, or with Relay.Close.
func (c *call) readAhead(e *kept, user string, auth Authorizer, h http.Header, depth int) {
	st, acc := c.st, c.rl.acc
	if e.next == nil || depth >= st.src.ReadAhead {
		return
	}
	key := newRepeatKey(user, st, e.next.path, e.next.query, h)
	acc.mu.Lock()
	_, have := acc.kept[key]
	_, flying := acc.flights[key]
	if have || flying || acc.closed {
		acc.mu.Unlock()
		return
	}
	if acc.full() {
		acc.mu.Unlock()
		c.rl.log.Debug("read-ahead skipped: memory budget full", "source", st.src.Name, "page", linkHash(key))
		return
	}
	ctx, cancel := context.WithTimeout(acc.ctx, st.timeout)
	f := &flight{key: key, user: user, done: make(chan struct{}), ahead: true, cancel: cancel}
	acc.flights[key] = f
	acc.wg.Add(1)
	acc.mu.Unlock()

	hdr := make(http.Header, len(h))
	for k, v := range h {
		if forwarded[k] && k != "X-Request-Id" && k != "X-Ms-Client-Request-Id" {
			hdr[k] = append([]string(nil), v...)
		}
	}
	u := &url.URL{Path: e.next.path, RawPath: e.next.path, RawQuery: e.next.query}
	if p, err := url.PathUnescape(e.next.path); err == nil {
		u.Path = p
	}
	in := (&http.Request{Method: http.MethodGet, URL: u, Header: hdr, Host: c.in.Host,
		RemoteAddr: c.in.RemoteAddr, TLS: c.in.TLS, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}).WithContext(ctx)
	rl, next := c.rl, e.next // c goes back to its pool before the fetch ends
	rl.log.Debug("read-ahead started", "source", st.src.Name, "page", linkHash(key), "depth", depth+1)
	go func() {
		defer acc.wg.Done()
		defer cancel()
		defer func() {
			// A fetch no client waits for must not take the process down; its flight
			// ends empty and a waiting client goes upstream itself.
			if p := recover(); p != nil {
				rl.log.Error("read-ahead fetch panicked", "source", st.src.Name, "panic", fmt.Sprint(p))
			}
			acc.settle(f.key, f, nil, 0)
		}()
		rl.fetchAhead(st, in, next, f, auth, depth+1)
	}()
}

// fetchAhead relays a read-ahead request into the flight f, through the relay's own
// pipeline (the same header policy and rewriting as a client's), to no client.
func (rl *Relay) fetchAhead(st *sourceState, in *http.Request, link *pageLink, f *flight, auth Authorizer, depth int) {
	rec := &pageRecorder{h: http.Header{}}
	last := link.path[strings.LastIndexByte(link.path, '/')+1:]
	if u, err := url.PathUnescape(last); err == nil {
		last = u
	}
	c := calls.Get().(*call)
	*c = call{rl: rl, st: st, w: rec, in: in, path: link.path, last: last, auth: auth, replayable: true,
		flight: f, depth: depth, ahead: true}
	c.out.w = rec
	c.upRawPath = st.targetPath + c.path
	c.upPath = c.upRawPath
	if p, err := url.PathUnescape(c.upRawPath); err == nil {
		c.upPath = p
	}
	c.upQuery = link.query
	err := c.relay()
	if c.flight != nil {
		rl.log.Debug("read-ahead failed", "source", st.src.Name, "page", linkHash(f.key), "status", c.status)
		c.settleFlight(false)
	}
	if err == nil {
		c.release()
	}
}

// pageRecorder is the ResponseWriter of a read-ahead fetch: the body is kept by the
// call's keepBuffer, so it only holds the headers and the status.
type pageRecorder struct {
	h      http.Header
	status int
}

func (p *pageRecorder) Header() http.Header         { return p.h }
func (p *pageRecorder) WriteHeader(status int)      { p.status = status }
func (p *pageRecorder) Write(b []byte) (int, error) { return len(b), nil }

// canonical is the form of an escaped path or raw query under which two requests count
// as the same: percent-encodings of characters that mean the same raw (RFC 3986 §6.2.2:
// unreserved characters, and the sub-delimiters OData uses in literals and options,
// such as ' ( ) , : $) are decoded, the others are upper-cased, and bytes that may not
// stand raw are encoded. A client that prints a next link's $skiptoken='x' as %27x%27
// still asks for the page read ahead.
func canonical(s string, path bool) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] == '%' || !rawOK(s[i], path) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			d := unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
			if sameRaw(d) {
				b.WriteByte(d)
				continue
			}
			c = d
		} else if rawOK(c, path) && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// rawOK reports whether c may stand raw in an escaped path or query.
func rawOK(c byte, path bool) bool {
	if pathByte(c) {
		return true
	}
	return !path && c == '?'
}

// sameRaw reports whether a percent-encoded c means the same as c raw, in a path and in
// a query of OData.
func sameRaw(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$'()*,:@", c) >= 0
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

package odata

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/odata-bridge/bridge/fault"
)

// modifyResponse applies the header policy and chooses the body pipeline: rewritten
// (and gzip-compressed when the client accepts it) for OData documents, byte for byte
// for media, $value and $count.
func (c *call) modifyResponse(res *http.Response) error {
	c.status = res.StatusCode
	h := res.Header
	c.st.learn(h)

	// Only what an OData client reads passes: an upstream's cookies, CORS grants,
	// Refresh, Clear-Site-Data, challenges or policies would act on the bridge's origin.
	for k := range h {
		if !relayedHeader(k) {
			delete(h, k)
		}
	}
	// Go canonicalizes OData-Version as Odata-Version; send the spec's spelling, once.
	for _, k := range odataSpellings {
		if v := h[k[0]]; len(v) > 0 {
			delete(h, k[0])
			h[k[1]] = v[:1]
		}
	}
	for _, k := range linkHeaders {
		for i, v := range h[k] {
			h[k][i] = c.st.headers.Replace(v)
		}
	}
	if locs := h["Location"]; len(locs) > 0 {
		if loc := c.sourceLocation(res, locs[0]); loc != "" {
			h["Location"] = []string{loc}
		} else {
			delete(h, "Location")
		}
	}
	if isRedirect(res.StatusCode) && len(h["Location"]) == 0 {
		return fault.With(ErrUpstreamUnreachable, "redirect to outside the source")
	}
	c.isolateBody(h, res.StatusCode)
	privateCache(h)

	if !c.rewritable(h) {
		c.settleFlight(false) // only OData documents are shared
		return nil            // Content-Length and every byte kept
	}
	h.Del("Content-Length")
	h.Del("Content-Md5")
	addVary(h, "Accept-Encoding")
	// res.ContentLength stays: copyBody flushes after every read only for bodies of
	// unknown length, and a small rewritten body then still leaves in one packet, with
	// the length net/http computes for it.
	if !bodyAllowed(c.in.Method, res.StatusCode) {
		if c.in.Method == http.MethodHead && c.gzipOK && bodyAllowed(http.MethodGet, res.StatusCode) {
			h.Set("Content-Encoding", "gzip") // RFC 9110 §9.3.2: the headers a GET would get
		}
		return nil
	}
	if h.Get("Content-Encoding") == "gzip" {
		// Only a misbehaving upstream or transport gets here: the relay asks for identity.
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			return fault.Because(ErrUpstreamUnreachable, fmt.Errorf("bad gzip body: %w", err))
		}
		res.Body = struct {
			io.Reader
			io.Closer
		}{zr, res.Body}
		h.Del("Content-Encoding")
	}
	var sink io.Writer = &c.out
	if c.gzipOK {
		h.Set("Content-Encoding", "gzip")
		c.gz = getGzip(&c.out)
		sink = c.gz
	}
	if c.cacheKey != "" && res.StatusCode == http.StatusOK {
		c.tee = &capBuffer{next: sink, limit: maxCachedMetadata}
		c.teeHeader = h.Clone()
		c.teeHeader.Del("Content-Encoding")
		sink = c.tee
	}
	if c.flight != nil {
		if res.StatusCode == http.StatusOK {
			next := sink
			if c.ahead {
				next = nil // no client: only the kept copy matters
			}
			c.keep = newKeepBuffer(c, next, res.ContentLength)
			c.keep.header = h.Clone()
			c.keep.header.Del("Content-Encoding")
			sink = c.keep
		} else {
			c.settleFlight(false) // only 200 responses are shared
		}
	}
	if c.readsBody(res.StatusCode) {
		// The rewritten body is read (scanWriter) before it is kept, cached or compressed,
		// so what it finds holds for every copy of it.
		c.scan.start(sink, c.st.src.CountRows)
		c.scanned = true
		sink = &c.scan
	}
	c.rewriter = c.st.getRewriter(sink)
	c.body = c.rewriter
	return nil
}

// readsBody reports whether the call's body is read for Served: a 2xx answer to a
// request for data, not for $metadata, the service document or a $batch.
func (c *call) readsBody(status int) bool {
	return status >= 200 && status < 300 && c.path != "" && c.last != "$metadata" && c.last != "$batch"
}

// relayedHeader reports whether the upstream response header k (canonical form) reaches
// the client: the representation's metadata, caching, OData's own headers and the links
// the relay rewrites. Content-Encoding is the pipeline's to handle; Allow is what a 405
// must carry (RFC 9110 §15.5.6).
func relayedHeader(k string) bool {
	switch k {
	case "Content-Type", "Content-Length", "Content-Language", "Content-Encoding",
		"Etag", "Last-Modified", "Cache-Control", "Expires", "Date", "Age", "Vary", "Retry-After", "Allow",
		"Odata-Version", "Dataserviceversion", "Preference-Applied",
		"Location", "Content-Location", "Odata-Entityid", "Link":
		return true
	}
	return false
}

// linkHeaders are the headers whose source URLs move onto the public base.
var linkHeaders = []string{"Content-Location", "OData-EntityId", "Link"}

// isRedirect reports whether status sends the client elsewhere by its Location
// (RFC 9110 §15.4; 300 may and 304 does not).
func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusUseProxy,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// sourceLocation returns the upstream's Location loc on the source's public base, or ""
// when it leads anywhere else: another host, the bridge's other routes, or a path
// checkPath refuses (dot segments a browser would resolve). loc is resolved against the
// upstream request first, so a relative Location counts where it lands.
func (c *call) sourceLocation(res *http.Response, loc string) string {
	ref, err := url.Parse(loc)
	if err != nil {
		return ""
	}
	at := c.st.target
	if res.Request != nil && res.Request.URL != nil {
		at = res.Request.URL
	}
	abs := at.ResolveReference(ref).String()
	rest, ok := "", false
	for _, b := range c.st.bases {
		if rest, ok = strings.CutPrefix(abs, b); ok {
			break
		}
	}
	if !ok {
		// An upstream that knows the bridge may send the public URL itself.
		if rest, ok = strings.CutPrefix(abs, c.st.src.PublicBase); !ok {
			return ""
		}
	}
	p, _, _ := strings.Cut(rest, "#")
	p, _, _ = strings.Cut(p, "?")
	if checkPath(p) != nil {
		return ""
	}
	return c.st.src.PublicBase + rest
}

// Values the relay sets, shared by every response: net/http only reads them, and a
// caller's Header.Add appends to a full slice, so it copies first.
var (
	octetStream = []string{"application/octet-stream"}
	attachment  = []string{"attachment"}
)

// isolateBody keeps an upstream body from being rendered as a document of the bridge's
// origin, on top of the sandbox CSP and nosniff every /odata response carries (Isolate).
// A body without a type is application/octet-stream (net/http would sniff one, perhaps
// as text/html). The rule for Content-Disposition: attachment:
//
//   - OData's own types stay inline: JSON, XML, Atom, AtomPub service documents,
//     text/plain ($count) and multipart/mixed ($batch).
//   - A type that can hold active content (HTML, XHTML, SVG, XSLT, other XML, script,
//     style sheets) is always an attachment, $value or not.
//   - Any other type is inline for $value (media such as images) and an attachment
//     elsewhere, where an OData service has no reason to send it.
//
// A Content-Type sent twice or holding a comma is an attachment: browsers read the last
// of a list of types, the relay would read the first. An attachment is sent as
// application/octet-stream.
func (c *call) isolateBody(h http.Header, status int) {
	if status == http.StatusNoContent || status == http.StatusNotModified {
		return
	}
	ct := h["Content-Type"]
	if len(ct) == 0 {
		h["Content-Type"] = octetStream
		if c.last != "$value" {
			h["Content-Disposition"] = attachment
		}
		return
	}
	if len(ct) > 1 || strings.IndexByte(ct[0], ',') >= 0 {
		h["Content-Type"] = octetStream
		h["Content-Disposition"] = attachment
		return
	}
	mt, _, _ := strings.Cut(ct[0], ";")
	mt = strings.TrimSpace(mt)
	for _, t := range inlineTypes {
		if strings.EqualFold(mt, t) {
			return
		}
	}
	if c.last != "$value" || activeType(mt) {
		// An attachment is also typed as plain bytes: with nosniff, no page
		// of the bridge's origin can load it as a script or a style sheet.
		h["Content-Type"] = octetStream
		h["Content-Disposition"] = attachment
	}
}

// privateCache keeps every relayed response out of shared caches: each is
// one caller's (RFC 9111 §5.2.2.7), and a cache in front of the bridge must
// never answer another caller with it, whatever the upstream allows. The
// upstream's public and s-maxage go; its other directives stay.
func privateCache(h http.Header) {
	cc := h["Cache-Control"]
	if len(cc) == 0 {
		h["Cache-Control"] = privateValue
		return
	}
	var keep []string
	private, noStore := false, false
	for _, v := range cc {
		for d := range strings.SplitSeq(v, ",") {
			d = strings.TrimSpace(d)
			name, _, _ := strings.Cut(d, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "":
				continue
			case "public", "s-maxage", "proxy-revalidate":
				continue
			case "private":
				private = true
			case "no-store":
				noStore = true
			}
			keep = append(keep, d)
		}
	}
	if !private && !noStore {
		keep = append(keep, "private")
	}
	h["Cache-Control"] = []string{strings.Join(keep, ", ")}
}

var privateValue = []string{"private"}

// inlineTypes are the media types of OData responses.
var inlineTypes = []string{
	"application/json", "application/xml", "text/xml", "application/atom+xml",
	"application/atomsvc+xml", "text/plain", "multipart/mixed",
}

// activeType reports whether a browser may run script in, or build a page from, a body
// of media type mt.
func activeType(mt string) bool {
	for _, s := range []string{"html", "svg", "xml", "xsl", "script", "multipart", "css"} {
		if containsFold(mt, s) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII sub, ignoring case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// ContentSecurityPolicy is the policy of every response under /odata: a relayed body is
// the upstream's, so it gets no script, no origin (sandbox without allow-same-origin),
// no subresource and no frame around it.
const ContentSecurityPolicy = "sandbox; default-src 'none'; frame-ancestors 'none'"

var (
	cspValue     = []string{ContentSecurityPolicy}
	nosniffValue = []string{"nosniff"}
)

// Isolate sets the headers that keep any response under /odata from acting on the
// bridge's origin: the sandbox Content-Security-Policy and X-Content-Type-Options:
// nosniff. The relay, the REST service and WriteError call it; its values are shared,
// not allocated per response.
func Isolate(h http.Header) {
	h["Content-Security-Policy"] = cspValue
	h["X-Content-Type-Options"] = nosniffValue
}

// rewritable reports whether the response is an OData document whose links the relay
// rewrites: JSON, Atom/XML, CSDL and $batch multipart, but never $value or $count, and
// never a body in an encoding the relay cannot read.
func (c *call) rewritable(h http.Header) bool {
	if c.last == "$value" || c.last == "$count" {
		return false
	}
	if ce := h.Get("Content-Encoding"); ce != "" && ce != "identity" && ce != "gzip" {
		return false
	}
	// The media type only, without mime.ParseMediaType's allocations on every response.
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	switch mt {
	case "application/json", "application/atom+xml", "application/atomsvc+xml", "application/xml",
		"text/xml", "multipart/mixed", "application/http":
		return true
	}
	return strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml")
}

func bodyAllowed(method string, status int) bool {
	return method != http.MethodHead && status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func addVary(h http.Header, v string) {
	for _, have := range h.Values("Vary") {
		for f := range strings.SplitSeq(have, ",") {
			if f = strings.TrimSpace(f); strings.EqualFold(f, v) || f == "*" {
				return
			}
		}
	}
	h.Add("Vary", v)
}

// acceptsGzip reports whether Accept-Encoding admits gzip (RFC 9110 §12.5.3: q=0 refuses).
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(part, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name != "gzip" && name != "x-gzip" && name != "*" {
				continue
			}
			q := 1.0
			if k, val, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(k) == "q" {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
					q = f
				}
			}
			if q > 0 {
				return true
			}
		}
	}
	return false
}

// learn records the OData version the upstream speaks, for the shape of later errors.
func (st *sourceState) learn(h http.Header) {
	if st.src.Version != "" || st.learned.Load() != nil {
		return
	}
	v := ""
	if ov := h.Get("OData-Version"); ov != "" {
		v = "4.0"
	} else if dv := h.Get("DataServiceVersion"); dv != "" {
		switch major, _, _ := strings.Cut(strings.TrimSpace(dv), "."); major {
		case "1", "2":
			v = "2.0"
		case "3":
			v = "3.0"
		}
	}
	if v != "" {
		st.learned.Store(&v)
	}
}

// finish ends a relayed body that completed: the Rewriter's tail, the gzip trailer,
// what was read of the body and the $metadata cache entry.
func (c *call) finish() error {
	var err error
	if c.rewriter != nil {
		err = c.rewriter.Close()
	}
	if c.gz != nil {
		err = errors.Join(err, c.gz.Close())
		putGzip(c.gz)
		c.gz = nil
	}
	if c.scanned {
		c.served = c.scan.result(err == nil)
	}
	if c.tee != nil && err == nil && !c.tee.over && c.status == http.StatusOK {
		c.st.cache.put(c.cacheKey, &metaEntry{header: c.teeHeader, body: c.tee.buf, served: c.served})
	}
	if c.flight != nil {
		c.settleFlight(err == nil)
	}
	c.st.m.sent(c.out.n)
	return err
}

// abandon releases what an aborted call holds, without writing anything more; err is
// why the stream broke.
func (c *call) abandon(err error) {
	c.settleFlight(false)
	if c.scanned {
		c.scan.result(false) // nothing read holds of a broken body
	}
	var cw errClientWrite
	if c.ahead {
		c.rl.log.Debug("read-ahead stream aborted", "source", c.st.src.Name, "bytes", c.out.n, "error", err)
	} else if c.in.Context().Err() != nil || errors.As(err, &cw) {
		c.rl.log.Debug("relay stream aborted: client gone", "source", c.st.src.Name, "bytes", c.out.n, "error", err)
	} else {
		c.rl.log.Warn("relay stream aborted after the first byte", "source", c.st.src.Name, "status", c.status, "bytes", c.out.n, "error", err)
	}
	if c.gz != nil {
		putGzip(c.gz) // Reset on the next use
		c.gz = nil
	}
	c.releaseRewriter()
	if c.ahead {
		return // no client saw a byte of it
	}
	c.st.m.sent(c.out.n)
	c.st.m.abort()
}

// releaseRewriter returns the call's Rewriter to its source's pool.
func (c *call) releaseRewriter() {
	if c.rewriter != nil {
		c.st.putRewriter(c.rewriter)
		c.rewriter, c.body = nil, nil
	}
}

// serveCached answers a $metadata request from the per-user cache.
func (c *call) serveCached(e *metaEntry) Served { return c.serveBody(e.header, e.body, e.served) }

// serveBody writes a 200 the relay holds whole: its headers, and its body
// compressed when the client accepts gzip. It returns served, what the relay read
// of the body when it was relayed, once the body reached the client whole.
func (c *call) serveBody(header http.Header, body []byte, served Served) Served {
	h := c.w.Header()
	delete(h, "Odata-Version")
	for k, v := range header {
		h[k] = slices.Clone(v)
	}
	var err error
	if c.gzipOK {
		h.Set("Content-Encoding", "gzip")
		c.w.WriteHeader(http.StatusOK)
		gz := getGzip(&c.out)
		_, err = gz.Write(body)
		err = errors.Join(err, gz.Close())
		putGzip(gz)
	} else {
		h.Set("Content-Length", strconv.Itoa(len(body)))
		c.w.WriteHeader(http.StatusOK)
		_, err = c.out.Write(body)
	}
	c.st.m.sent(c.out.n)
	if err != nil {
		return Served{}
	}
	return served
}

// gzipWriter is a pooled gzip.Writer at BestSpeed: relaying at network speed matters
// more than the last percent of ratio, and JSON still shrinks several times.
type gzipWriter = gzip.Writer

var gzipPool sync.Pool

func getGzip(w io.Writer) *gzipWriter {
	if z, ok := gzipPool.Get().(*gzipWriter); ok {
		z.Reset(w)
		return z
	}
	z, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // the level is valid
	return z
}

func putGzip(z *gzipWriter) { gzipPool.Put(z) }

// capBuffer passes writes on and keeps a copy up to limit bytes.
type capBuffer struct {
	next  io.Writer
	buf   []byte
	limit int
	over  bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if !b.over {
		if len(b.buf)+len(p) > b.limit {
			b.over, b.buf = true, nil
		} else {
			b.buf = append(b.buf, p...)
		}
	}
	return b.next.Write(p)
}

package connector

import (
	"bytes"
	"strings"
	"sync"
	"time"

	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/tokencache"
)

// The usage of every relayed request is counted after it is served: per source
// and hour, per user and day, per feed key and day. Only requests that passed
// authorization and the rate limit for a configured source count (feed marks
// them), so neither an unknown source nor any path adds a series.
//
// Refreshes are followed from the requests: the entity set is the first path
// segment up to '(' (the service document and $-segments such as $metadata
// are not entity sets); a request with $skip or $skiptoken in its query is a
// following page, one without is a first page. Whether a page has a next link
// is read from its first and last bytes (@odata.nextLink, odata.nextLink,
// __next, rel="next"), where those are not compressed toward the client.

// tailWriter keeps the first and last bytes of a response body, so the next
// link of a page can be seen without parsing or buffering it.
type tailWriter struct {
	gin.ResponseWriter
	head  [headLen]byte // the first bytes
	nhead int
	tail  [2 * tailLen]byte // the last tailLen bytes or more, at its start
	ntail int
}

// tailWriters are reused: a request's writer is done when its handler returns.
var tailWriters = sync.Pool{New: func() any { return new(tailWriter) }}

const (
	headLen = 512
	tailLen = 512
)

func (w *tailWriter) keep(p []byte) {
	if w.nhead < headLen {
		w.nhead += copy(w.head[w.nhead:], p)
	}
	if len(p) >= tailLen {
		w.ntail = copy(w.tail[:], p[len(p)-tailLen:])
		return
	}
	if w.ntail+len(p) > len(w.tail) {
		// Keep the last tailLen-len(p) bytes, then append p.
		w.ntail = copy(w.tail[:], w.tail[w.ntail-(tailLen-len(p)):w.ntail])
	}
	w.ntail += copy(w.tail[w.ntail:], p)
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.keep(p)
	return w.ResponseWriter.Write(p)
}

func (w *tailWriter) WriteString(s string) (int, error) {
	w.keep([]byte(s))
	return w.ResponseWriter.WriteString(s)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *tailWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var nextMarkers = [][]byte{[]byte(`nextLink"`), []byte(`"__next"`), []byte(`rel="next"`), []byte(`rel='next'`)}

// more tells whether the page had a next link: 1, 0, or -1 when the body was
// compressed and cannot be read.
func (w *tailWriter) more() int {
	if w.Header().Get("Content-Encoding") != "" {
		return -1
	}
	for _, m := range nextMarkers {
		if bytes.Contains(w.head[:w.nhead], m) || bytes.Contains(w.tail[:w.ntail], m) {
			return 1
		}
	}
	return 0
}

// entitySetOf is the entity set a relay path pages through, or "" for
// anything a refresh does not page: the service document, $metadata, $batch,
// one entity by its key, a navigation or a $count.
func entitySetOf(path string) string {
	if path == "" || strings.ContainsAny(path, "/(") || strings.HasPrefix(path, "$") || strings.HasPrefix(path, "%24") {
		return ""
	}
	return path
}

// following reports whether a query asks for a page after the first.
func following(rawQuery string) bool {
	q := strings.ToLower(rawQuery)
	return strings.Contains(q, "$skip") || strings.Contains(q, "%24skip")
}

// meter counts the usage of the relay routes and follows refreshes.
func (s *Server) meter(c *gin.Context) {
	if s.opts.Ledger == nil {
		c.Next()
		return
	}
	start := time.Now()
	tw := tailWriters.Get().(*tailWriter)
	tw.ResponseWriter, tw.nhead, tw.ntail = c.Writer, 0, 0
	c.Writer = tw
	defer func() {
		// Also on a panic: the recovery middleware still writes through c.Writer.
		c.Writer = tw.ResponseWriter
		tw.ResponseWriter = nil
		tailWriters.Put(tw)
	}()
	c.Next()
	v, ok := c.Get(callerKey)
	if !ok {
		return
	}
	who := v.(caller)
	d := time.Since(start)
	ctx := c.Request.Context()
	src := c.Param("source")
	u := tokencache.Use{Source: src, Status: tw.Status(), Bytes: int64(max(tw.Size(), 0)), Upstream: d}
	if who.user != "" {
		u.Subject = s.subjectOfSession(ctx, who.user)
	}
	if u.KeyID = s.keyID(who.cred); u.KeyID != "" {
		s.auditFirst(ctx, firstKey{"key", u.KeyID, ""}, tokencache.DayRetention, tokencache.Event{Kind: tokencache.AuditKeyFirstUse, Subject: u.Subject, Session: shortID(who.user), KeyID: u.KeyID})
	}
	s.opts.Ledger.Record(u)
	r := c.Request
	if r.Method != http.MethodGet {
		return
	}
	path := strings.TrimPrefix(strings.TrimPrefix(r.URL.EscapedPath(), "/odata/"+src), "/")
	if set := entitySetOf(path); set != "" {
		s.opts.Ledger.Page(tokencache.Page{
			Source: src, Subject: u.Subject, EntitySet: set, Following: following(r.URL.RawQuery),
			More: tw.more(), Status: u.Status, Bytes: u.Bytes, Duration: d,
		})
	}
}

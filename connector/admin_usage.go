package connector

import (
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/odata"
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
// following page, one without is a first page. The rows of a page and whether
// it named a next page are what the feed read of the body it served
// (odata.Served), before any compression toward the client.

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
	c.Next()
	v, ok := c.Get(callerKey)
	if !ok {
		return
	}
	who := v.(caller)
	var served odata.Served
	if v, ok := c.Get(servedKey); ok {
		served = v.(odata.Served)
	}
	rows := int64(-1) // not counted
	if served.Read {
		rows = served.Rows
	}
	d := time.Since(start)
	ctx := c.Request.Context()
	src := c.Param("source")
	u := tokencache.Use{Source: src, Status: c.Writer.Status(), Bytes: int64(max(c.Writer.Size(), 0)), Rows: rows, Upstream: d}
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
		more := -1
		switch {
		case served.Read && served.Next:
			more = 1
		case served.Read:
			more = 0
		}
		s.opts.Ledger.Page(tokencache.Page{
			Source: src, Subject: u.Subject, EntitySet: set, Following: following(r.URL.RawQuery),
			More: more, Rows: rows, Status: u.Status, Bytes: u.Bytes, Duration: d,
		})
	}
}

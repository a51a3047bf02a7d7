package connector

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/internal/tracing"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// feed authorizes a relay call by the one decision, authorizeUpstream, and hands it
// to the source's Feed.
func (s *Server) feed(c *gin.Context) {
	odata.Isolate(c.Writer.Header()) // every answer under /odata, the redirect below too
	r := c.Request
	name := c.Param("source")
	src, ok := s.sources[name]
	if !ok {
		writeODataError(c.Writer, odata.Version4, fault.Withf(odata.ErrUnknownSource, "no source is named %q", name))
		return
	}
	known := s.versionOf(r.Context(), src)
	version := cmp.Or(known, odata.Version4)
	// The remainder after /odata/{source}/, still escaped, so keys such as
	// Items('a%2Fb') reach the upstream as they were sent.
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/odata/"+name)
	if path == "" && r.Method == http.MethodGet {
		// The service root is the source's URL with a trailing slash, so
		// relative links in the service document resolve under it.
		q := ""
		if r.URL.RawQuery != "" {
			q = "?" + r.URL.RawQuery
		}
		c.Redirect(http.StatusMovedPermanently, "/odata/"+name+"/"+q)
		return
	}
	path = strings.TrimPrefix(path, "/")

	actx, span := s.startSpan(r.Context(), "connector.authorize")
	who, auth, err := s.authorizeUpstream(actx, r, src)
	tracing.End(span, err)
	if err != nil {
		s.writeAuthError(c.Writer, version, err)
		return
	}
	if who.user != "" && !s.allow(c, who.cred, who.user, version) {
		return
	}
	c.Set(callerKey, who) // counted by meter
	c.Set(servedKey, src.Feed.ServeFeed(c.Writer, r, path, who.cacheKey(), auth))
	if known == "" && c.Writer.Status() >= 200 && c.Writer.Status() < 300 {
		// Only an answer that succeeded speaks for the source: an error
		// page of a proxy in front of it may name another version.
		s.rememberVersion(r.Context(), src)
	}
}

// allow applies rate_limit.per_key_per_minute to the caller's feed key or
// session, shared by all replicas. Over the limit the caller gets 429 with the
// Retry-After that Power Query honours. A store failure lets the request
// through: the limit protects the upstream, it must not cause an outage.
func (s *Server) allow(c *gin.Context, cr credential, sid, version string) bool {
	if s.opts.RateLimit <= 0 || sid == "" {
		return true
	}
	// A feed key is limited on its own; a bearer token by its session.
	id := "session:" + sid
	if cr.kind == "key" {
		id = "key:" + cr.value // the store keeps only an HMAC of it
	}
	wait, err := s.opts.Store.Allow(c.Request.Context(), id, s.opts.RateLimit)
	if err != nil {
		s.log.WarnContext(c.Request.Context(), "rate limit not checked", slog.Any("error", err))
		return true
	}
	if wait <= 0 {
		return true
	}
	c.Header("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
	s.auditRateLimit(c, cr, sid)
	writeODataError(c.Writer, version, errRateLimited)
	return false
}

// WriteError renders err in the OData error shape of version with the
// status that classify gives it. It is the error handler of the relay and
// of the REST services.
func WriteError(w http.ResponseWriter, version string, err error) {
	writeODataError(w, version, err)
}

// serviceAuthorizer sends the source's shared client-credentials token (the service-account flow).
type serviceAuthorizer struct{ ts oauth2.TokenSource }

func (a serviceAuthorizer) Authorize(_ context.Context, out *http.Request, renew bool) error {
	if r, ok := a.ts.(interface{ Renew() }); ok && renew {
		r.Renew()
	}
	tok, err := a.ts.Token()
	if err != nil {
		return classifyServiceError(err)
	}
	tok.SetAuthHeader(out)
	return nil
}

func classifyServiceError(err error) error {
	return fmt.Errorf("service token: %w: %v", tokencache.ErrProviderUnavailable, err)
}

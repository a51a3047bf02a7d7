package connector

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/oauth2"

	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// feed authenticates a relay call by the source's auth mode and hands it to
// the source's Feed.
func (s *Server) feed(c *gin.Context) {
	r := c.Request
	name := c.Param("source")
	src, ok := s.sources[name]
	if !ok {
		writeODataError(c.Writer, "4.0", fmt.Errorf("%w: no source is named %q", odata.ErrUnknownSource, name))
		return
	}
	version := src.version()
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

	var (
		auth Authorizer
		user string
	)
	switch src.Auth {
	case "basic-passthrough":
		h := r.Header.Get("Authorization")
		if !strings.HasPrefix(strings.ToLower(h), "basic ") {
			c.Header("WWW-Authenticate", `Basic realm="OData Bridge", charset="UTF-8"`)
			odata.WriteError(c.Writer, version, http.StatusUnauthorized, "Unauthorized", "Send the upstream account's user name and password (Basic).")
			return
		}
		auth = basicAuthorizer{header: h}
	default:
		cr, err := s.callerCredential(r)
		if err == nil {
			user, auth, err = s.feedCaller(r.Context(), cr, src)
		}
		if err != nil {
			writeFeedError(c.Writer, version, err, s.authorizationURI())
			return
		}
		switch {
		case auth != nil:
			// An organizational account, exchanged on-behalf-of.
		case src.Auth == "user":
			auth = &sessionAuthorizer{store: s.opts.Store, sid: user}
		case src.Auth == "client-credentials":
			auth = serviceAuthorizer{src.Service}
		}
		// auth: none leaves auth nil: nothing goes upstream, and an
		// upstream 401 is not retried.
		if !s.allow(c, cr, user, version) {
			return
		}
	}
	src.Serve(c.Writer, r, path, user, auth)
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
	writeODataError(c.Writer, version, errRateLimited)
	return false
}

func (src *Source) version() string {
	if src.ODataVersion != nil {
		if v := src.ODataVersion(); v != "" {
			return v
		}
	}
	return "4.0"
}

// WriteError renders err in the OData error shape of version with the
// status that classify gives it. It is the error handler of the relay and
// of the REST services.
func WriteError(w http.ResponseWriter, version string, err error) {
	writeODataError(w, version, err)
}

// serviceAuthorizer sends the source's shared client-credentials token (flow D).
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

package connector

import (
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/odata-bridge/bridge/tokencache"
)

//go:embed assets
var assets embed.FS

var pageTemplate = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"date": func(v any) string {
		var t time.Time
		switch v := v.(type) {
		case time.Time:
			t = v
		case *time.Time:
			if v != nil {
				t = *v
			}
		}
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
}).ParseFS(assets, "assets/index.html"))

// pageData is what the sign-in page shows.
type pageData struct {
	SignedIn  bool
	Name      string
	Email     string
	CSRF      string
	PublicURL string
	Sources   []sourceInfo
	Keys      []keyInfo
	Message   string
	KeyUsage  map[string][]keyUse // the user's feed keys' requests per day, by key ID
}

// pageHeaders are the sign-in page's security headers: no external assets,
// no framing, no referrer leaking feed URLs.
func pageHeaders(c *gin.Context) {
	c.Header("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	c.Header("X-Frame-Options", "DENY")
	c.Header("Referrer-Policy", "no-referrer")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Cache-Control", "no-store")
}

// index is the sign-in page (the Excel and feed-key flow).
func (s *Server) index(c *gin.Context) {
	pageHeaders(c)
	data := pageData{PublicURL: s.public.String()}
	pc, ok, err := s.pageCookieOf(c)
	if err != nil {
		s.log.ErrorContext(c.Request.Context(), "read page session", slog.Any("error", err))
		s.failPage(c, err)
		return
	}
	if _, err := c.Cookie(s.pageCookieName()); !ok && err == nil {
		// A signed-out or expired cookie is dropped from the browser.
		s.clearPageCookie(c)
	}
	if ok {
		ctx := c.Request.Context()
		sess, err := s.opts.Store.Session(ctx, pc.SessionID)
		if err != nil && !errors.Is(err, tokencache.ErrNotFound) {
			// An outage is not a sign-out: the cookie stays for the next try.
			s.log.ErrorContext(ctx, "read session", slog.Any("error", err))
			s.failPage(c, err)
			return
		}
		if err == nil {
			data.SignedIn, data.Name, data.Email, data.CSRF = true, sess.Name, sess.Email, pc.CSRF
			data.Sources = s.sourceList(ctx)
			keys, err := s.opts.Store.FeedKeys(ctx, sess.Subject)
			if err != nil {
				s.log.ErrorContext(ctx, "list feed keys", slog.Any("error", err))
				s.failPage(c, err)
				return
			}
			for _, k := range keys {
				data.Keys = append(data.Keys, toKeyInfo(k))
			}
			data.KeyUsage = s.keyUsage(ctx, data.Keys)
		} else {
			s.clearPageCookie(c)
		}
	}
	c.Status(http.StatusOK)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := pageTemplate.Execute(c.Writer, data); err != nil {
		s.log.ErrorContext(c.Request.Context(), "render page", slog.Any("error", err))
	}
}

// signIn starts the page's own sign-in at the identity provider.
func (s *Server) signIn(c *gin.Context) {
	s.startSignIn(c, pending{Purpose: "page"})
}

// finishPageSignIn is the end of the page's sign-in at /oauth/callback.
func (s *Server) finishPageSignIn(c *gin.Context, sid string, _ pending) {
	if err := s.setPageCookie(c, sid); err != nil {
		s.log.ErrorContext(c.Request.Context(), "store page session", slog.Any("error", err))
		s.failPage(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Redirect(http.StatusSeeOther, "/")
}

// signOut ends the page's session on the server, so a copy of the cookie
// is refused everywhere afterwards. The bridge session behind it stays,
// because the feed keys created on the page act with it; revoking a key is
// what stops a feed.
func (s *Server) signOut(c *gin.Context) {
	sid, err := s.pageSession(c)
	if errors.Is(err, errCSRF) {
		showError(c, http.StatusForbidden, "The sign-out did not come from the sign-in page.")
		return
	}
	if err != nil {
		s.log.ErrorContext(c.Request.Context(), "read page session", slog.Any("error", err))
		s.failPage(c, err)
		return
	}
	if sid != "" {
		pc, _ := s.openCookie(mustCookie(c, s.pageCookieName()))
		if err := s.opts.Store.DeleteValue(c.Request.Context(), kindPage, pc.PageID); err != nil {
			s.log.ErrorContext(c.Request.Context(), "end page session", slog.Any("error", err))
			s.failPage(c, err)
			return
		}
		s.log.InfoContext(c.Request.Context(), "signed out", slog.String("session", shortID(sid)))
		s.auditSession(c.Request.Context(), tokencache.AuditSignOut, sid, "", "")
	}
	s.clearPageCookie(c)
	c.Redirect(http.StatusSeeOther, "/")
}

// mustCookie is the value of a cookie the request is known to carry.
func mustCookie(c *gin.Context, name string) string {
	v, _ := c.Cookie(name)
	return v
}

// asset serves the page's embedded script and style sheet.
func asset(name, contentType string) gin.HandlerFunc {
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		panic(err)
	}
	return func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=3600")
		c.Header("X-Content-Type-Options", "nosniff")
		c.Data(http.StatusOK, contentType, b)
	}
}

package connector

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/binding"

	"github.com/odata-bridge/bridge/fault"
	"github.com/odata-bridge/bridge/odata"
	"github.com/odata-bridge/bridge/tokencache"
)

// sourceInfo is one entry of GET /api/sources (docs/design.md, HTTP routes).
type sourceInfo struct {
	Name         string  `json:"name"`
	Title        string  `json:"title"`
	Kind         string  `json:"kind"`
	ODataVersion *string `json:"odata_version"` // null while the version is unknown
	URL          string  `json:"url"`
}

// feedURL is the bridge URL of a source's service root.
func (s *Server) feedURL(name string) string { return s.url("/odata/" + name + "/") }

func (s *Server) sourceList(ctx context.Context) []sourceInfo {
	out := make([]sourceInfo, 0, len(s.opts.Sources))
	for i := range s.opts.Sources {
		src := &s.opts.Sources[i]
		title := src.Title
		if title == "" {
			title = src.Name
		}
		info := sourceInfo{Name: src.Name, Title: title, Kind: src.Kind, URL: s.feedURL(src.Name)}
		if v := s.versionOf(ctx, src); v != "" {
			info.ODataVersion = &v
		}
		out = append(out, info)
	}
	return out
}

// listSources feeds the custom connector's navigation table.
func (s *Server) listSources(c *gin.Context) {
	c.JSON(http.StatusOK, s.sourceList(c.Request.Context()))
}

// keyInfo is a feed key as listed; the key itself is shown only once.
type keyInfo struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func toKeyInfo(k tokencache.KeyInfo) keyInfo {
	ki := keyInfo{ID: k.ID, Name: k.Name, CreatedAt: k.CreatedAt.UTC()}
	if !k.LastUsedAt.IsZero() {
		t := k.LastUsedAt.UTC()
		ki.LastUsedAt = &t
	}
	return ki
}

// subjectOf returns the subject of the request's session.
func (s *Server) subjectOf(c *gin.Context) (string, string, error) {
	sid := c.GetString(sessionKey)
	sess, err := s.opts.Store.Session(c.Request.Context(), sid)
	if err != nil {
		return "", "", err
	}
	return sid, sess.Subject, nil
}

func (s *Server) listKeys(c *gin.Context) {
	_, sub, err := s.subjectOf(c)
	if err != nil {
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	keys, err := s.opts.Store.FeedKeys(c.Request.Context(), sub)
	if err != nil {
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	out := make([]keyInfo, 0, len(keys))
	for _, k := range keys {
		out = append(out, toKeyInfo(k))
	}
	c.JSON(http.StatusOK, out)
}

// createKeyRequest is the body of POST /api/keys.
type createKeyRequest struct {
	Name string `json:"name" binding:"required,min=1,max=100"`
}

// maxKeyBody bounds the body of POST /api/keys, whose name is at most 100
// characters.
const maxKeyBody = 4 << 10

func (s *Server) createKey(c *gin.Context) {
	var req createKeyRequest
	// The raw body is checked first: the JSON decoder would turn invalid
	// UTF-8 into U+FFFD, and an unbounded body would be read whole.
	raw, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxKeyBody))
	if err == nil && utf8.Valid(raw) {
		err = binding.JSON.BindBody(raw, &req)
	} else if err == nil {
		err = errors.New("invalid UTF-8")
	}
	if err != nil || strings.IndexFunc(req.Name, unicode.IsControl) >= 0 {
		c.JSON(http.StatusBadRequest, gin.H{"error": gin.H{"code": "BadRequest", "message": `The body must be JSON {"name": "…"} with a name of 1 to 100 printable characters.`}})
		return
	}
	sid, sub, err := s.subjectOf(c)
	if err != nil {
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	if limit := s.opts.MaxKeysPerUser; limit > 0 {
		// Counted across the user's sessions; two concurrent requests at
		// the limit may both pass: the limit bounds abuse, not an exact count.
		keys, err := s.opts.Store.FeedKeys(c.Request.Context(), sub)
		if err != nil {
			writeODataError(c.Writer, odata.Version4, err)
			return
		}
		if len(keys) >= limit {
			writeODataError(c.Writer, odata.Version4, fault.Withf(errKeyLimit, "%d keys is the most one user may hold; revoke one first.", limit))
			return
		}
	}
	info, key, err := s.opts.Store.CreateFeedKey(c.Request.Context(), sid, req.Name)
	if err != nil {
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	s.log.InfoContext(c.Request.Context(), "feed key created", slog.String("key_id", info.ID))
	s.auditSession(c.Request.Context(), tokencache.AuditKeyCreated, sid, info.ID, info.Name)
	c.JSON(http.StatusCreated, gin.H{"id": info.ID, "name": info.Name, "key": string(key), "created_at": info.CreatedAt.UTC()})
}

func (s *Server) deleteKey(c *gin.Context) {
	_, sub, err := s.subjectOf(c)
	if err != nil {
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	if err := s.opts.Store.RevokeFeedKey(c.Request.Context(), sub, c.Param("id")); err != nil {
		if errors.Is(err, tokencache.ErrNotFound) {
			// The caller is signed in: the key is unknown or someone else's.
			err = errNoSuchFeedKey
		}
		writeODataError(c.Writer, odata.Version4, err)
		return
	}
	s.forgetFeedKeys()
	s.log.InfoContext(c.Request.Context(), "feed key revoked", slog.String("key_id", c.Param("id")))
	s.auditSession(c.Request.Context(), tokencache.AuditKeyRevoked, c.GetString(sessionKey), c.Param("id"), "")
	c.Status(http.StatusNoContent)
}

package connector

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/odata-bridge/bridge/idp"
	"github.com/odata-bridge/bridge/tokencache"
)

// Ledger is what the connector needs from the operators' records: usage counters,
// refresh history and the audit trail, shared by every replica.
type Ledger interface {
	Record(u tokencache.Use)
	Page(p tokencache.Page)
	Audit(ctx context.Context, e tokencache.Event) error
	First(ctx context.Context, marker string, ttl time.Duration) (bool, error)
	Hours(ctx context.Context, since time.Time) ([]tokencache.SourceHour, error)
	Days(ctx context.Context, since time.Time, keys bool) ([]tokencache.PartyDay, error)
	Last(ctx context.Context) (map[string]tokencache.LastStatus, error)
	Refreshes(ctx context.Context, source string) ([]tokencache.RefreshRun, error)
	AuditTrail(ctx context.Context, n int) ([]tokencache.Event, error)
	Flush(ctx context.Context) error
}

var _ Ledger = (*tokencache.Ledger)(nil)

// kindIdentity is the store kind of the identity claims kept for a session at
// sign-in, against which the admins list is matched.
const kindIdentity = "ident"

// identity is what kindIdentity holds: the claims an admins entry may name.
type identity struct {
	Subject           string `json:"sub"`
	Email             string `json:"email,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	ObjectID          string `json:"oid,omitempty"`
}

// rememberIdentity keeps the sign-in's identity claims for as long as a page
// session of it can live. A failure only costs the user the admin pages.
func (s *Server) rememberIdentity(ctx context.Context, sid string, id idp.Identity) {
	raw, _ := json.Marshal(identity{Subject: id.Subject, Email: id.Email, PreferredUsername: id.PreferredUsername, ObjectID: id.ObjectID})
	if err := s.opts.Store.PutValue(ctx, kindIdentity, sid, raw, cookieTTL+time.Hour); err != nil {
		s.log.WarnContext(ctx, "store identity claims", slog.Any("error", err))
	}
}

// isAdmin reports whether one of the identity's claims is named in admins:
// e-mail addresses and user names case-insensitively, subject and object IDs
// exactly.
func (s *Server) isAdmin(id identity) bool {
	for _, a := range s.opts.Admins {
		switch {
		case a == "":
		case a == id.Subject, a == id.ObjectID:
			return true
		case strings.EqualFold(a, id.Email), strings.EqualFold(a, id.PreferredUsername):
			return true
		}
		// An Entra subject is tid:oid; the object ID alone names the person too.
		if _, oid, ok := strings.Cut(id.Subject, ":"); ok && a == oid {
			return true
		}
	}
	return false
}

// Keys of the admin request's context.
const (
	adminSubjectKey = "admin_subject"
	callerKey       = "feed_caller"
	servedKey       = "feed_served" // what the feed read of its answer, for meter
)

// requireAdmin lets only the users named in admins through: 401 without a
// sign-in (the page cookie), 403 for everyone else.
func (s *Server) requireAdmin(c *gin.Context) {
	pageHeaders(c)
	ctx := c.Request.Context()
	deny := func(status int, msg string) {
		if strings.HasSuffix(c.Request.URL.Path, ".csv") || strings.HasSuffix(c.Request.URL.Path, ".json") {
			c.AbortWithStatusJSON(status, gin.H{"error": gin.H{"code": http.StatusText(status), "message": msg}})
			return
		}
		showError(c, status, msg)
		c.Abort()
	}
	pc, ok, err := s.pageCookieOf(c)
	if err != nil {
		s.log.ErrorContext(ctx, "read page session", slog.Any("error", err))
		s.failPage(c, err)
		c.Abort()
		return
	}
	if !ok {
		deny(http.StatusUnauthorized, "Sign in on the bridge's start page first.")
		return
	}
	sess, err := s.opts.Store.Session(ctx, pc.SessionID)
	if err != nil {
		deny(http.StatusUnauthorized, "Sign in on the bridge's start page first.")
		return
	}
	id := identity{Subject: sess.Subject, Email: sess.Email}
	if raw, err := s.opts.Store.Value(ctx, kindIdentity, pc.SessionID); err == nil {
		_ = json.Unmarshal(raw, &id)
	}
	id.Subject = sess.Subject
	if !s.isAdmin(id) {
		deny(http.StatusForbidden, "This page is for the bridge's operators.")
		return
	}
	c.Set(adminSubjectKey, sess.Subject)
	c.Next()
}

// audit writes one audit event: a structured log line with audit=true and an
// entry in the shared trail. Events carry no secret, only IDs.
func (s *Server) audit(ctx context.Context, e tokencache.Event) {
	if e.Time.IsZero() {
		e.Time = s.now().UTC()
	}
	attrs := []slog.Attr{slog.Bool("audit", true), slog.String("event", e.Kind)}
	for _, a := range [][2]string{{"subject", e.Subject}, {"email", e.Email}, {"session", e.Session}, {"key_id", e.KeyID}, {"detail", e.Detail}} {
		if a[1] != "" {
			attrs = append(attrs, slog.String(a[0], a[1]))
		}
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs...)
	if s.opts.Ledger == nil {
		return
	}
	if err := s.opts.Ledger.Audit(ctx, e); err != nil {
		s.log.WarnContext(ctx, "audit trail not written", slog.String("event", e.Kind), slog.Any("error", err))
	}
}

// auditSession writes an audit event about a session, naming its subject.
func (s *Server) auditSession(ctx context.Context, kind, sid, keyID, detail string) {
	e := tokencache.Event{Kind: kind, Session: shortID(sid), KeyID: keyID, Detail: detail}
	if sid != "" {
		if sess, err := s.opts.Store.Session(ctx, sid); err == nil {
			e.Subject, e.Email = sess.Subject, sess.Email
		} else {
			// An ended session (a replayed refresh token ends it): its
			// subject is known if it relayed through this replica.
			s.adm.subjects.mu.Lock()
			e.Subject = s.adm.subjects.m[sid]
			s.adm.subjects.mu.Unlock()
		}
	}
	s.audit(ctx, e)
}

// auditToken writes an audit event about the session behind a bridge token,
// read before the token is used; the token itself is never written. Unless
// always, a token that points nowhere writes nothing.
func (s *Server) auditToken(ctx context.Context, kind, token string, always bool) {
	sid := s.tokenSession(ctx, token)
	if sid == "" && !always {
		return
	}
	s.auditSession(ctx, kind, sid, "", "")
}

// tokenSession is the session behind a bridge token, without using the
// token; "" when it points nowhere or the store cannot tell.
func (s *Server) tokenSession(ctx context.Context, token string) string {
	ts, ok := s.opts.Store.(interface {
		TokenSession(ctx context.Context, token string) (string, error)
	})
	if !ok {
		return ""
	}
	sid, _ := ts.TokenSession(ctx, token)
	return sid
}

// adminState is the Server's in-process state for the operators' records.
type adminState struct {
	firsts   firsts
	subjects subjects
}

// firsts remembers, per process, the markers already claimed in the ledger,
// so a key's every request does not cost a store round trip.
type firsts struct {
	mu sync.Mutex
	m  map[firstKey]struct{}
}

// firstKey names a marker without building its string, as a key's every
// request looks it up.
type firstKey struct{ kind, id, window string }

func (k firstKey) String() string { return k.kind + ":" + k.id + ":" + k.window }

// seen reports whether k was seen in this process, and records it.
func (f *firsts) seen(k firstKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[k]; ok {
		return true
	}
	if f.m == nil || len(f.m) >= 100_000 {
		f.m = map[firstKey]struct{}{}
	}
	f.m[k] = struct{}{}
	return false
}

// auditFirst writes e once per marker and ttl across every replica.
func (s *Server) auditFirst(ctx context.Context, marker firstKey, ttl time.Duration, e tokencache.Event) {
	if s.opts.Ledger == nil || s.adm.firsts.seen(marker) {
		return
	}
	first, err := s.opts.Ledger.First(ctx, marker.String(), ttl)
	if err != nil {
		s.log.WarnContext(ctx, "audit marker not checked", slog.Any("error", err))
		return
	}
	if first {
		s.audit(ctx, e)
	}
}

// auditRateLimit records the first rate limit of a caller in an hour.
func (s *Server) auditRateLimit(c *gin.Context, cr credential, sid string) {
	e := tokencache.Event{Kind: tokencache.AuditRateLimited, Session: shortID(sid)}
	marker := firstKey{"rl-session", sid, strconv.FormatInt(s.now().Unix()/3600, 10)}
	if cr.kind == "key" {
		if e.KeyID = s.keyID(cr); e.KeyID == "" {
			return
		}
		marker.kind, marker.id = "rl-key", e.KeyID
	}
	s.auditFirst(c.Request.Context(), marker, time.Hour, e)
}

// keyID is the ID of the feed key cr, when the store can tell it without I/O.
func (s *Server) keyID(cr credential) string {
	if cr.kind != "key" {
		return ""
	}
	if k, ok := s.opts.Store.(interface{ FeedKeyID(key string) string }); ok {
		return k.FeedKeyID(cr.value)
	}
	return ""
}

// subjects caches session ID → subject for usage per user: one store read
// per session and process.
type subjects struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *Server) subjectOfSession(ctx context.Context, sid string) string {
	if strings.HasPrefix(sid, "entra:") {
		return sid // an organizational account names itself
	}
	s.adm.subjects.mu.Lock()
	sub, ok := s.adm.subjects.m[sid]
	s.adm.subjects.mu.Unlock()
	if ok {
		return sub
	}
	sess, err := s.opts.Store.Session(ctx, sid)
	if err != nil {
		return ""
	}
	s.adm.subjects.mu.Lock()
	if s.adm.subjects.m == nil || len(s.adm.subjects.m) >= 10_000 {
		s.adm.subjects.m = map[string]string{}
	}
	s.adm.subjects.m[sid] = sess.Subject
	s.adm.subjects.mu.Unlock()
	return sess.Subject
}

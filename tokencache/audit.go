package tokencache

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Audit event kinds.
const (
	AuditSignIn         = "sign_in"
	AuditSignOut        = "sign_out"
	AuditKeyCreated     = "key_created"
	AuditKeyRevoked     = "key_revoked"
	AuditKeyFirstUse    = "key_first_use"
	AuditSessionRevoked = "session_revoked"
	AuditRefreshReuse   = "refresh_token_reuse"
	AuditConsentStarted = "admin_consent_started"
	AuditConsentResult  = "admin_consent_result"
	AuditRateLimited    = "rate_limited"
)

// Event is one entry of the audit trail. It never holds a token, key or code: key IDs,
// subjects and session-ID prefixes only.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Subject string    `json:"subject,omitempty"`
	Email   string    `json:"email,omitempty"`
	Session string    `json:"session,omitempty"` // a prefix of the session ID
	KeyID   string    `json:"key_id,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

func (l *Ledger) auditKey() string { return l.prefix + "audit" }

// In Redis an event is sealed whole, bound to the stream's key, so a reader of Redis
// sees neither subject nor e-mail address, and an event copied into another stream
// does not open there (it is left out). Events the release before sealing wrote, JSON
// in clear, are still read.

// Audit appends e to the trail (Time is set when zero); about AuditLen events are kept.
func (l *Ledger) Audit(ctx context.Context, e Event) error {
	if e.Time.IsZero() {
		e.Time = l.now().UTC()
	}
	if l.mem != nil {
		l.mem.mu.Lock()
		defer l.mem.mu.Unlock()
		l.mem.audit = append(l.mem.audit, e)
		if n := len(l.mem.audit); n > AuditLen {
			l.mem.audit = append(l.mem.audit[:0:0], l.mem.audit[n-AuditLen:]...)
		}
		return nil
	}
	if l.err != nil {
		return l.err
	}
	raw, _ := json.Marshal(e)
	sealed := l.ring.seal(raw, l.auditKey(), "")
	err := l.rdb.XAdd(ctx, &redis.XAddArgs{Stream: l.auditKey(), MaxLen: AuditLen, Approx: true, Values: []any{"e", sealed}}).Err()
	return unavailable(err)
}

// AuditTrail returns up to n events, newest first.
func (l *Ledger) AuditTrail(ctx context.Context, n int) ([]Event, error) {
	if l.mem != nil {
		l.mem.mu.Lock()
		defer l.mem.mu.Unlock()
		out := make([]Event, 0, min(n, len(l.mem.audit)))
		for i := len(l.mem.audit) - 1; i >= 0 && len(out) < n; i-- {
			out = append(out, l.mem.audit[i])
		}
		return out, nil
	}
	if l.err != nil {
		return nil, l.err
	}
	msgs, err := l.rdb.XRevRangeN(ctx, l.auditKey(), "+", "-", int64(n)).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		stored, _ := m.Values["e"].(string)
		raw, ok := l.openRecord([]byte(stored), l.auditKey(), "")
		var e Event
		if ok && json.Unmarshal(raw, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// First reports whether this is the first call with marker within ttl across every
// replica: a feed key's first use, a caller's first rate limit in an hour.
//
// A marker may name a person (an organizational caller's ID), so in Redis it is named by
// its HMAC under the newest key, {prefix}first:{HMAC}. A marker set under an older key
// or in clear (by the release before) still counts: First sets the new name and, in the
// same round trip, looks for the others.
func (l *Ledger) First(ctx context.Context, marker string, ttl time.Duration) (bool, error) {
	if l.mem != nil {
		now := l.now()
		l.mem.mu.Lock()
		defer l.mem.mu.Unlock()
		if exp, ok := l.mem.flags[marker]; ok && now.Before(exp) {
			return false, nil
		}
		if len(l.mem.flags) > 100_000 {
			for k, exp := range l.mem.flags {
				if !now.Before(exp) {
					delete(l.mem.flags, k)
				}
			}
		}
		l.mem.flags[marker] = now.Add(ttl)
		return true, nil
	}
	if l.err != nil {
		return false, l.err
	}
	names := l.ring.names(l.prefix+"first:", "ledger first\x00"+marker)
	var set *redis.BoolCmd
	var older []*redis.IntCmd
	// One EXISTS per key: on a Cluster the names lie in different slots.
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetNX(ctx, names[0], "1", ttl)
		for _, n := range names[1:] {
			older = append(older, p.Exists(ctx, n))
		}
		older = append(older, p.Exists(ctx, l.prefix+"first:"+marker))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, unavailable(err)
	}
	if !set.Val() {
		return false, nil
	}
	for _, c := range older {
		if c.Val() > 0 {
			return false, nil
		}
	}
	return true, nil
}

// TokenSession returns the session a bridge access or refresh token points to, without
// using or changing it: the audit trail names whose session a revocation or a replayed
// refresh token concerned. ErrNotFound when it points nowhere.
func (s *Store) TokenSession(ctx context.Context, token string) (string, error) {
	prefix, input := "", ""
	switch {
	case validAccessToken(token):
		prefix, input = s.prefix+"at:", token
	case strings.HasPrefix(token, refreshPrefix):
		handle, _, _, ok := parseRefreshToken(token)
		if !ok {
			return "", ErrNotFound
		}
		prefix, input = s.prefix+"rt:", string(handle)
	default:
		return "", ErrNotFound
	}
	p, _, _, err := s.findPointer(ctx, prefix, input, "")
	return p.SID, err
}

// FeedKeyID returns the ID of a feed key that FeedKey resolved on this replica within
// HotCacheTTL, or "" (also when the hot cache is off). It does no I/O, so the usage of
// a key is counted under its ID on the hot path.
func (s *Store) FeedKeyID(key string) string {
	c := s.hot
	if c == nil {
		return ""
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if el, ok := c.m[hotKey{hotFeed, key}]; ok {
		return el.Value.(*hotEntry).keyID
	}
	return ""
}

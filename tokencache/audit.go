package tokencache

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A refresh is one caller paging through one entity set: from a first page (a request
// without $skip or $skiptoken; repeats of it before the second page count once) through
// the following pages (requests with either) until
// a page without a next link (complete), an error answer (error, with its status), or a
// pause longer than the gap (abandoned). Refreshes are followed on the replica that
// serves their pages; finished ones are kept per source, the last RefreshHistoryLen.

// Outcomes of a refresh.
const (
	RefreshComplete  = "complete"  // a page came without a next link
	RefreshAbandoned = "abandoned" // the caller paused longer than the gap after a page with a next link
	RefreshError     = "error"     // a page was answered with an error status
	RefreshEnded     = "ended"     // the caller paused; the pages were compressed, so whether the last one had a next link is unknown
)

// Page is one relayed page of an entity set.
type Page struct {
	Source, Subject, EntitySet string
	Following                  bool          // the request carried $skip or $skiptoken
	More                       int           // 1: the page had a next link; 0: it had none; -1: unknown
	Status                     int           // the answer's status
	Bytes                      int64         // response body bytes
	Duration                   time.Duration // time to serve the page
}

// RefreshRun is one finished refresh.
type RefreshRun struct {
	Source    string        `json:"source"`
	Subject   string        `json:"subject"`
	EntitySet string        `json:"entity_set"`
	Start     time.Time     `json:"start"`
	End       time.Time     `json:"end"`
	Pages     int           `json:"pages"`
	Bytes     int64         `json:"bytes"`
	Duration  time.Duration `json:"duration_ns"`
	Outcome   string        `json:"outcome"`
	Status    int           `json:"status,omitempty"` // the error answer's status
}

type runKey struct{ source, subject, set string }

type run struct {
	RefreshRun
	last      time.Time
	unknown   bool // the last page's next link could not be seen
	following bool // a following page was asked for
}

// Page follows the refresh p belongs to. It never does I/O; finished refreshes are
// written by the next flush.
func (l *Ledger) Page(p Page) {
	now := l.now()
	k := runKey{p.Source, p.Subject, p.EntitySet}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.runs[k]
	repeat := r != nil && !p.Following && !r.following && now.Sub(r.last) <= l.gap
	if r != nil && !repeat && (now.Sub(r.last) > l.gap || !p.Following) {
		// A pause, or the first page again after others: the earlier run stopped short.
		l.endRun(k, r, r.last)
		r = nil
	}
	if r == nil {
		if len(l.runs) >= maxRuns {
			return
		}
		start := now.Add(-p.Duration)
		r = &run{RefreshRun: RefreshRun{Source: p.Source, Subject: p.Subject, EntitySet: p.EntitySet, Start: start}}
		l.runs[k] = r
	}
	if !repeat {
		// Power Query asks for a first page more than once before it pages on.
		r.Pages++
	}
	r.following = r.following || p.Following
	r.Bytes += p.Bytes
	r.last = now
	r.unknown = p.More < 0
	switch {
	case p.Status >= 400:
		r.Outcome, r.Status = RefreshError, p.Status
		l.finish(k, r, now)
	case p.More == 0:
		r.Outcome = RefreshComplete
		l.finish(k, r, now)
	}
}

// endRun ends a run that stopped without a last page; the caller holds mu.
func (l *Ledger) endRun(k runKey, r *run, at time.Time) {
	r.Outcome = RefreshAbandoned
	if r.unknown {
		r.Outcome = RefreshEnded
	}
	l.finish(k, r, at)
}

// finish queues a finished run; the caller holds mu.
func (l *Ledger) finish(k runKey, r *run, at time.Time) {
	delete(l.runs, k)
	r.End = at
	r.Duration = at.Sub(r.Start)
	l.finished = append(l.finished, r.RefreshRun)
}

// sweepRuns ends the runs that paused longer than the gap; the caller holds mu.
func (l *Ledger) sweepRuns(now time.Time) {
	for k, r := range l.runs {
		if now.Sub(r.last) > l.gap {
			l.endRun(k, r, r.last)
		}
	}
}

func (l *Ledger) historyKey(source string) string { return l.prefix + "refreshes:" + source }

// Refreshes returns a source's finished refreshes, newest first.
func (l *Ledger) Refreshes(ctx context.Context, source string) ([]RefreshRun, error) {
	if l.mem != nil {
		l.mem.mu.Lock()
		defer l.mem.mu.Unlock()
		hist := l.mem.history[source]
		hist = hist[max(0, len(hist)-RefreshHistoryLen):]
		out := make([]RefreshRun, len(hist))
		for i, r := range hist {
			out[len(hist)-1-i] = r // newest first
		}
		return out, nil
	}
	raws, err := l.rdb.LRange(ctx, l.historyKey(source), 0, RefreshHistoryLen-1).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]RefreshRun, 0, len(raws))
	for _, raw := range raws {
		var r RefreshRun
		if json.Unmarshal([]byte(raw), &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

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
	raw, _ := json.Marshal(e)
	err := l.rdb.XAdd(ctx, &redis.XAddArgs{Stream: l.auditKey(), MaxLen: AuditLen, Approx: true, Values: []any{"e", raw}}).Err()
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
	msgs, err := l.rdb.XRevRangeN(ctx, l.auditKey(), "+", "-", int64(n)).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		raw, _ := m.Values["e"].(string)
		var e Event
		if json.Unmarshal([]byte(raw), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// First reports whether this is the first call with marker within ttl across every
// replica: a feed key's first use, a caller's first rate limit in an hour.
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
	ok, err := l.rdb.SetNX(ctx, l.prefix+"first:"+marker, "1", ttl).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, unavailable(err)
	}
	return ok, nil
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

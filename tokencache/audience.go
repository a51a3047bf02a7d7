package tokencache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/odata-bridge/bridge/internal/tracing"
	"golang.org/x/oauth2"
)

// Audience names the upstream a provider access token is issued for, when it
// is not the session's own: one source with its own scopes or Azure AD v1
// resource. RFC 9700 §2.3: each upstream receives only tokens issued for it,
// so none can replay a user's token at another.
type Audience struct {
	Name     string   // the source's name; keys the token within the session
	Scopes   []string // requested on the refresh grant; empty: the provider's default
	Resource string   // Azure AD v1 resource; empty: none
}

// AudienceRefresher redeems a provider refresh token for an access token of
// another audience: a refresh grant with scope or resource (Entra ID issues
// a token for any resource the user consented to from one refresh token).
// Provider answers come back as *oauth2.RetrieveError.
type AudienceRefresher interface {
	RefreshFor(ctx context.Context, refreshToken string, scopes []string, resource string) (*oauth2.Token, error)
}

// ErrAudienceRefused means the identity provider refused to issue a token for
// an audience (a 4xx answer such as invalid_scope, consent_required or
// invalid_grant for that resource). The session is kept: its other tokens
// still work.
var ErrAudienceRefused = errors.New("the identity provider refused a token for this upstream")

// audienceRecord is what bridge:{sid}:aud holds: the session's provider
// access tokens for audiences other than its own, one per source.
type audienceRecord struct {
	Tokens []audienceToken
}

type audienceToken struct {
	Name        string // Audience.key
	AccessToken string
	Expiry      time.Time
}

func (r *audienceRecord) find(name string) (audienceToken, bool) {
	for _, t := range r.Tokens {
		if t.Name == name {
			return t, true
		}
	}
	return audienceToken{}, false
}

func (r *audienceRecord) put(t audienceToken) {
	r.Tokens = slices.DeleteFunc(r.Tokens, func(o audienceToken) bool { return o.Name == t.Name })
	r.Tokens = append(r.Tokens, t)
}

func (s *Store) audienceKey(sid string) string { return s.prefix + "{" + sid + "}:aud" }

// key names the audience within its session: the source's name and a hash
// of what the token is requested for, so a source whose scopes or resource
// change never receives a token of its former audience.
func (a Audience) key() string {
	h := sha256.New()
	for _, sc := range a.Scopes {
		h.Write([]byte(sc))
		h.Write([]byte{0})
	}
	h.Write([]byte{1})
	h.Write([]byte(a.Resource))
	return a.Name + "\x00" + hex.EncodeToString(h.Sum(nil)[:12])
}

// TokenFor returns a valid provider access token of the session for aud,
// obtaining it from the session's refresh token when none is held or it
// expires within RefreshMargin. It runs once per session at a time, under
// the same lock as the session's own refresh, so a rotating refresh token is
// never redeemed twice. Results are cached in process for HotCacheTTL.
func (s *Store) TokenFor(ctx context.Context, sessionID string, aud Audience) (Secret, error) {
	hk := hotKey{hotAudience, sessionID + "\x00" + aud.key()}
	if tok, ok := s.hot.get(hk, s.now()); ok {
		return Secret(tok), nil
	}
	if !validID(sessionID, sessionIDLen) {
		return "", ErrNotFound
	}
	return s.flight(ctx, "a\x00"+sessionID+"\x00"+aud.key(), func(ctx context.Context) (string, error) {
		return s.obtainFor(ctx, sessionID, aud, func(t audienceToken) bool { return s.freshUntil(t.AccessToken, t.Expiry) })
	})
}

// RenewFor is TokenFor after the upstream refused stale with 401: it obtains
// a new token, unless the held one already differs from stale and is fresh.
func (s *Store) RenewFor(ctx context.Context, sessionID string, aud Audience, stale Secret) (Secret, error) {
	s.hot.del(hotKey{hotAudience, sessionID + "\x00" + aud.key()})
	if !validID(sessionID, sessionIDLen) {
		return "", ErrNotFound
	}
	return s.flight(ctx, "A\x00"+sessionID+"\x00"+aud.key()+"\x00"+string(stale), func(ctx context.Context) (string, error) {
		return s.obtainFor(ctx, sessionID, aud, func(t audienceToken) bool {
			return t.AccessToken != string(stale) && s.freshUntil(t.AccessToken, t.Expiry)
		})
	})
}

// freshUntil reports whether a provider access token is good for RefreshMargin more.
func (s *Store) freshUntil(tok string, expiry time.Time) bool {
	return tok != "" && (expiry.IsZero() || s.now().Add(s.margin).Before(expiry))
}

func (s *Store) readAudiences(ctx context.Context, sid string) (audienceRecord, error) {
	var rec audienceRecord
	key := s.audienceKey(sid)
	raw, err := s.b.get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return rec, nil
	}
	if err != nil {
		return rec, err
	}
	if err := s.open(raw, key, "", &rec); err != nil && !errors.Is(err, ErrNotFound) {
		return rec, err
	}
	return rec, nil
}

func (s *Store) obtainFor(ctx context.Context, sid string, aud Audience, good func(audienceToken) bool) (string, error) {
	sess, raw, err := s.readSession(ctx, sid)
	if err != nil {
		return "", err
	}
	s.touch(ctx, sid, sess, raw)
	var tok string
	settled := func(ctx context.Context) (bool, error) {
		recs, err := s.readAudiences(ctx, sid)
		if err != nil {
			return false, err
		}
		if t, ok := recs.find(aud.key()); ok && good(t) {
			s.cacheAudience(sid, aud.key(), t)
			tok = t.AccessToken
			return true, nil
		}
		return false, nil
	}
	if ok, err := settled(ctx); ok || err != nil {
		return tok, err
	}
	_, err = s.underLock(ctx, sid, settled, func(ctx context.Context) error {
		tok, err = s.refreshAudience(ctx, sid, aud)
		return err
	})
	return tok, err
}

// refreshAudience redeems the session's refresh token for aud, holding the
// session's lock; a refresh token the provider rotates on the way replaces
// the session's.
func (s *Store) refreshAudience(ctx context.Context, sid string, aud Audience) (string, error) {
	sess, _, err := s.readSession(ctx, sid)
	if err != nil {
		return "", err
	}
	ar, ok := s.refresher.(AudienceRefresher)
	if !ok {
		return "", fmt.Errorf("%w: the refresher cannot obtain tokens for other audiences", ErrProviderUnavailable)
	}
	if sess.RefreshToken == "" {
		return "", fmt.Errorf("%w: %s: the session has no refresh token", ErrAudienceRefused, aud.Name)
	}
	rctx, span := startRefresh(ctx, aud.Name)
	tok, err := ar.RefreshFor(rctx, sess.RefreshToken, aud.Scopes, aud.Resource)
	tracing.End(span, err)
	if err == nil && (tok == nil || tok.AccessToken == "") {
		err = errors.New("the token response has no access_token")
	}
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			s.log.Info("tokencache: the identity provider refused a token for an audience; the session is kept",
				"session", sid, "audience", aud.Name, "error_code", re.ErrorCode)
			return "", fmt.Errorf("%w: %s (%s)", ErrAudienceRefused, aud.Name, re.ErrorCode)
		}
		cause := err
		if re != nil {
			// RetrieveError's own text carries the response body: keep it out of errors.
			status := 0
			if re.Response != nil {
				status = re.Response.StatusCode
			}
			cause = fmt.Errorf("token endpoint answered %d %s", status, http.StatusText(status))
		}
		s.log.Warn("tokencache: obtaining a token for an audience failed", "session", sid, "audience", aud.Name, "err", cause)
		return "", fmt.Errorf("%w: %w", ErrProviderUnavailable, cause)
	}
	if tok.RefreshToken != "" && tok.RefreshToken != sess.RefreshToken {
		if _, err := s.updateSession(ctx, sid, func(r *sessionRecord) error {
			r.RefreshToken = tok.RefreshToken
			return nil
		}); err != nil {
			return "", err
		}
	}
	t := audienceToken{Name: aud.key(), AccessToken: tok.AccessToken, Expiry: tok.Expiry}
	recs, err := s.readAudiences(ctx, sid)
	if err != nil {
		return "", err
	}
	recs.put(t)
	key := s.audienceKey(sid)
	if _, err := s.b.set(ctx, key, s.seal(&recs, key, ""), s.refreshTTL, setAlways); err != nil {
		return "", err
	}
	// A session ended while the provider answered must not leave its token
	// behind: the record goes with it.
	if ok, err := s.b.exists(ctx, s.sessionKey(sid)); err == nil && !ok {
		_ = s.b.del(ctx, key)
		return "", fmt.Errorf("%w: the session ended", ErrNotFound)
	}
	s.cacheAudience(sid, t.Name, t)
	return t.AccessToken, nil
}

// cacheAudience keeps an audience token in the hot cache until HotCacheTTL or,
// sooner, until it enters the refresh margin.
func (s *Store) cacheAudience(sid, name string, t audienceToken) {
	exp := s.now().Add(s.hotTTL)
	if !t.Expiry.IsZero() {
		exp = minTime(exp, t.Expiry.Add(-s.margin))
	}
	s.hot.put(hotEntry{key: hotKey{hotAudience, sid + "\x00" + name}, val: t.AccessToken, sid: sid, exp: exp})
}

func (r *audienceRecord) marshal() []byte {
	w := wbuf{b: make([]byte, 0, 16+len(r.Tokens)*64)}
	w.b = append(w.b, tagAudience)
	w.uvarint(uint64(len(r.Tokens)))
	for _, t := range r.Tokens {
		w.str(t.Name)
		w.token(t.AccessToken)
		w.secs(t.Expiry)
	}
	return w.b
}

func (r *audienceRecord) unmarshal(b []byte) error {
	d := rbuf{b: b}
	d.tag(tagAudience)
	n := d.uvarint()
	if n > 1024 {
		return errDecode
	}
	r.Tokens = make([]audienceToken, 0, n)
	for range n {
		r.Tokens = append(r.Tokens, audienceToken{Name: d.str(), AccessToken: d.token(), Expiry: d.secs()})
	}
	return d.done()
}

// tagAudience marks an audienceRecord.
const tagAudience byte = 'a'

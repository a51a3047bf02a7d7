package tokencache

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"time"
)

// Bridge tokens. Each kind has a prefix, so a secret scanner can spot a leaked one and
// Revoke can tell them apart:
//
//	oba_ + base64url(32 bytes)                         access token
//	obr_ + base64url(handle 16 | generation 8 | tag 16) refresh token
//	obk_ + base64url(32 bytes)                         feed key
//
// A refresh-token family has a random handle and secret. The token of generation g
// carries tag = HMAC(secret, handle|g), and the access token issued with it is
// derived from (secret, g) too. So the family stores no token at all, an old
// generation is recognised as genuine however old it is (reuse detection), and a retry
// inside the grace window gets the very same response again.
const (
	accessPrefix    = "oba_"
	refreshPrefix   = "obr_"
	feedKeyPrefix   = "obk_"
	familySecretLen = 32
	maxFamilies     = 16 // per session; Issue beyond it revokes the oldest family
)

var (
	accessTokenLen  = len(accessPrefix) + base64.RawURLEncoding.EncodedLen(32)
	refreshTokenLen = len(refreshPrefix) + base64.RawURLEncoding.EncodedLen(40)
	feedKeyLen      = len(feedKeyPrefix) + base64.RawURLEncoding.EncodedLen(32)
)

func familyMAC(secret []byte, label string, handle []byte, gen uint64) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(handle)
	m.Write(binary.BigEndian.AppendUint64(nil, gen))
	return m.Sum(nil)
}

func familyTokens(secret, handle []byte, gen uint64) (access, refresh string) {
	access = accessPrefix + base64.RawURLEncoding.EncodeToString(familyMAC(secret, "access", handle, gen))
	raw := make([]byte, 0, 40)
	raw = append(raw, handle...)
	raw = binary.BigEndian.AppendUint64(raw, gen)
	raw = append(raw, familyMAC(secret, "refresh", handle, gen)[:16]...)
	return access, refreshPrefix + base64.RawURLEncoding.EncodeToString(raw)
}

func parseRefreshToken(tok string) (handle []byte, gen uint64, tag []byte, ok bool) {
	if len(tok) != refreshTokenLen || !strings.HasPrefix(tok, refreshPrefix) {
		return nil, 0, nil, false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(tok[len(refreshPrefix):])
	if err != nil || len(raw) != 40 {
		return nil, 0, nil, false
	}
	return raw[:16], binary.BigEndian.Uint64(raw[16:24]), raw[24:], true
}

func validAccessToken(tok string) bool {
	return len(tok) == accessTokenLen && strings.HasPrefix(tok, accessPrefix)
}

// findPointer reads the pointer under the first lookup name that exists; i tells which
// key found it (0: the newest).
func (s *Store) findPointer(ctx context.Context, prefix, input, subject string) (p pointer, name string, i int, err error) {
	for i, name := range s.ring.names(prefix, input) {
		raw, err := s.b.get(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return p, "", 0, err
		}
		if err := s.open(raw, name, subject, &p); err != nil {
			return p, "", 0, err
		}
		return p, name, i, nil
	}
	return p, "", 0, ErrNotFound
}

// movePointer rewrites a pointer found under an older key's lookup name under the newest
// one, so the old key can be dropped later. Pointers never change, so a race between
// two movers writes the same thing twice.
func (s *Store) movePointer(ctx context.Context, p pointer, prefix, input, oldName string) {
	name := s.ring.name(0, prefix, input)
	if _, err := s.b.set(ctx, name, s.seal(&p, name, ""), s.refreshTTL, setNX); err != nil {
		s.log.Warn("tokencache: moving a lookup key to the newest key failed", "err", err)
		return
	}
	if err := s.track(ctx, p.SID, time.Time{}, name); err != nil {
		s.log.Warn("tokencache: recording a moved lookup key failed", "err", err)
	}
	_ = s.b.del(ctx, oldName)
}

// putAccess stores the lookup key of a bridge access token.
func (s *Store) putAccess(ctx context.Context, sid, access string) error {
	name := s.ring.name(0, s.prefix+"at:", access)
	p := pointer{SID: sid, Expires: s.now().Add(s.accessTTL)}
	if _, err := s.b.set(ctx, name, s.seal(&p, name, ""), s.accessTTL, setAlways); err != nil {
		return err
	}
	return s.track(ctx, sid, p.Expires, name)
}

// Issue starts a new refresh-token family for a session and returns its first access
// and refresh tokens, as the answer to an authorization_code grant.
func (s *Store) Issue(ctx context.Context, sessionID string) (Tokens, error) {
	if _, _, err := s.readSession(ctx, sessionID); err != nil {
		return Tokens{}, err
	}
	fid := random(12)
	fam := familyRecord{Secret: make([]byte, familySecretLen), Gen: 1, RotatedAt: s.now()}
	handle := make([]byte, 16)
	if _, err := rand.Read(fam.Secret); err != nil {
		return Tokens{}, err
	}
	if _, err := rand.Read(handle); err != nil {
		return Tokens{}, err
	}
	famKey := s.familyKey(sessionID, fid)
	if _, err := s.b.set(ctx, famKey, s.seal(&fam, famKey, ""), s.refreshTTL, setNX); err != nil {
		return Tokens{}, err
	}
	rtName := s.ring.name(0, s.prefix+"rt:", string(handle))
	p := pointer{SID: sessionID, ID: fid}
	if _, err := s.b.set(ctx, rtName, s.seal(&p, rtName, ""), s.refreshTTL, setAlways); err != nil {
		return Tokens{}, err
	}
	if err := s.track(ctx, sessionID, time.Time{}, rtName); err != nil {
		return Tokens{}, err
	}
	access, refresh := familyTokens(fam.Secret, handle, 1)
	if err := s.putAccess(ctx, sessionID, access); err != nil {
		return Tokens{}, err
	}
	var dropped []string
	_, err := s.updateSession(ctx, sessionID, func(r *sessionRecord) error {
		r.Families = append(r.Families, fid)
		dropped = nil
		if n := len(r.Families) - maxFamilies; n > 0 {
			dropped = append(dropped, r.Families[:n]...)
			r.Families = append([]string(nil), r.Families[n:]...)
		}
		return nil
	})
	if err != nil {
		return Tokens{}, err
	}
	for _, old := range dropped {
		_ = s.b.del(ctx, s.familyKey(sessionID, old))
	}
	return Tokens{AccessToken: Secret(access), RefreshToken: Secret(refresh), ExpiresIn: s.accessTTL, SessionID: sessionID}, nil
}

// Authenticate returns the session of a bridge access token. Hits are cached in process
// for HotCacheTTL.
func (s *Store) Authenticate(ctx context.Context, accessToken string) (string, error) {
	if !validAccessToken(accessToken) {
		return "", ErrNotFound
	}
	now := s.now()
	hk := hotKey{hotAccess, accessToken}
	if sid, ok := s.hot.get(hk, now); ok {
		return sid, nil
	}
	p, _, _, err := s.findPointer(ctx, s.prefix+"at:", accessToken, "")
	if err != nil {
		return "", err
	}
	if !now.Before(p.Expires) || !validID(p.SID, sessionIDLen) {
		return "", ErrNotFound
	}
	ok, err := s.b.exists(ctx, s.sessionKey(p.SID))
	if err != nil {
		return "", err
	}
	if !ok {
		return "", ErrNotFound
	}
	s.hot.put(hotEntry{key: hk, val: p.SID, sid: p.SID, exp: minTime(now.Add(s.hotTTL), p.Expires)})
	return p.SID, nil
}

// Rotate answers a refresh_token grant: it redeems a bridge refresh token for a new
// access token and a new refresh token of the same family. A retry with the same token
// inside ReuseGrace gets the same response again; a used token presented later is a
// replay (RFC 6819 §5.2.2.3, OAuth 2.0 Security BCP §4.14.2): the family and its
// session are revoked and ErrReused returned.
func (s *Store) Rotate(ctx context.Context, refreshToken string) (Tokens, error) {
	handle, gen, tag, ok := parseRefreshToken(refreshToken)
	if !ok {
		return Tokens{}, ErrNotFound
	}
	rtPrefix := s.prefix + "rt:"
	p, pName, found, err := s.findPointer(ctx, rtPrefix, string(handle), "")
	if err != nil {
		return Tokens{}, err
	}
	if !validID(p.SID, sessionIDLen) || !validID(p.ID, shortIDLen) {
		return Tokens{}, ErrNotFound
	}
	sid := p.SID
	famKey, sessKey := s.familyKey(sid, p.ID), s.sessionKey(sid)
	for range 16 {
		vals, err := s.b.mget(ctx, famKey, sessKey)
		if err != nil {
			return Tokens{}, err
		}
		if vals[0] == nil || vals[1] == nil {
			return Tokens{}, ErrNotFound
		}
		var fam familyRecord
		if err := s.open(vals[0], famKey, "", &fam); err != nil {
			return Tokens{}, err
		}
		if !hmac.Equal(tag, familyMAC(fam.Secret, "refresh", handle, gen)[:16]) {
			return Tokens{}, ErrNotFound
		}
		now := s.now()
		switch {
		case gen == fam.Gen:
			next := fam
			next.Gen++
			next.RotatedAt = now
			access, refresh := familyTokens(fam.Secret, handle, next.Gen)
			if err := s.putAccess(ctx, sid, access); err != nil {
				return Tokens{}, err
			}
			ok, err := s.b.cas(ctx, famKey, vals[0], s.seal(&next, famKey, ""), s.refreshTTL)
			if err != nil {
				return Tokens{}, err
			}
			if !ok {
				continue // a concurrent retry rotated first: look again
			}
			if found > 0 {
				s.movePointer(ctx, p, rtPrefix, string(handle), pName)
			} else if err := s.b.expire(ctx, pName, s.refreshTTL); err != nil {
				return Tokens{}, err
			}
			var rec sessionRecord
			if err := s.open(vals[1], sessKey, "", &rec); err == nil {
				s.touch(ctx, sid, rec, vals[1])
			}
			return Tokens{AccessToken: Secret(access), RefreshToken: Secret(refresh), ExpiresIn: s.accessTTL, SessionID: sid}, nil
		case gen+1 == fam.Gen && now.Sub(fam.RotatedAt) <= s.grace:
			// A retried request: the same response as the first time.
			access, refresh := familyTokens(fam.Secret, handle, fam.Gen)
			return Tokens{AccessToken: Secret(access), RefreshToken: Secret(refresh), ExpiresIn: s.accessTTL, SessionID: sid}, nil
		case gen < fam.Gen:
			s.log.Warn("tokencache: a used bridge refresh token was presented again; its session is revoked",
				"session", sid, "generation", gen, "current", fam.Gen)
			if err := s.EndSession(ctx, sid); err != nil {
				return Tokens{}, err
			}
			return Tokens{}, ErrReused
		default:
			return Tokens{}, ErrNotFound
		}
	}
	return Tokens{}, ErrUnavailable
}

// Revoke implements RFC 7009 for bridge tokens: an access or refresh token ends its
// session. Unknown or malformed tokens are not an error (RFC 7009 §2.2).
func (s *Store) Revoke(ctx context.Context, token string) error {
	var sid string
	switch {
	case validAccessToken(token):
		p, _, _, err := s.findPointer(ctx, s.prefix+"at:", token, "")
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		sid = p.SID
	case strings.HasPrefix(token, refreshPrefix):
		handle, gen, tag, ok := parseRefreshToken(token)
		if !ok {
			return nil
		}
		p, _, _, err := s.findPointer(ctx, s.prefix+"rt:", string(handle), "")
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		famKey := s.familyKey(p.SID, p.ID)
		raw, err := s.b.get(ctx, famKey)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var fam familyRecord
		if s.open(raw, famKey, "", &fam) != nil || !hmac.Equal(tag, familyMAC(fam.Secret, "refresh", handle, gen)[:16]) {
			return nil
		}
		sid = p.SID
	default:
		return nil
	}
	return s.EndSession(ctx, sid)
}

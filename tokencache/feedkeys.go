package tokencache

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"
)

// CreateFeedKey gives a session a new feed key: "obk_" + base64url(32 random bytes).
// The key is returned once and stored only as a lookup HMAC.
func (s *Store) CreateFeedKey(ctx context.Context, sessionID, name string) (KeyInfo, Secret, error) {
	rec, _, err := s.readSession(ctx, sessionID)
	if err != nil {
		return KeyInfo{}, "", err
	}
	kid, key := random(12), feedKeyPrefix+random(32)
	now := s.now()
	kr := keyRecord{Name: name, CreatedAt: now}
	recKey := s.feedKeyKey(sessionID, kid)
	if _, err := s.b.set(ctx, recKey, s.seal(&kr, recKey, rec.Subject), s.refreshTTL, setNX); err != nil {
		return KeyInfo{}, "", err
	}
	lookup := s.ring.name(0, s.prefix+"fk:", key)
	p := pointer{SID: sessionID, ID: kid, Subject: rec.Subject}
	if _, err := s.b.set(ctx, lookup, s.seal(&p, lookup, ""), s.refreshTTL, setNX); err != nil {
		return KeyInfo{}, "", err
	}
	if err := s.track(ctx, sessionID, time.Time{}, lookup); err != nil {
		return KeyInfo{}, "", err
	}
	if _, err := s.updateSession(ctx, sessionID, func(r *sessionRecord) error {
		r.Keys = append(r.Keys, kid)
		return nil
	}); err != nil {
		return KeyInfo{}, "", err
	}
	return KeyInfo{ID: kid, Name: name, CreatedAt: now}, Secret(key), nil
}

// FeedKey returns the session of a feed key and records its use. Hits are cached in
// process for HotCacheTTL, so LastUsedAt is as fresh as that.
func (s *Store) FeedKey(ctx context.Context, key string) (string, error) {
	if len(key) != feedKeyLen || !strings.HasPrefix(key, feedKeyPrefix) {
		return "", ErrNotFound
	}
	now := s.now()
	hk := hotKey{hotFeed, key}
	if sid, ok := s.hot.get(hk, now); ok {
		return sid, nil
	}
	fkPrefix := s.prefix + "fk:"
	p, pName, found, err := s.findPointer(ctx, fkPrefix, key, "")
	if err != nil {
		return "", err
	}
	if !validID(p.SID, sessionIDLen) || !validID(p.ID, shortIDLen) {
		return "", ErrNotFound
	}
	recKey, sessKey := s.feedKeyKey(p.SID, p.ID), s.sessionKey(p.SID)
	vals, err := s.b.mget(ctx, recKey, sessKey)
	if err != nil {
		return "", err
	}
	if vals[0] == nil || vals[1] == nil {
		_ = s.b.del(ctx, pName) // revoked key or ended session
		return "", ErrNotFound
	}
	var kr keyRecord
	var rec sessionRecord
	if err := s.open(vals[0], recKey, p.Subject, &kr); err != nil {
		return "", err
	}
	if err := s.open(vals[1], sessKey, "", &rec); err != nil {
		return "", err
	}
	kr.LastUsed = now
	// XX: a key revoked meanwhile stays revoked. The key and its session were just
	// read, so a store that refuses writes for a while (a Redis master that has lost
	// its replica, one being demoted in a failover) still serves the key; only its
	// LastUsedAt and sliding TTL wait for the next use.
	if _, err := s.b.set(ctx, recKey, s.seal(&kr, recKey, p.Subject), s.refreshTTL, setXX); err != nil {
		s.log.Warn("tokencache: recording a feed key's use failed", "session", p.SID, "err", err)
	} else if found > 0 {
		s.movePointer(ctx, p, fkPrefix, key, pName)
	} else if err := s.b.expire(ctx, pName, s.refreshTTL); err != nil {
		s.log.Warn("tokencache: extending a feed key's lookup failed", "session", p.SID, "err", err)
	}
	s.touch(ctx, p.SID, rec, vals[1])
	s.hot.put(hotEntry{key: hk, val: p.SID, sid: p.SID, keyID: p.ID, exp: now.Add(s.hotTTL)})
	return p.SID, nil
}

// FeedKeys lists a subject's feed keys, oldest first.
func (s *Store) FeedKeys(ctx context.Context, subject string) ([]KeyInfo, error) {
	sids, err := s.indexSIDs(ctx, subject)
	if err != nil {
		return nil, err
	}
	out := []KeyInfo{}
	var dead []string
	defer func() {
		if err := s.unindex(ctx, subject, dead); err != nil {
			s.log.Warn("tokencache: pruning a subject's index failed", "err", err)
		}
	}()
	for _, sid := range sids {
		rec, _, err := s.readSession(ctx, sid)
		if errors.Is(err, ErrNotFound) {
			dead = append(dead, sid)
			continue
		}
		if err != nil {
			return nil, err
		}
		if rec.Subject != subject || len(rec.Keys) == 0 {
			continue
		}
		keys := make([]string, len(rec.Keys))
		for i, kid := range rec.Keys {
			keys[i] = s.feedKeyKey(sid, kid)
		}
		vals, err := s.b.mget(ctx, keys...)
		if err != nil {
			return nil, err
		}
		for i, raw := range vals {
			var kr keyRecord
			if raw == nil || s.open(raw, keys[i], subject, &kr) != nil {
				continue
			}
			out = append(out, KeyInfo{ID: rec.Keys[i], Name: kr.Name, CreatedAt: kr.CreatedAt, LastUsedAt: kr.LastUsed})
		}
	}
	slices.SortFunc(out, func(a, b KeyInfo) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// RevokeFeedKey deletes one of a subject's feed keys; ErrNotFound if the subject has no
// key with that ID. Other replicas stop accepting it within HotCacheTTL.
func (s *Store) RevokeFeedKey(ctx context.Context, subject, id string) error {
	if !validID(id, shortIDLen) {
		return ErrNotFound
	}
	sids, err := s.indexSIDs(ctx, subject)
	if err != nil {
		return err
	}
	for _, sid := range sids {
		rec, _, err := s.readSession(ctx, sid)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if rec.Subject != subject || !slices.Contains(rec.Keys, id) {
			continue
		}
		if err := s.b.del(ctx, s.feedKeyKey(sid, id)); err != nil {
			return err
		}
		s.hot.purge(func(e *hotEntry) bool { return e.keyID == id })
		_, err = s.updateSession(ctx, sid, func(r *sessionRecord) error {
			r.Keys = slices.DeleteFunc(r.Keys, func(k string) bool { return k == id })
			return nil
		})
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return ErrNotFound
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

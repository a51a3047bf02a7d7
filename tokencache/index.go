package tokencache

import (
	"bytes"
	"context"
	"errors"
	"slices"
)

// The subject index lists a subject's sessions for EndSubject, FeedKeys and
// RevokeFeedKey. It is an ordered set (a Redis sorted set), bridge:idx:<hmac(subject)>,
// with one member per session: the session ID sealed like any value, bound to the
// index's key and the subject, but with a nonce derived from what it seals
// (keyring.sealFixed), so one session always gives the same member and is moved or
// removed by its ID without reading the set. A member moves to the end whenever its
// session is confirmed alive (created, used, or checked at a sign-in), so the head holds
// the sessions confirmed longest ago: the likeliest to have expired.
//
// So no call but a listing depends on how many sessions the subject has (a shared
// service account may hold thousands):
//   - a use of a session (touch, at most once per touch interval) pushes its member to
//     the end and extends the index's TTL, so the index outlives every used session;
//   - a sign-in adds its member and checks the pruneBatch members at the head: those
//     whose session is gone are removed, the others move to the end. Every member ahead
//     of a dead one is removed or moved behind it in turn, so a dead session leaves the
//     index within ceil(n/pruneBatch) sign-ins of its subject, n being the index's length;
//   - EndSession removes one member, EndSubject the members it listed.
//
// After a key rotation an index may also exist under an older key's name: readers
// merge all and removals reach all, while additions go under the newest key, so the
// older ones stop growing and expire within RefreshTTL.
//
// Versions before this one kept the index as one sealed list (indexRecord) under
// bridge:sub:<hmac(subject)>, which every use and sign-in read whole. Such a list is
// still read: the first listing of the subject, or EndSession, moves it into the set.
// Nothing extends it any more, and a use of any session it lists adds that session to
// the set, so a list never moved expires on its own with the sessions it lists.

// pruneBatch is how many index members a sign-in checks.
const pruneBatch = 8

// zBatch bounds the members of one script call, so no call holds Redis for long.
const zBatch = 512

func (s *Store) indexNames(subject string) []string {
	return s.ring.names(s.prefix+"idx:", subject)
}

// legacyIndexNames name the index lists of earlier versions.
func (s *Store) legacyIndexNames(subject string) []string {
	return s.ring.names(s.prefix+"sub:", subject)
}

// member is a session's member of the index set named name, under keys[i].
func (s *Store) member(i int, name, subject, sid string) []byte {
	e := indexEntry{SID: sid}
	return s.ring.sealFixed(i, e.marshal(), name, subject)
}

// entrySID opens a member of the index set named name; false if it does not open (a
// dropped key, tampering), which makes it garbage.
func (s *Store) entrySID(m []byte, name, subject string) (string, bool) {
	var e indexEntry
	if s.open(m, name, subject, &e) != nil || !validID(e.SID, sessionIDLen) {
		return "", false
	}
	return e.SID, true
}

// ensureIndexed lists a used session in its subject's index, or moves it to the end,
// and keeps the index alive as long as the session. It reads nothing.
func (s *Store) ensureIndexed(ctx context.Context, subject, sid string) error {
	name := s.indexNames(subject)[0]
	_, err := s.b.zpush(ctx, name, [][]byte{s.member(0, name, subject, sid)}, s.refreshTTL, 0)
	return err
}

// indexNew lists a new session in its subject's index and prunes the index's head.
func (s *Store) indexNew(ctx context.Context, subject, sid string) error {
	name := s.indexNames(subject)[0]
	self := s.member(0, name, subject, sid)
	head, err := s.b.zpush(ctx, name, [][]byte{self}, s.refreshTTL, pruneBatch)
	if err != nil {
		return err
	}
	// Sessions that expired on their own are still listed; a sign-in drops those among
	// the ones confirmed longest ago. A failure here costs nothing but a longer index.
	if err := s.pruneHead(ctx, name, subject, head, self); err != nil {
		s.log.Warn("tokencache: pruning a subject's index failed", "err", err)
	}
	return nil
}

// pruneHead removes from the index set named name the members of head whose sessions
// are gone and moves the others to the end, except self, which was just pushed there.
func (s *Store) pruneHead(ctx context.Context, name, subject string, head [][]byte, self []byte) error {
	var keep, drop, checked [][]byte
	var keys []string
	for _, m := range head {
		if bytes.Equal(m, self) {
			continue
		}
		sid, ok := s.entrySID(m, name, subject)
		if !ok {
			drop = append(drop, m)
			continue
		}
		checked = append(checked, m)
		keys = append(keys, s.sessionKey(sid))
	}
	if len(keys) > 0 {
		alive, err := s.b.existing(ctx, keys...)
		if err != nil {
			return err
		}
		for i, ok := range alive {
			if ok {
				keep = append(keep, checked[i])
			} else {
				drop = append(drop, checked[i])
			}
		}
	}
	return s.b.zsettle(ctx, name, keep, drop)
}

// indexSIDs returns the sessions a subject's index lists, under every configured key
// and in both forms; a list of the earlier form is moved into the set on the way.
func (s *Store) indexSIDs(ctx context.Context, subject string) ([]string, error) {
	sids, err := s.moveLegacyIndex(ctx, subject)
	if err != nil {
		return nil, err
	}
	for _, name := range s.indexNames(subject) {
		members, err := s.b.zall(ctx, name)
		if err != nil {
			return nil, err
		}
		var garbage [][]byte
		for _, m := range members {
			if sid, ok := s.entrySID(m, name, subject); ok {
				sids = append(sids, sid)
			} else {
				garbage = append(garbage, m)
			}
		}
		if len(garbage) > 0 {
			if err := s.b.zsettle(ctx, name, nil, garbage); err != nil {
				return nil, err
			}
		}
	}
	slices.Sort(sids)
	return slices.Compact(sids), nil
}

// moveLegacyIndex moves the subject's index lists of the earlier form, if any, into the
// set under the newest key and returns the sessions they listed. A list that changed
// meanwhile (an older replica wrote to it) stays for the next call to move.
func (s *Store) moveLegacyIndex(ctx context.Context, subject string) ([]string, error) {
	primary := s.indexNames(subject)[0]
	var sids []string
	for _, key := range s.legacyIndexNames(subject) {
		raw, err := s.b.get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var rec indexRecord
		// An unreadable list is dropped, as the earlier versions wrote afresh over it.
		if s.open(raw, key, subject, &rec) == nil {
			rec.SIDs = slices.DeleteFunc(rec.SIDs, func(sid string) bool { return !validID(sid, sessionIDLen) })
			members := make([][]byte, len(rec.SIDs))
			for i, sid := range rec.SIDs {
				members[i] = s.member(0, primary, subject, sid)
			}
			for chunk := range slices.Chunk(members, zBatch) {
				if _, err := s.b.zpush(ctx, primary, chunk, s.refreshTTL, 0); err != nil {
					return nil, err
				}
			}
			sids = append(sids, rec.SIDs...)
		}
		if _, err := s.b.delIf(ctx, key, raw); err != nil {
			return nil, err
		}
	}
	return sids, nil
}

// unindex removes sessions from their subject's index under every configured key. It
// does not look for lists of the earlier form; callers move those first.
func (s *Store) unindex(ctx context.Context, subject string, sids []string) error {
	if len(sids) == 0 {
		return nil
	}
	for i, name := range s.indexNames(subject) {
		members := make([][]byte, len(sids))
		for j, sid := range sids {
			members[j] = s.member(i, name, subject, sid)
		}
		for chunk := range slices.Chunk(members, zBatch) {
			if err := s.b.zsettle(ctx, name, nil, chunk); err != nil {
				return err
			}
		}
	}
	return nil
}

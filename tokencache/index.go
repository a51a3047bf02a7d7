package tokencache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
// Releases before the set kept the index as one sealed list (indexRecord) under
// bridge:sub:<hmac(subject)>, which every use and sign-in read whole, and they read
// nothing else. While the minimum store format is FormatListIndex (format.go), such a
// release may still be running, so the list is kept too, as those releases kept it:
// a sign-in or a use adds its session, an end removes it, and a listing merges it
// with the set. Both releases then see every session. From FormatSetIndex on the list
// is only read: the first listing of the subject, or EndSession, moves it into the set.
// Nothing extends it any more, and a use of any session it lists adds that session to
// the set, so a list never moved expires on its own with the sessions it lists.
//
// A member is sealed as the value version the replica writes (valueV1 or valueV3), so
// a session may be listed once in each after the format is raised; listings merge them
// and removals remove both.

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

// member is a session's member of the index set named name, under keys[i], in the
// value version this replica writes now.
func (s *Store) member(i int, name, subject, sid string) []byte {
	return s.memberAs(s.ring.version(), i, name, subject, sid)
}

func (s *Store) memberAs(v byte, i int, name, subject, sid string) []byte {
	e := indexEntry{SID: sid}
	return s.ring.sealFixed(i, v, e.marshal(), name, subject)
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
// Where a release that reads only the list may run, it keeps the list too.
func (s *Store) ensureIndexed(ctx context.Context, subject, sid string) error {
	name := s.indexNames(subject)[0]
	if _, err := s.b.zpush(ctx, name, [][]byte{s.member(0, name, subject, sid)}, s.refreshTTL, 0); err != nil {
		return err
	}
	if s.minFormat(ctx) <= FormatListIndex {
		return s.listEnsure(ctx, subject, sid)
	}
	return nil
}

// indexNew lists a new session in its subject's index and prunes the index's head.
func (s *Store) indexNew(ctx context.Context, subject, sid string) error {
	if s.minFormat(ctx) <= FormatListIndex {
		if err := s.listAdd(ctx, subject, sid); err != nil {
			return err
		}
	}
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
// and in both forms; from FormatSetIndex on, a list of the earlier form is moved into
// the set on the way.
func (s *Store) indexSIDs(ctx context.Context, subject string) ([]string, error) {
	var sids []string
	var err error
	if s.minFormat(ctx) <= FormatListIndex {
		sids, err = s.listSIDs(ctx, subject)
	} else {
		sids, err = s.moveLegacyIndex(ctx, subject)
	}
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

// unindex removes sessions from their subject's index under every configured key, in
// every value version, and from the lists of the earlier form while those are kept
// (FormatListIndex). From FormatSetIndex on it does not look for lists; callers move
// those first.
func (s *Store) unindex(ctx context.Context, subject string, sids []string) error {
	if len(sids) == 0 {
		return nil
	}
	if s.minFormat(ctx) <= FormatListIndex {
		if err := s.listRemove(ctx, subject, sids); err != nil {
			return err
		}
	}
	for i, name := range s.indexNames(subject) {
		members := make([][]byte, 0, 2*len(sids))
		for _, sid := range sids {
			members = append(members, s.memberAs(valueV1, i, name, subject, sid), s.memberAs(valueV3, i, name, subject, sid))
		}
		for chunk := range slices.Chunk(members, zBatch) {
			if err := s.b.zsettle(ctx, name, nil, chunk); err != nil {
				return err
			}
		}
	}
	return nil
}

// The list form, kept while FormatListIndex is in force. The releases that read only
// the list update it by compare-and-set of the whole list under the newest key's name,
// merge lists under older keys' names into it, and start afresh over an unreadable one;
// these functions do the same, so both kinds of replica can update it concurrently.

// listSIDs returns the sessions listed in the subject's lists under every key.
func (s *Store) listSIDs(ctx context.Context, subject string) ([]string, error) {
	var sids []string
	for _, name := range s.legacyIndexNames(subject) {
		rec, _, err := s.readList(ctx, name, subject)
		if err != nil {
			return nil, err
		}
		sids = append(sids, rec.SIDs...)
	}
	return slices.DeleteFunc(sids, func(sid string) bool { return !validID(sid, sessionIDLen) }), nil
}

// readList reads one list; a missing one is empty (raw nil), an unreadable one is empty
// but returned with its bytes, so that an update replaces it.
func (s *Store) readList(ctx context.Context, name, subject string) (indexRecord, []byte, error) {
	var rec indexRecord
	raw, err := s.b.get(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return rec, nil, nil
	}
	if err != nil {
		return rec, nil, err
	}
	if s.open(raw, name, subject, &rec) != nil {
		rec = indexRecord{}
	}
	return rec, raw, nil
}

// listAdd lists a new session and, as the list's releases did at a sign-in, drops the
// listed sessions that are gone.
func (s *Store) listAdd(ctx context.Context, subject, sid string) error {
	return s.listUpdate(ctx, subject, func(ctx context.Context, sids []string) ([]string, error) {
		others := slices.DeleteFunc(slices.Clone(sids), func(x string) bool { return x == sid })
		if len(others) > 0 {
			keys := make([]string, len(others))
			for i, x := range others {
				keys[i] = s.sessionKey(x)
			}
			alive, err := s.b.existing(ctx, keys...)
			if err != nil {
				return nil, err
			}
			live := others[:0]
			for i, x := range others {
				if alive[i] {
					live = append(live, x)
				}
			}
			others = live
		}
		return append(others, sid), nil
	})
}

// listEnsure keeps a used session listed and the list alive as long as the session.
func (s *Store) listEnsure(ctx context.Context, subject, sid string) error {
	primary := s.legacyIndexNames(subject)[0]
	rec, raw, err := s.readList(ctx, primary, subject)
	if err != nil {
		return err
	}
	if raw != nil && slices.Contains(rec.SIDs, sid) {
		return s.b.expire(ctx, primary, s.refreshTTL)
	}
	return s.listUpdate(ctx, subject, func(_ context.Context, sids []string) ([]string, error) {
		return append(sids, sid), nil
	})
}

// listRemove removes sessions from the subject's list.
func (s *Store) listRemove(ctx context.Context, subject string, gone []string) error {
	return s.listUpdate(ctx, subject, func(_ context.Context, sids []string) ([]string, error) {
		return slices.DeleteFunc(sids, func(x string) bool { return slices.Contains(gone, x) }), nil
	})
}

// listUpdate applies fn to the sessions of the subject's lists and writes the result,
// under the newest key's name, by compare-and-set; the lists under older keys' names
// are merged into it and deleted. An empty list is deleted.
func (s *Store) listUpdate(ctx context.Context, subject string, fn func(context.Context, []string) ([]string, error)) error {
	names := s.legacyIndexNames(subject)
	primary, older := names[0], names[1:]
	for range 16 {
		rec, raw, err := s.readList(ctx, primary, subject)
		if err != nil {
			return err
		}
		sids := rec.SIDs
		var merged []string
		for _, name := range older {
			old, oraw, err := s.readList(ctx, name, subject)
			if err != nil {
				return err
			}
			if oraw != nil {
				sids = append(sids, old.SIDs...)
				merged = append(merged, name)
			}
		}
		if sids, err = fn(ctx, sids); err != nil {
			return err
		}
		slices.Sort(sids)
		sids = slices.Compact(sids)
		var ok bool
		switch {
		case len(sids) == 0 && raw == nil:
			ok = true
		case len(sids) == 0:
			ok, err = s.b.delIf(ctx, primary, raw)
		case raw == nil:
			ok, err = s.b.set(ctx, primary, s.seal(&indexRecord{SIDs: sids}, primary, subject), s.refreshTTL, setNX)
		default:
			ok, err = s.b.cas(ctx, primary, raw, s.seal(&indexRecord{SIDs: sids}, primary, subject), s.refreshTTL)
		}
		if err != nil {
			return err
		}
		if ok {
			if len(merged) > 0 {
				return s.b.delAny(ctx, merged...)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: subject index list: too many concurrent writes", ErrUnavailable)
}

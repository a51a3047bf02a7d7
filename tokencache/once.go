package tokencache

import (
	"context"
	"errors"
	"time"
)

// onceName is the key of a one-time value; it and its "taken" marker share a hash tag.
func (s *Store) onceName(i int, kind, handle string) string {
	return s.ring.name(i, s.prefix+"once:{", kind+"\x00"+handle) + "}"
}

// PutOnce stores a one-time value (an OAuth state, a bridge authorization code) for ttl
// and returns its handle: 256 random bits, URL-safe.
func (s *Store) PutOnce(ctx context.Context, kind string, value []byte, ttl time.Duration) (Secret, error) {
	if kind == "" || ttl <= 0 {
		return "", errors.New("tokencache: PutOnce needs a kind and a positive ttl")
	}
	handle := random(32)
	name := s.onceName(0, kind, handle)
	rec := onceRecord{Expires: s.now().Add(ttl), Value: value}
	ok, err := s.b.set(ctx, name, s.seal(&rec, name, ""), ttl, setNX)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", errors.New("tokencache: PutOnce: handle collision")
	}
	return Secret(handle), nil
}

// TakeOnce atomically reads and deletes. A second take of the same handle (by any replica) within the
// original ttl returns the first value together with ErrUsed, so a caller can undo what the first use
// issued (RFC 6749 §4.1.2: a code redeemed twice). Unknown/expired: ErrNotFound.
func (s *Store) TakeOnce(ctx context.Context, kind, handle string) ([]byte, error) {
	if kind == "" || handle == "" || len(handle) > 256 {
		return nil, ErrNotFound
	}
	var first bool
	value, err := s.openLive(func(i int) string { return s.onceName(i, kind, handle) }, func(name string) ([]byte, error) {
		raw, f, err := s.b.take(ctx, name, name+":taken")
		first = f
		return raw, err
	})
	if err != nil {
		return nil, err
	}
	if !first {
		return value, ErrUsed
	}
	return value, nil
}

// openLive reads a timed record (a one-time value or a cached value) with
// read under each key of the ring in turn, so a record sealed under an older
// encryption key is still found, and returns the value of the first one read.
// A record past its expiry is ErrNotFound, even where the backend has not
// dropped it yet.
func (s *Store) openLive(nameOf func(i int) string, read func(name string) ([]byte, error)) ([]byte, error) {
	for i := range s.ring.keys {
		name := nameOf(i)
		raw, err := read(name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var rec onceRecord
		if err := s.open(raw, name, "", &rec); err != nil {
			return nil, err
		}
		if !s.now().Before(rec.Expires) {
			return nil, ErrNotFound
		}
		return rec.Value, nil
	}
	return nil, ErrNotFound
}

package tokencache

import (
	"context"
	"errors"
	"time"
)

// valueName is the key of a cached value: the HMAC of its kind and key, so
// the key (say, a hash of an incoming token's claims) is never stored.
func (s *Store) valueName(i int, kind, key string) string {
	return s.ring.name(i, s.prefix+"val:{", kind+"\x00"+key) + "}"
}

// PutValue stores an encrypted value under kind and key for ttl, replacing
// what was there. It is for derived credentials that expire on their own,
// such as on-behalf-of tokens.
func (s *Store) PutValue(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error {
	if kind == "" || key == "" || ttl <= 0 {
		return errors.New("tokencache: PutValue needs a kind, a key and a positive ttl")
	}
	name := s.valueName(0, kind, key)
	rec := onceRecord{Expires: s.now().Add(ttl), Value: value}
	_, err := s.b.set(ctx, name, s.seal(&rec, name, ""), ttl, setAlways)
	return err
}

// Value returns what PutValue stored, or ErrNotFound once it has expired.
// Values written under an older encryption key are still found.
func (s *Store) Value(ctx context.Context, kind, key string) ([]byte, error) {
	if kind == "" || key == "" {
		return nil, ErrNotFound
	}
	return s.openLive(func(i int) string { return s.valueName(i, kind, key) }, func(name string) ([]byte, error) {
		return s.b.get(ctx, name)
	})
}

// DeleteValue removes what PutValue stored under kind and key, under every
// encryption key; a missing value is not an error. It is how a value that
// stands for a sign-in (a page session) ends before its ttl.
func (s *Store) DeleteValue(ctx context.Context, kind, key string) error {
	if kind == "" || key == "" {
		return nil
	}
	names := make([]string, len(s.ring.keys))
	for i := range s.ring.keys {
		names[i] = s.valueName(i, kind, key)
	}
	return s.b.del(ctx, names...)
}

// Claim marks kind and key as used for ttl. The first claim of a key (on any
// replica) returns nil; every later one within ttl returns ErrUsed. It keeps
// a value single-use that lives elsewhere, such as a sign-in state sealed in
// a browser cookie.
func (s *Store) Claim(ctx context.Context, kind, key string, ttl time.Duration) error {
	if kind == "" || key == "" || ttl <= 0 {
		return errors.New("tokencache: Claim needs a kind, a key and a positive ttl")
	}
	name := s.valueName(0, "claim\x00"+kind, key)
	rec := onceRecord{Expires: s.now().Add(ttl)}
	ok, err := s.b.set(ctx, name, s.seal(&rec, name, ""), ttl, setNX)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	// A claim past its expiry on the store's clock counts as gone, even
	// where the backend's own TTL has not removed it yet.
	raw, err := s.b.get(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return ErrUsed // removed meanwhile: a concurrent claimer may have won
	}
	if err != nil {
		return err
	}
	var old onceRecord
	if s.open(raw, name, "", &old) == nil && s.now().Before(old.Expires) {
		return ErrUsed
	}
	if ok, err = s.b.cas(ctx, name, raw, s.seal(&rec, name, ""), ttl); err != nil {
		return err
	}
	if !ok {
		return ErrUsed
	}
	return nil
}

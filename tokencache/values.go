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

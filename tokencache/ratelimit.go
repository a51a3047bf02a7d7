package tokencache

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"
)

// The rate limit is a fixed one-minute window per caller, counted in the
// store so that every replica shares it. To keep the hot path free of a
// store round trip per request, a replica leases the window's units in
// chunks (a twentieth of the limit) and spends them locally: the shared
// count never exceeds the limit, and a replica can leave at most one chunk
// unused per window.

// rateWindow is the length of a rate-limit window.
const rateWindow = time.Minute

// rateLease is one caller's locally leased units in one window.
type rateLease struct {
	window int64
	left   int
	denied bool // the shared count reached the limit in this window
}

// rateLeases are a Store's leases, keyed by caller.
type rateLeases struct {
	mu sync.Mutex
	m  map[string]*rateLease
}

// maxLeases bounds the local lease table; stale windows are dropped first.
const maxLeases = 100_000

// Allow counts one request of the caller id (a session ID, or a feed key's
// ID) against perMinute requests a minute. It returns zero when the request
// may go ahead, or how long to wait. perMinute ≤ 0 turns the limit off.
func (s *Store) Allow(ctx context.Context, id string, perMinute int) (time.Duration, error) {
	if perMinute <= 0 {
		return 0, nil
	}
	now := s.now()
	window := now.UnixNano() / int64(rateWindow)
	wait := time.Unix(0, (window+1)*int64(rateWindow)).Sub(now)
	if wait < time.Second {
		wait = time.Second
	}

	l := s.lease(id, window)
	s.rl.mu.Lock()
	switch {
	case l.left > 0:
		l.left--
		s.rl.mu.Unlock()
		return 0, nil
	case l.denied:
		s.rl.mu.Unlock()
		return wait, nil
	}
	s.rl.mu.Unlock()

	chunk := max(1, perMinute/20)
	granted, err := s.reserve(ctx, id, window, chunk, perMinute)
	if err != nil {
		return 0, err
	}
	s.rl.mu.Lock()
	defer s.rl.mu.Unlock()
	if granted == 0 {
		l.denied = true
		return wait, nil
	}
	l.left += granted - 1
	return 0, nil
}

func (s *Store) lease(id string, window int64) *rateLease {
	s.rl.mu.Lock()
	defer s.rl.mu.Unlock()
	if s.rl.m == nil {
		s.rl.m = make(map[string]*rateLease)
	}
	l := s.rl.m[id]
	if l == nil || l.window != window {
		if len(s.rl.m) >= maxLeases {
			for k, v := range s.rl.m {
				if v.window != window {
					delete(s.rl.m, k)
				}
			}
		}
		l = &rateLease{window: window}
		s.rl.m[id] = l
	}
	return l
}

// reserve takes up to chunk units of the shared count of id's window and
// returns how many it got; zero once the limit is reached.
func (s *Store) reserve(ctx context.Context, id string, window int64, chunk, limit int) (int, error) {
	name := s.ring.name(0, s.prefix+"rl:{", id) + "}:" + strconv.FormatInt(window, 10)
	ttl := 2 * rateWindow
	for range 16 {
		raw, err := s.b.get(ctx, name)
		n := 0
		switch {
		case errors.Is(err, ErrNotFound):
			raw = nil
		case err != nil:
			return 0, err
		default:
			if n, err = strconv.Atoi(string(raw)); err != nil {
				return 0, errors.New("tokencache: malformed rate-limit counter")
			}
		}
		if n >= limit {
			return 0, nil
		}
		g := min(chunk, limit-n)
		next := []byte(strconv.Itoa(n + g))
		var ok bool
		if raw == nil {
			ok, err = s.b.set(ctx, name, next, ttl, setNX)
		} else {
			ok, err = s.b.cas(ctx, name, raw, next, ttl)
		}
		if err != nil {
			return 0, err
		}
		if ok {
			return g, nil
		}
		// Another replica moved the count first; read it again.
	}
	return 0, nil
}

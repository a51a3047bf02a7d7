package tokencache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/odata-bridge/bridge/internal/tracing"
	"golang.org/x/oauth2"
)

// flightTimeout bounds one refresh, lock wait included, whatever the callers' contexts:
// the flight serves every caller that joined it, so no single caller's cancellation
// may stop it.
const flightTimeout = time.Minute

// Token returns a valid provider access token for the session, refreshing it when it
// expires within RefreshMargin. A refresh runs once per session at a time: callers in
// this process share one flight, and replicas take turns through a Redis lock
// (bridge:{sid}:lock, SET NX PX with a random token, renewed while the provider is slow,
// released by compare-and-delete), re-reading the session once they hold it so that a
// refresh made by another replica is not made again.
//
// invalid_grant from the provider ends the session (ErrSessionEnded); any other failure
// keeps it (ErrProviderUnavailable), and a token that has not yet expired is still
// returned. Results are cached in process for HotCacheTTL.
func (s *Store) Token(ctx context.Context, sessionID string) (Secret, error) {
	hk := hotKey{hotToken, sessionID}
	if tok, ok := s.hot.get(hk, s.now()); ok {
		return Secret(tok), nil
	}
	if !validID(sessionID, sessionIDLen) {
		return "", ErrNotFound
	}
	return s.flight(ctx, "t\x00"+sessionID, func(ctx context.Context) (string, error) {
		return s.obtain(ctx, sessionID, true, func(r *sessionRecord) bool { return s.fresh(r) })
	})
}

// Renew is called after the upstream refused a token with 401: it refreshes, unless the
// session's token already differs from stale (another request renewed it first) and is
// fresh.
func (s *Store) Renew(ctx context.Context, sessionID string, stale Secret) (Secret, error) {
	s.hot.del(hotKey{hotToken, sessionID})
	if !validID(sessionID, sessionIDLen) {
		return "", ErrNotFound
	}
	return s.flight(ctx, "r\x00"+sessionID+"\x00"+string(stale), func(ctx context.Context) (string, error) {
		return s.obtain(ctx, sessionID, false, func(r *sessionRecord) bool {
			return r.AccessToken != string(stale) && s.fresh(r)
		})
	})
}

// fresh reports whether the provider access token is good for RefreshMargin more.
func (s *Store) fresh(r *sessionRecord) bool { return s.freshUntil(r.AccessToken, r.Expiry) }

func (s *Store) flight(ctx context.Context, key string, fn func(context.Context) (string, error)) (Secret, error) {
	ch := s.sf.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flightTimeout)
		defer cancel()
		defer context.AfterFunc(s.closing, cancel)()
		return fn(fctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return Secret(r.Val.(string)), nil
	case <-ctx.Done():
		return "", fmt.Errorf("%w: %w", ErrProviderUnavailable, ctx.Err())
	}
}

// obtain returns the session's access token if good says it is, and refreshes it
// otherwise. With keepValid, a token that has not expired yet outlives a failed refresh.
func (s *Store) obtain(ctx context.Context, sid string, keepValid bool, good func(*sessionRecord) bool) (string, error) {
	rec, raw, err := s.readSession(ctx, sid)
	if err != nil {
		return "", err
	}
	if good(&rec) {
		s.touch(ctx, sid, rec, raw)
		s.cacheToken(sid, &rec)
		return rec.AccessToken, nil
	}

	// Under the lock, re-read: another replica may have refreshed since our first read.
	var tok string
	_, err = s.underLock(ctx, sid, func(ctx context.Context) (bool, error) {
		if rec, _, err = s.readSession(ctx, sid); err != nil {
			return false, err
		}
		if good(&rec) {
			s.cacheToken(sid, &rec)
			tok = rec.AccessToken
			return true, nil
		}
		return false, nil
	}, func(ctx context.Context) error {
		tok, err = s.refreshSession(ctx, sid, rec, keepValid)
		return err
	})
	return tok, err
}

// underLock runs refresh holding the session's refresh lock, unless settled
// reports, before each try for the lock and once it is held, that another
// flight or replica already produced the result. The lock is renewed while
// refresh runs and released by compare-and-delete.
func (s *Store) underLock(ctx context.Context, sid string, settled func(context.Context) (bool, error), refresh func(context.Context) error) (bool, error) {
	lock := s.lockKey(sid)
	token := []byte(random(16))
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		ok, err := s.b.set(ctx, lock, token, s.lockTTL, setNX)
		if err != nil {
			return false, err
		}
		if ok {
			break
		}
		// Another replica is refreshing: wait for its result rather than refresh again.
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("%w: waiting for another replica's refresh: %w", ErrProviderUnavailable, ctx.Err())
		case <-time.After(wait):
		}
		if ok, err := settled(ctx); ok || err != nil {
			return ok, err
		}
	}
	stop := s.keepLock(lock, token)
	defer func() {
		stop()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.lockTTL)
		defer cancel()
		if _, err := s.b.delIf(uctx, lock, token); err != nil {
			s.log.Warn("tokencache: releasing a refresh lock failed; it expires on its own", "session", sid, "err", err)
		}
	}()
	if ok, err := settled(ctx); ok || err != nil {
		return ok, err
	}
	return false, refresh(ctx)
}

// refreshSession redeems the session's provider refresh token, holding the
// lock, and stores the result.
func (s *Store) refreshSession(ctx context.Context, sid string, rec sessionRecord, keepValid bool) (string, error) {
	used := rec.RefreshToken
	if used == "" {
		s.log.Info("tokencache: the session has no provider refresh token; it ends", "session", sid)
		if err := s.EndSession(ctx, sid); err != nil {
			return "", err
		}
		return "", fmt.Errorf("%w: no refresh token", ErrSessionEnded)
	}
	if s.refresher == nil {
		return "", fmt.Errorf("%w: no refresher configured", ErrProviderUnavailable)
	}
	started := s.now()
	rctx, span := startRefresh(ctx, "")
	tok, err := s.refresher.Refresh(rctx, used)
	tracing.End(span, err)
	if err == nil && (tok == nil || tok.AccessToken == "") {
		err = errors.New("the token response has no access_token")
	}
	if err != nil {
		return s.refreshFailed(ctx, sid, rec, used, keepValid, err)
	}
	s.log.Debug("tokencache: refreshed a provider token", "session", sid, "took", s.now().Sub(started))
	rec, err = s.updateSession(ctx, sid, func(r *sessionRecord) error {
		r.AccessToken = tok.AccessToken
		if tok.RefreshToken != "" { // a provider that returns none keeps the old one
			r.RefreshToken = tok.RefreshToken
		}
		r.Expiry = tok.Expiry
		r.LastUsed = s.now()
		return nil
	})
	if err != nil {
		return "", err
	}
	s.cacheToken(sid, &rec)
	return rec.AccessToken, nil
}

// refreshFailed classifies a failed refresh by the provider's answer, never by its text.
func (s *Store) refreshFailed(ctx context.Context, sid string, rec sessionRecord, used string, keepValid bool, err error) (string, error) {
	var re *oauth2.RetrieveError
	status := 0
	if errors.As(err, &re) && re.Response != nil {
		status = re.Response.StatusCode
	}
	if re != nil && re.ErrorCode == "invalid_grant" && (status == 0 || status >= 400 && status < 500) {
		// If the lock was lost and another replica refreshed meanwhile, our token was
		// merely used up: take the other one's result instead of ending the session.
		if cur, _, rerr := s.readSession(ctx, sid); rerr == nil && cur.RefreshToken != used && cur.AccessToken != "" {
			s.cacheToken(sid, &cur)
			return cur.AccessToken, nil
		}
		s.log.Info("tokencache: the identity provider refused the refresh token (invalid_grant); the session ends", "session", sid)
		if err := s.EndSession(ctx, sid); err != nil {
			return "", err
		}
		return "", fmt.Errorf("%w: invalid_grant", ErrSessionEnded)
	}
	var cause error
	if re != nil {
		// RetrieveError's own text carries the response body: keep it out of errors.
		cause = fmt.Errorf("token endpoint answered %d %s", status, http.StatusText(status))
	} else {
		cause = err
	}
	if keepValid && rec.AccessToken != "" && s.now().Before(rec.Expiry) {
		s.log.Warn("tokencache: refresh failed; the current token is still valid and kept", "session", sid, "err", cause)
		s.cacheToken(sid, &rec)
		return rec.AccessToken, nil
	}
	s.log.Warn("tokencache: refresh failed", "session", sid, "err", cause)
	return "", fmt.Errorf("%w: %w", ErrProviderUnavailable, cause)
}

// cacheToken keeps a provider token in the hot cache until HotCacheTTL or, sooner, until
// it enters the refresh margin.
func (s *Store) cacheToken(sid string, r *sessionRecord) {
	exp := s.now().Add(s.hotTTL)
	if !r.Expiry.IsZero() {
		exp = minTime(exp, r.Expiry.Add(-s.margin))
	}
	s.hot.put(hotEntry{key: hotKey{hotToken, sid}, val: r.AccessToken, sid: sid, exp: exp})
}

// keepLock renews the refresh lock every third of LockTTL until stop is called, so a
// slow identity provider never lets a second refresher in.
func (s *Store) keepLock(key string, token []byte) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.lockTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.lockTTL/3)
			ok, err := s.b.renew(ctx, key, token, s.lockTTL)
			cancel()
			switch {
			case err != nil:
				s.log.Warn("tokencache: renewing a refresh lock failed", "err", err)
			case !ok:
				s.log.Warn("tokencache: a refresh lock was lost while refreshing")
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

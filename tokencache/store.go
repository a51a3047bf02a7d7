package tokencache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
)

// Refresher redeems a provider refresh token; provider answers come back as
// *oauth2.RetrieveError (an oauth2.TokenSource built from oauth2.Config does).
type Refresher interface {
	Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error)
}

// RefresherFunc adapts a function to Refresher.
type RefresherFunc func(ctx context.Context, refreshToken string) (*oauth2.Token, error)

// Refresh calls f.
func (f RefresherFunc) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return f(ctx, refreshToken)
}

// ConfigRefresher refreshes at the token endpoint of an oauth2.Config, whose errors are
// *oauth2.RetrieveError as Refresher wants.
type ConfigRefresher struct{ Config *oauth2.Config }

// Refresh redeems refreshToken at r.Config's token endpoint.
func (r ConfigRefresher) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	return r.Config.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// Options configure a Store. Every field documents its zero value.
type Options struct {
	Redis         redis.UniversalClient // nil: in-memory store (one process, lost on restart)
	Keys          []Key                 // first encrypts, all decrypt; required with Redis; empty with memory: a random key
	Refresher     Refresher             // nil: a session whose provider token expires cannot be refreshed (ErrProviderUnavailable)
	AccessTTL     time.Duration         // bridge access-token lifetime; zero: 1h
	RefreshTTL    time.Duration         // sliding session/refresh lifetime; zero: 2160h
	HotCacheTTL   time.Duration         // zero: 5s; negative: no hot cache
	HotCacheSize  int                   // zero: 10000; negative: no hot cache
	RefreshMargin time.Duration         // zero: 2m
	ReuseGrace    time.Duration         // zero: 30s; negative: none
	LockTTL       time.Duration         // zero: 5s (renewed every third of it while refreshing)
	Now           func() time.Time      // zero: time.Now
	Logger        *slog.Logger          // zero: discard
	Prefix        string                // of every Redis key; zero: "bridge:"; must not hold '{' or '}'
}

// Store keeps sessions, feed keys, one-time values and bridge refresh-token families,
// encrypted, in memory or in Redis. It is safe for concurrent use, and several Stores
// (replicas) may share one Redis.
type Store struct {
	b             backend
	ring          *keyring
	hot           *hotCache
	sf            singleflight.Group
	refresher     Refresher
	log           *slog.Logger
	now           func() time.Time
	prefix        string
	accessTTL     time.Duration
	refreshTTL    time.Duration
	hotTTL        time.Duration
	margin        time.Duration
	grace         time.Duration
	lockTTL       time.Duration
	touchInterval time.Duration
	rl            rateLeases

	shared   bool         // Redis: other replicas, maybe of other releases, share the keys
	format   atomic.Int32 // the minimum store format last read (format.go)
	formatAt atomic.Int64 // when, in Unix nanoseconds; zero: never
	formatMu sync.Mutex   // one reader of the format at a time

	closing   context.Context // cancelled by Close: in-flight refreshes stop
	close     context.CancelFunc
	closeOnce sync.Once
}

// New builds a Store from opts.
func New(opts Options) (*Store, error) {
	s := &Store{
		refresher:  opts.Refresher,
		log:        opts.Logger,
		now:        opts.Now,
		prefix:     opts.Prefix,
		accessTTL:  orDefault(opts.AccessTTL, time.Hour),
		refreshTTL: orDefault(opts.RefreshTTL, 2160*time.Hour),
		hotTTL:     orDefault(opts.HotCacheTTL, 5*time.Second),
		margin:     orDefault(opts.RefreshMargin, 2*time.Minute),
		grace:      orDefault(opts.ReuseGrace, 30*time.Second),
		lockTTL:    orDefault(opts.LockTTL, 5*time.Second),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.prefix == "" {
		s.prefix = "bridge:"
	}
	if strings.ContainsAny(s.prefix, "{}") {
		return nil, errors.New("tokencache: Prefix must not contain '{' or '}'")
	}
	if s.accessTTL < 0 || s.refreshTTL < 0 || s.margin < 0 || s.lockTTL < 3*time.Millisecond {
		return nil, errors.New("tokencache: AccessTTL, RefreshTTL and RefreshMargin must not be negative, LockTTL not below 3ms")
	}
	// Sessions are touched (LastUsed, sliding TTL) at most this often, so the hot
	// path does not write on every call.
	s.touchInterval = min(time.Minute, s.refreshTTL/8)
	if s.grace < 0 {
		s.grace = 0
	}
	size := opts.HotCacheSize
	if size == 0 {
		size = 10000
	}
	if s.hotTTL > 0 {
		s.hot = newHotCache(size)
	}

	keys := opts.Keys
	if opts.Redis != nil {
		if len(keys) == 0 {
			return nil, errors.New("tokencache: encryption keys are required with Redis")
		}
		s.b = redisStore{c: opts.Redis}
		s.shared = true
	} else {
		if len(keys) == 0 {
			secret := make([]byte, 32)
			if _, err := rand.Read(secret); err != nil {
				return nil, err
			}
			keys = []Key{{ID: "mem", Secret: secret}}
		}
		s.b = newMemory(s.now)
	}
	ring, err := newKeyring(keys)
	if err != nil {
		return nil, fmt.Errorf("tokencache: %w", err)
	}
	s.ring = ring
	s.format.Store(FormatListIndex)
	if !s.shared {
		s.applyFormat(CurrentFormat)
	}
	s.closing, s.close = context.WithCancel(context.Background())
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Ping reports whether the store answers; ErrUnavailable when it does not.
func (s *Store) Ping(ctx context.Context) error { return s.b.ping(ctx) }

// Close stops the refreshes in flight. It does not close Options.Redis, which belongs to
// the caller.
func (s *Store) Close() error {
	s.closeOnce.Do(s.close)
	return nil
}

// Session is a user's sign-in: who they are and the identity provider's tokens.
type Session struct {
	ID                        string    // set by CreateSession
	Subject, Name, Email      string    // from the ID token
	AccessToken, RefreshToken Secret    // the identity provider's
	Expiry                    time.Time // of the provider access token; zero: unknown; stored to the second
	CreatedAt, LastUsed       time.Time // stored to the second
}

// Tokens are bridge tokens handed to a client (opaque, random, never the provider's).
type Tokens struct {
	AccessToken, RefreshToken Secret
	ExpiresIn                 time.Duration
	SessionID                 string
}

// KeyInfo describes a feed key without the key itself.
type KeyInfo struct {
	ID, Name              string
	CreatedAt, LastUsedAt time.Time
}

// Identifiers (session, family, feed-key IDs) are 16 random bytes, or 12 for the
// shorter ones, in base64url. They name Redis keys, so anything else is refused before
// it gets there. A session ID is an identifier, not a credential: it appears in Redis key
// names and may appear in logs.
const (
	sessionIDLen = 22 // base64url of 16 bytes
	shortIDLen   = 16 // base64url of 12 bytes
)

func validID(id string, n int) bool {
	if len(id) != n {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Keys of one session share the hash tag {sid}, so a Cluster keeps them in one slot.
func (s *Store) sessionKey(sid string) string { return s.prefix + "{" + sid + "}:session" }
func (s *Store) lockKey(sid string) string    { return s.prefix + "{" + sid + "}:lock" }
func (s *Store) familyKey(sid, fid string) string {
	return s.prefix + "{" + sid + "}:fam:" + fid
}
func (s *Store) feedKeyKey(sid, kid string) string {
	return s.prefix + "{" + sid + "}:key:" + kid
}
func (s *Store) lookupsKey(sid string) string { return s.prefix + "{" + sid + "}:lookups" }

// A session's lookup keys (bridge:at:, bridge:rt:, bridge:fk:) are named by HMACs of
// tokens the store does not keep, so nothing could find them again to delete them. So
// their names are recorded in an ordered set of the session, bridge:{sid}:lookups,
// each member "<expiry in Unix seconds> <name>" (0: as long as the session), which
// ending the session reads and deletes with them. Like the subject index, a write
// checks only the pruneBatch members at the set's head and drops the expired ones, so
// access tokens rotated away do not pile up. The names are HMACs: the set holds no
// token and needs no sealing. Releases before it do not write it; their lookup keys
// point to nowhere after an end, are refused on use and expire on their own.

// track records lookup keys of a session; until is when they expire, zero for as long
// as the session.
func (s *Store) track(ctx context.Context, sid string, until time.Time, names ...string) error {
	var exp int64
	if !until.IsZero() {
		exp = until.Unix() + 1
	}
	members := make([][]byte, len(names))
	for i, n := range names {
		members[i] = []byte(strconv.FormatInt(exp, 10) + " " + n)
	}
	key := s.lookupsKey(sid)
	head, err := s.b.zpush(ctx, key, members, s.refreshTTL, pruneBatch)
	if err != nil {
		return err
	}
	now := s.now().Unix()
	var keep, drop [][]byte
	for _, m := range head {
		if _, exp, ok := parseTracked(m); !ok || exp != 0 && exp <= now {
			drop = append(drop, m)
		} else {
			keep = append(keep, m)
		}
	}
	return s.b.zsettle(ctx, key, keep, drop)
}

// parseTracked splits a member of a session's lookups set.
func parseTracked(m []byte) (name string, exp int64, ok bool) {
	e, name, ok := strings.Cut(string(m), " ")
	if !ok || name == "" {
		return "", 0, false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	return name, exp, err == nil
}

// open decrypts and decodes a stored record; anything that fails reads as ErrNotFound,
// and is logged, because it means tampering or a key that was dropped from the config.
func (s *Store) open(raw []byte, key, subject string, into interface{ unmarshal([]byte) error }) error {
	plain, err := s.ring.open(raw, key, subject)
	if err == nil {
		err = into.unmarshal(plain)
	}
	if err != nil {
		s.log.Warn("tokencache: a stored value does not decrypt or decode; treated as missing", "key", key)
		return ErrNotFound
	}
	return nil
}

func (s *Store) seal(rec interface{ marshal() []byte }, key, subject string) []byte {
	return s.ring.seal(rec.marshal(), key, subject)
}

// readSession returns the live session record and its stored bytes (for cas).
func (s *Store) readSession(ctx context.Context, sid string) (sessionRecord, []byte, error) {
	var rec sessionRecord
	if !validID(sid, sessionIDLen) {
		return rec, nil, ErrNotFound
	}
	key := s.sessionKey(sid)
	raw, err := s.b.get(ctx, key)
	if err != nil {
		return rec, nil, err
	}
	if err := s.open(raw, key, "", &rec); err != nil {
		return rec, nil, err
	}
	if s.now().Sub(rec.LastUsed) >= s.refreshTTL {
		return rec, nil, ErrNotFound
	}
	return rec, raw, nil
}

// updateSession applies fn to the current record and writes it back only if nobody wrote
// in between (compare-and-set), retrying on a conflict. A session ended meanwhile stays
// ended: the write needs the old value to be there.
func (s *Store) updateSession(ctx context.Context, sid string, fn func(*sessionRecord) error) (sessionRecord, error) {
	key := s.sessionKey(sid)
	for range 16 {
		rec, raw, err := s.readSession(ctx, sid)
		if err != nil {
			return rec, err
		}
		if err := fn(&rec); err != nil {
			return rec, err
		}
		ok, err := s.b.cas(ctx, key, raw, s.seal(&rec, key, ""), s.refreshTTL)
		if err != nil {
			return rec, err
		}
		if ok {
			return rec, nil
		}
	}
	return sessionRecord{}, fmt.Errorf("%w: session %s: too many concurrent writes", ErrUnavailable, sid)
}

// CreateSession stores a new session and returns its fresh, random ID; sess.ID is
// ignored. The session lives RefreshTTL after its last use.
func (s *Store) CreateSession(ctx context.Context, sess Session) (string, error) {
	if sess.Subject == "" {
		return "", errors.New("tokencache: a session needs a subject")
	}
	now := s.now()
	rec := sessionRecord{
		Subject: sess.Subject, Name: sess.Name, Email: sess.Email,
		AccessToken: string(sess.AccessToken), RefreshToken: string(sess.RefreshToken),
		Expiry: sess.Expiry, CreatedAt: now, LastUsed: now,
	}
	sid := random(16)
	key := s.sessionKey(sid)
	if _, err := s.b.set(ctx, key, s.seal(&rec, key, ""), s.refreshTTL, setNX); err != nil {
		return "", err
	}
	if err := s.indexNew(ctx, sess.Subject, sid); err != nil {
		_ = s.b.del(context.WithoutCancel(ctx), key)
		return "", err
	}
	return sid, nil
}

// Session returns a session with its provider tokens.
func (s *Store) Session(ctx context.Context, sessionID string) (Session, error) {
	rec, _, err := s.readSession(ctx, sessionID)
	if err != nil {
		return Session{}, err
	}
	return Session{
		ID: sessionID, Subject: rec.Subject, Name: rec.Name, Email: rec.Email,
		AccessToken: Secret(rec.AccessToken), RefreshToken: Secret(rec.RefreshToken),
		Expiry: rec.Expiry, CreatedAt: rec.CreatedAt, LastUsed: rec.LastUsed,
	}, nil
}

// touch records a use of the session: LastUsed, the sliding TTL of the session and of
// its subject's index. It writes at most once per touchInterval and loses to any
// concurrent writer, whose record is newer anyway. Its cost does not depend on how many
// sessions the subject has: it never reads the index.
func (s *Store) touch(ctx context.Context, sid string, rec sessionRecord, raw []byte) {
	now := s.now()
	if now.Sub(rec.LastUsed) < s.touchInterval {
		return
	}
	rec.LastUsed = now
	key := s.sessionKey(sid)
	if _, err := s.b.cas(ctx, key, raw, s.seal(&rec, key, ""), s.refreshTTL); err != nil {
		s.log.Warn("tokencache: recording a session's use failed", "session", sid, "err", err)
		return
	}
	if err := s.b.expire(ctx, s.lookupsKey(sid), s.refreshTTL); err != nil {
		s.log.Warn("tokencache: extending a session's lookups failed", "session", sid, "err", err)
	}
	if err := s.ensureIndexed(ctx, rec.Subject, sid); err != nil {
		s.log.Warn("tokencache: refreshing a subject's index failed", "session", sid, "err", err)
	}
}

// EndSession deletes a session with its refresh-token families and feed keys. Tokens
// that point to it stop working at once here and within HotCacheTTL on other replicas.
// An unknown session is not an error.
func (s *Store) EndSession(ctx context.Context, sessionID string) error {
	subject, err := s.endSession(ctx, sessionID)
	if err != nil || subject == "" {
		return err
	}
	if s.minFormat(ctx) > FormatListIndex {
		if _, err := s.moveLegacyIndex(ctx, subject); err != nil {
			return err
		}
	}
	return s.unindex(ctx, subject, []string{sessionID})
}

// endSession deletes a session with its families and feed keys but leaves the index to
// the caller. It returns the session's subject, or "" if there was no such session.
func (s *Store) endSession(ctx context.Context, sessionID string) (string, error) {
	defer s.hot.purge(func(e *hotEntry) bool { return e.sid == sessionID })
	rec, _, err := s.readSession(ctx, sessionID)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	tracked, err := s.b.zall(ctx, s.lookupsKey(sessionID))
	if err != nil {
		return "", err
	}
	keys := []string{s.sessionKey(sessionID), s.lockKey(sessionID), s.lookupsKey(sessionID), s.audienceKey(sessionID)}
	for _, fid := range rec.Families {
		keys = append(keys, s.familyKey(sessionID, fid))
	}
	for _, kid := range rec.Keys {
		keys = append(keys, s.feedKeyKey(sessionID, kid))
	}
	// All in the session's slot: one atomic DEL ends the session for every replica.
	if err := s.b.del(ctx, keys...); err != nil {
		return "", err
	}
	// The lookup keys, in other slots, now point nowhere and would be refused on use;
	// they are deleted so that nothing of the session stays.
	names := make([]string, 0, len(tracked))
	for _, m := range tracked {
		if name, _, ok := parseTracked(m); ok && strings.HasPrefix(name, s.prefix) {
			names = append(names, name)
		}
	}
	for chunk := range slices.Chunk(names, zBatch) {
		if err := s.b.delAny(ctx, chunk...); err != nil {
			return "", err
		}
	}
	return rec.Subject, nil
}

// EndSubject ends every session, and so every feed key, of a subject.
func (s *Store) EndSubject(ctx context.Context, subject string) error {
	sids, err := s.indexSIDs(ctx, subject)
	if err != nil {
		return err
	}
	for _, sid := range sids {
		if _, err := s.endSession(ctx, sid); err != nil {
			return err
		}
	}
	// All of them, also the sessions that had expired on their own.
	return s.unindex(ctx, subject, sids)
}

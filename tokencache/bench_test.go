package tokencache

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// entraTokens returns a token set shaped like Entra ID's for a custom API: an RS256
// v1 access token with the usual claims (about 1,700 characters; random values where
// Entra has random ones) and an opaque refresh token of 1,097 characters.
func entraTokens() (access, refresh string) {
	r := func(n int) string {
		b := make([]byte, n)
		rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	guid := func() string {
		b := make([]byte, 16)
		rand.Read(b)
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	}
	kid := r(20)
	tid := guid()
	header, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256", "x5t": kid, "kid": kid})
	now := time.Now().Unix()
	payload, _ := json.Marshal(map[string]any{
		"aud": "api://" + guid(), "iss": "https://sts.windows.net/" + tid + "/", "iat": now, "nbf": now, "exp": now + 4435,
		"acr": "1", "aio": r(90), "amr": []string{"pwd", "mfa"}, "appid": guid(), "appidacr": "1",
		"family_name": "Lovelace", "given_name": "Ada", "ipaddr": "203.0.113.17", "name": "Ada Lovelace",
		"oid": guid(), "onprem_sid": "S-1-5-21-1004336348-1177238915-682003330-512", "rh": "0.A" + r(60) + ".",
		"scp": "user_impersonation", "sub": r(32), "tid": tid, "unique_name": "ada@contoso.com",
		"upn": "ada@contoso.com", "uti": r(16), "ver": "1.0", "wids": []string{"b79fbf4d-3ef9-4689-8143-76b194e85509"},
		"xms_tcdt": 1650000000,
	})
	enc := base64.RawURLEncoding.EncodeToString
	access = enc(header) + "." + enc(payload) + "." + r(256)
	refresh = "0." + r(821) // 1,097 characters, the body canonical base64url as Entra's is
	return access, refresh
}

func benchEnv(b *testing.B, wantRedis bool) *env {
	b.Helper()
	if !wantRedis {
		return &env{name: "memory"}
	}
	e := redisEnv(b)
	if e.name != "redis" {
		b.Skip("needs a real Redis: set BRIDGE_TEST_REDIS_URL")
	}
	e.prefix = "b" + random(3) + ":" // as long as the production "bridge:", so sizes match
	return e
}

func benchSession(b *testing.B, s *Store) string {
	at, rt := entraTokens()
	sid, err := s.CreateSession(context.Background(), Session{Subject: "oid-" + random(8), Name: "Ada Lovelace",
		Email: "ada@contoso.com", AccessToken: Secret(at), RefreshToken: Secret(rt), Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	return sid
}

// The hot path: Token on a fresh session, answered by the in-process cache.
func BenchmarkTokenHot(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		b.Run(backend, func(b *testing.B) {
			e := benchEnv(b, backend == "redis")
			s := e.store(b, Options{})
			sid := benchSession(b, s)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Token(ctx, sid); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A cache miss: Token without the hot cache, one Redis read and a decrypt per call.
func BenchmarkTokenMiss(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		b.Run(backend, func(b *testing.B) {
			e := benchEnv(b, backend == "redis")
			s := e.store(b, Options{HotCacheTTL: -1})
			sid := benchSession(b, s)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Token(ctx, sid); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Bytes in Redis (MEMORY USAGE) for a session with an Entra-shaped token set: the
// session key alone, and every key one sign-in leaves (session, refresh-token family,
// its lookup key, the access token's lookup key, the subject index).
func BenchmarkSessionSize(b *testing.B) {
	e := benchEnv(b, true)
	s := e.store(b, Options{})
	ctx := context.Background()
	var sessionBytes, total, value int64
	for b.Loop() {
		sid := benchSession(b, s)
		if _, err := s.Issue(ctx, sid); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		n, err := e.client.MemoryUsage(ctx, s.sessionKey(sid), 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := e.client.Get(ctx, s.sessionKey(sid)).Bytes()
		sessionBytes, value = n, int64(len(raw))
		total = 0
		for k := range e.dump(b) {
			m, _ := e.client.MemoryUsage(ctx, k, 0).Result()
			total += m
		}
		e.cleanup(b)
		b.StartTimer()
	}
	b.ReportMetric(float64(sessionBytes), "B/session-key")
	b.ReportMetric(float64(value), "B/session-value")
	b.ReportMetric(float64(total), "B/sign-in")
}

// Lookup time with 1,000 and 100,000 sessions stored: Authenticate and Token, both
// past the hot cache, must not grow with the number of sessions.
func BenchmarkLookupScale(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		for _, n := range []int{1000, 100000} {
			b.Run(fmt.Sprintf("%s/sessions=%d", backend, n), func(b *testing.B) {
				e := benchEnv(b, backend == "redis")
				s := e.store(b, Options{HotCacheTTL: -1})
				ctx := context.Background()
				at, rt := entraTokens()
				tokens := make([]string, n)
				sids := make([]string, n)
				var wg sync.WaitGroup
				const workers = 16
				for w := range workers {
					wg.Go(func() {
						for i := w; i < n; i += workers {
							sid, err := s.CreateSession(ctx, Session{Subject: "oid-" + random(8), AccessToken: Secret(at),
								RefreshToken: Secret(rt), Expiry: time.Now().Add(time.Hour)})
							if err != nil {
								b.Error(err)
								return
							}
							tok, err := s.Issue(ctx, sid)
							if err != nil {
								b.Error(err)
								return
							}
							sids[i], tokens[i] = sid, string(tok.AccessToken)
						}
					})
				}
				wg.Wait()
				if b.Failed() {
					return
				}
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				for b.Loop() {
					j := (i * 7919) % n
					i++
					sid, err := s.Authenticate(ctx, tokens[j])
					if err != nil || sid != sids[j] {
						b.Fatal(err)
					}
					if _, err := s.Token(ctx, sid); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if e.client != nil {
					e.cleanupFast(b)
				}
			})
		}
	}
}

// cleanupFast deletes the env's keys with UNLINK in batches.
func (e *env) cleanupFast(b *testing.B) {
	ctx := context.Background()
	c, ok := e.client.(*redis.Client)
	if !ok {
		e.cleanup(b)
		return
	}
	iter := c.Scan(ctx, 0, e.prefix+"*", 5000).Iterator()
	batch := make([]string, 0, 5000)
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == cap(batch) {
			c.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		c.Unlink(ctx, batch...)
	}
}

// Sessions of one subject for the scale benchmarks below: a shared service account used
// by many gateways, or a demo user, holds thousands.
var subjectScales = []int{1, 1000, 10000}

// seedSubject stores n live sessions of one subject and lists them all in the subject's
// index, without n sign-ins (whose cost BenchmarkSignInScale measures).
func seedSubject(b *testing.B, s *Store, subject string, n int) []string {
	b.Helper()
	ctx := context.Background()
	at, rt := entraTokens()
	now := s.now()
	sids := make([]string, n)
	for i := range sids {
		sid := random(16)
		rec := sessionRecord{Subject: subject, Name: "Ada Lovelace", Email: "ada@contoso.com",
			AccessToken: at, RefreshToken: rt, CreatedAt: now, LastUsed: now}
		key := s.sessionKey(sid)
		if _, err := s.b.set(ctx, key, s.seal(&rec, key, ""), s.refreshTTL, setNX); err != nil {
			b.Fatal(err)
		}
		sids[i] = sid
	}
	name := s.indexNames(subject)[0]
	members := make([][]byte, n)
	for i, sid := range sids {
		members[i] = s.member(0, name, subject, sid)
	}
	for chunk := range slices.Chunk(members, zBatch) {
		if _, err := s.b.zpush(ctx, name, chunk, s.refreshTTL, 0); err != nil {
			b.Fatal(err)
		}
	}
	return sids
}

// The miss path that records a use (touch: LastUsed, the sliding TTLs, the subject
// index) against the number of sessions of the session's subject. The clock moves by
// the touch interval before every call, so every call writes.
func BenchmarkTouchScale(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		for _, n := range subjectScales {
			b.Run(fmt.Sprintf("%s/sessions=%d", backend, n), func(b *testing.B) {
				e := benchEnv(b, backend == "redis")
				clk := newClock()
				s := e.store(b, Options{HotCacheTTL: -1, Now: clk.Now, RefreshTTL: 10 * 365 * 24 * time.Hour})
				sid := seedSubject(b, s, "oid-shared", n)[0]
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					clk.Add(s.touchInterval)
					if _, err := s.Token(ctx, sid); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if e.client != nil {
					e.cleanupFast(b)
				}
			})
		}
	}
}

// A sign-in (CreateSession) against the number of sessions its subject already has.
// Each new session is ended again outside the timer, so the count stays n.
func BenchmarkSignInScale(b *testing.B) {
	for _, backend := range []string{"memory", "redis"} {
		for _, n := range subjectScales {
			b.Run(fmt.Sprintf("%s/sessions=%d", backend, n), func(b *testing.B) {
				e := benchEnv(b, backend == "redis")
				s := e.store(b, Options{HotCacheTTL: -1})
				seedSubject(b, s, "oid-shared", n)
				at, rt := entraTokens()
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					sid, err := s.CreateSession(ctx, Session{Subject: "oid-shared", Name: "Ada Lovelace",
						Email: "ada@contoso.com", AccessToken: Secret(at), RefreshToken: Secret(rt)})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if err := s.EndSession(ctx, sid); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.StopTimer()
				if e.client != nil {
					e.cleanupFast(b)
				}
			})
		}
	}
}

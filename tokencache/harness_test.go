package tokencache

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// clock is a settable Options.Now for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testKey(t testing.TB, id string) Key {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Secret: secret}
}

// env is one kind of store under test: memory, Redis standalone or Redis Cluster. For
// Redis, several Stores made by one env share the keyspace, as replicas do.
type env struct {
	name   string
	client redis.UniversalClient // nil: memory
	shared *memory               // memory: the one backend all Stores of the env share
	prefix string
}

// envs returns the stores every behaviour test runs against: memory; Redis from
// BRIDGE_TEST_REDIS_URL, or miniredis when unset; and the Cluster named by
// BRIDGE_TEST_REDIS_CLUSTER.
func envs(t *testing.T) []*env {
	t.Helper()
	out := []*env{{name: "memory"}}
	out = append(out, redisEnv(t))
	if c := clusterEnv(t); c != nil {
		out = append(out, c)
	}
	return out
}

func redisEnv(t testing.TB) *env {
	t.Helper()
	name := "redis"
	var client redis.UniversalClient
	if url := os.Getenv("BRIDGE_TEST_REDIS_URL"); url != "" {
		c, err := NewRedisClient(RedisConfig{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		client = c
	} else {
		name = "miniredis"
		mr := miniredis.RunT(t)
		// miniredis expires keys only when told: let its time follow the wall clock,
		// so lock leases lapse as they would on a real server.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			last := time.Now()
			for {
				select {
				case <-stop:
					return
				case now := <-tick.C:
					mr.FastForward(now.Sub(last))
					last = now
				}
			}
		})
		t.Cleanup(func() { close(stop); wg.Wait() })
		client = redis.NewClient(&redis.Options{Addr: mr.Addr()})
	}
	e := &env{name: name, client: client, prefix: testPrefix()}
	t.Cleanup(func() { e.cleanup(t); client.Close() })
	return e
}

func clusterEnv(t testing.TB) *env {
	t.Helper()
	addrs := os.Getenv("BRIDGE_TEST_REDIS_CLUSTER")
	if addrs == "" {
		t.Log("BRIDGE_TEST_REDIS_CLUSTER is unset: the Redis Cluster runs are skipped")
		return nil
	}
	client, err := NewRedisClient(RedisConfig{Addrs: strings.Split(addrs, ",")})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("BRIDGE_TEST_REDIS_CLUSTER=%q did not give a cluster client", addrs)
	}
	e := &env{name: "cluster", client: client, prefix: testPrefix()}
	t.Cleanup(func() { e.cleanup(t); client.Close() })
	return e
}

// testPrefix keeps this run's keys apart from every other test sharing the server.
func testPrefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "bridgetest-" + base64.RawURLEncoding.EncodeToString(b) + ":"
}

// store makes a Store (a replica) of the env; keys default to one shared test key.
func (e *env) store(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Keys == nil {
		opts.Keys = []Key{sharedKey}
	}
	opts.Prefix = e.prefix
	opts.Redis = e.client
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if e.client == nil {
		if e.shared == nil {
			e.shared = s.b.(*memory)
		}
		e.shared.now = s.now
		s.b = e.shared
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var sharedKey = Key{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}

// dump returns every key and value of the env under its prefix.
func (e *env) dump(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if e.client == nil {
		e.shared.mu.Lock()
		defer e.shared.mu.Unlock()
		for k, v := range e.shared.m {
			out[k] = v.val
			if v.z != nil {
				out[k] = bytes.Join(v.z.head(-1), nil)
			}
		}
		return out
	}
	ctx := context.Background()
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, e.prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			v, err := dumpKey(ctx, c, iter.Val())
			if err != nil && err != redis.Nil {
				return err
			}
			out[iter.Val()] = v
		}
		return iter.Err()
	}
	var err error
	switch c := e.client.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, m)
		})
	case *redis.Client:
		err = scan(ctx, c)
	default:
		t.Fatalf("unexpected client %T", c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dumpKey returns what the key holds, whatever its type, as one byte string: a
// string's value; the members of a sorted set or list; a hash's fields and values; a
// stream's fields and values.
func dumpKey(ctx context.Context, c *redis.Client, key string) ([]byte, error) {
	typ, err := c.Type(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	var parts []string
	switch typ {
	case "string":
		return c.Get(ctx, key).Bytes()
	case "zset":
		parts, err = c.ZRange(ctx, key, 0, -1).Result()
	case "list":
		parts, err = c.LRange(ctx, key, 0, -1).Result()
	case "hash":
		var m map[string]string
		m, err = c.HGetAll(ctx, key).Result()
		for f, v := range m {
			parts = append(parts, f, v)
		}
	case "stream":
		var msgs []redis.XMessage
		msgs, err = c.XRange(ctx, key, "-", "+").Result()
		for _, m := range msgs {
			for f, v := range m.Values {
				parts = append(parts, f, fmt.Sprint(v))
			}
		}
	case "none":
		return nil, redis.Nil // gone since the scan
	default:
		return nil, fmt.Errorf("key %s: type %s not dumped", key, typ)
	}
	return []byte(strings.Join(parts, "\x00")), err
}

func (e *env) cleanup(t testing.TB) {
	if e.client == nil {
		return
	}
	ctx := context.Background()
	for k := range e.dump(t) {
		e.client.Del(ctx, k)
	}
}

// setFormat sets the env's minimum store format, lower or higher, as an operator with
// redis-cli would, and makes the given replicas read it at once. The memory env has no
// format key: its store always writes the newest.
func (e *env) setFormat(t testing.TB, f int, replicas ...*Store) {
	t.Helper()
	if e.client == nil {
		return
	}
	if err := e.client.Set(context.Background(), e.prefix+"format", f, 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range replicas {
		if got, err := s.Format(context.Background()); err != nil || got != f {
			t.Fatalf("Format after setting %d: %d, %v", f, got, err)
		}
	}
}

package tokencache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig is the redis: section of the bridge's configuration.
type RedisConfig struct {
	URL        string   // redis://[user:pass@]host:port/db or rediss://…; standalone
	Addrs      []string // several: Cluster; with MasterName: Sentinel addresses
	MasterName string   // Sentinel master name
	Username   string   // for Addrs; URL carries its own
	Password   string   // for Addrs; URL carries its own
}

// NewRedisClient builds the client for Options.Redis through redis.NewUniversalClient:
// standalone from URL, Sentinel from MasterName and Addrs, Cluster from several Addrs.
// Timeouts are short because every request of the bridge waits on the store; the pool
// is sized for the relay's concurrency. The caller owns the client and closes it.
func NewRedisClient(cfg RedisConfig) (redis.UniversalClient, error) {
	opts := &redis.UniversalOptions{
		Addrs:      cfg.Addrs,
		MasterName: cfg.MasterName,
		Username:   cfg.Username,
		Password:   cfg.Password,
	}
	if cfg.URL != "" {
		if len(cfg.Addrs) > 0 || cfg.MasterName != "" {
			return nil, errors.New("redis: set either url or addrs (with master_name for Sentinel), not both")
		}
		o, err := redis.ParseURL(cfg.URL)
		if err != nil {
			// The URL may hold a password: say what is wrong, not what it was.
			return nil, errors.New("redis: url is not a valid redis:// or rediss:// URL")
		}
		opts.Addrs = []string{o.Addr}
		opts.Username, opts.Password, opts.DB, opts.TLSConfig = o.Username, o.Password, o.DB, o.TLSConfig
	}
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redis: no url or addrs")
	}
	opts.DialTimeout = 2 * time.Second
	opts.ReadTimeout = time.Second
	opts.WriteTimeout = time.Second
	opts.PoolSize = 32 * runtime.GOMAXPROCS(0)
	opts.MinIdleConns = 2
	opts.MaxRetries = 1
	if opts.MasterName == "" && len(opts.Addrs) > 1 {
		// go-redis reloads a Cluster's slot map on MOVED or ASK, else only
		// every 60 s. A master that crashed answers neither, so its slots
		// would fail for a minute after its replica took over.
		co := opts.Cluster()
		co.ClusterStateReloadInterval = 2 * time.Second
		return redis.NewClusterClient(co), nil
	}
	return redis.NewUniversalClient(opts), nil
}

// redisStore is the shared backend: every replica sees the same keys.
type redisStore struct{ c redis.UniversalClient }

// unavailable wraps a Redis failure so that the HTTP layer answers 503; the Redis error
// stays in the chain for logs.
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func (r redisStore) get(ctx context.Context, key string) ([]byte, error) {
	b, err := r.c.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	return b, unavailable(err)
}

func (r redisStore) mget(ctx context.Context, keys ...string) ([][]byte, error) {
	vals, err := r.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([][]byte, len(keys))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i] = []byte(s)
		}
	}
	return out, nil
}

func (r redisStore) exists(ctx context.Context, key string) (bool, error) {
	n, err := r.c.Exists(ctx, key).Result()
	return n == 1, unavailable(err)
}

func (r redisStore) set(ctx context.Context, key string, val []byte, ttl time.Duration, mode setMode) (bool, error) {
	var err error
	ok := true
	switch mode {
	case setNX:
		ok, err = r.c.SetNX(ctx, key, val, ttl).Result()
	case setXX:
		ok, err = r.c.SetXX(ctx, key, val, ttl).Result()
	default:
		err = r.c.Set(ctx, key, val, ttl).Err()
	}
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return ok && err == nil, unavailable(err)
}

// Scripts keep each check-and-act atomic on the server, where two replicas cannot
// interleave. Each names only keys of one slot.
var (
	casScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`)
	delIfScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
	// RFC 6749 §4.1.2: a code is single use. The value stays until its TTL so that a
	// second taker learns which value the first one got.
	takeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 1 then ttl = 1 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl) then return {v, 1} end
return {v, 0}`)
	raiseScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local v = tonumber(ARGV[1])
if cur < v then
  redis.call('SET', KEYS[1], ARGV[1])
  return v
end
return cur`)
	// An ordered set is a sorted set whose scores count up from its last member's, so a
	// push is O(log n) and its order is the order of the pushes. ARGV[1]: TTL in ms;
	// ARGV[2]: how many members of its head to return; the rest: members to push.
	zpushScript = redis.NewScript(`
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local seq = tonumber(last[2] or '0')
for i = 3, #ARGV do
  seq = seq + 1
  redis.call('ZADD', KEYS[1], seq, ARGV[i])
end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local n = tonumber(ARGV[2])
if n > 0 then return redis.call('ZRANGE', KEYS[1], 0, n - 1) end
return {}`)
	// ARGV[1]: how many members to remove, which follow; the rest: members to move to
	// the end if they are still there.
	zsettleScript = redis.NewScript(`
local n = tonumber(ARGV[1])
for i = 2, n + 1 do redis.call('ZREM', KEYS[1], ARGV[i]) end
if #ARGV > n + 1 then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  local seq = tonumber(last[2] or '0')
  for i = n + 2, #ARGV do
    seq = seq + 1
    redis.call('ZADD', KEYS[1], 'XX', seq, ARGV[i])
  end
end
return 0`)
)

func ms(d time.Duration) int64 {
	if d < time.Millisecond {
		return 1
	}
	return d.Milliseconds()
}

func (r redisStore) cas(ctx context.Context, key string, old, val []byte, ttl time.Duration) (bool, error) {
	n, err := casScript.Run(ctx, r.c, []string{key}, old, val, ms(ttl)).Int()
	return n == 1, unavailable(err)
}

func (r redisStore) delIf(ctx context.Context, key string, val []byte) (bool, error) {
	n, err := delIfScript.Run(ctx, r.c, []string{key}, val).Int()
	return n == 1, unavailable(err)
}

func (r redisStore) del(ctx context.Context, keys ...string) error {
	return unavailable(r.c.Del(ctx, keys...).Err())
}

func (r redisStore) expire(ctx context.Context, key string, ttl time.Duration) error {
	return unavailable(r.c.PExpire(ctx, key, ttl).Err())
}

func (r redisStore) take(ctx context.Context, key, marker string) ([]byte, bool, error) {
	res, err := takeScript.Run(ctx, r.c, []string{key, marker}).Slice()
	if errors.Is(err, redis.Nil) {
		return nil, false, ErrNotFound
	}
	if err != nil {
		return nil, false, unavailable(err)
	}
	if len(res) != 2 {
		return nil, false, unavailable(errors.New("take: unexpected reply"))
	}
	v, _ := res[0].(string)
	first, _ := res[1].(int64)
	return []byte(v), first == 1, nil
}

func (r redisStore) renew(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	n, err := renewScript.Run(ctx, r.c, []string{key}, val, ms(ttl)).Int()
	return n == 1, unavailable(err)
}

func (r redisStore) existing(ctx context.Context, keys ...string) ([]bool, error) {
	// A pipeline, not one EXISTS of many keys: in a Cluster the keys lie in many slots.
	cmds := make([]*redis.IntCmd, len(keys))
	if _, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Exists(ctx, k)
		}
		return nil
	}); err != nil {
		return nil, unavailable(err)
	}
	out := make([]bool, len(keys))
	for i, c := range cmds {
		out[i] = c.Val() == 1
	}
	return out, nil
}

func (r redisStore) delAny(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	// One DEL per key: in a Cluster the keys lie in many slots.
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, k)
		}
		return nil
	})
	return unavailable(err)
}

func (r redisStore) raise(ctx context.Context, key string, v int64) (int64, error) {
	n, err := raiseScript.Run(ctx, r.c, []string{key}, v).Int64()
	return n, unavailable(err)
}

func (r redisStore) zpush(ctx context.Context, key string, members [][]byte, ttl time.Duration, head int) ([][]byte, error) {
	args := make([]any, 0, 2+len(members))
	args = append(args, ms(ttl), head)
	for _, m := range members {
		args = append(args, m)
	}
	res, err := zpushScript.Run(ctx, r.c, []string{key}, args...).StringSlice()
	if err != nil {
		return nil, unavailable(err)
	}
	return byteSlices(res), nil
}

func (r redisStore) zsettle(ctx context.Context, key string, keep, drop [][]byte) error {
	if len(keep)+len(drop) == 0 {
		return nil
	}
	args := make([]any, 0, 1+len(drop)+len(keep))
	args = append(args, len(drop))
	for _, m := range drop {
		args = append(args, m)
	}
	for _, m := range keep {
		args = append(args, m)
	}
	return unavailable(zsettleScript.Run(ctx, r.c, []string{key}, args...).Err())
}

func (r redisStore) zall(ctx context.Context, key string) ([][]byte, error) {
	res, err := r.c.ZRange(ctx, key, 0, -1).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	return byteSlices(res), nil
}

func byteSlices(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func (r redisStore) ping(ctx context.Context) error {
	return unavailable(r.c.Ping(ctx).Err())
}

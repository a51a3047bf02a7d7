package tokencache

import (
	"context"
	"time"
)

// backend is the storage under the Store: a few atomic primitives on opaque (already
// sealed) values that the in-process map and Redis both provide, so every rule of the
// token cache is written once, above it. A missing key is ErrNotFound; a store failure
// is ErrUnavailable.
type backend interface {
	get(ctx context.Context, key string) ([]byte, error)
	mget(ctx context.Context, keys ...string) ([][]byte, error) // nil where a key is missing
	exists(ctx context.Context, key string) (bool, error)
	set(ctx context.Context, key string, val []byte, ttl time.Duration, mode setMode) (bool, error)
	cas(ctx context.Context, key string, old, val []byte, ttl time.Duration) (bool, error) // write only if key holds old
	delIf(ctx context.Context, key string, val []byte) (bool, error)                       // compare and delete
	del(ctx context.Context, keys ...string) error
	expire(ctx context.Context, key string, ttl time.Duration) error
	take(ctx context.Context, key, marker string) ([]byte, bool, error)                 // value, and whether this was the first take
	renew(ctx context.Context, key string, val []byte, ttl time.Duration) (bool, error) // extend if key holds val
	ping(ctx context.Context) error
	existing(ctx context.Context, keys ...string) ([]bool, error)  // one answer per key, in one round trip
	delAny(ctx context.Context, keys ...string) error              // keys in any Cluster slots, in one round trip; not atomic
	raise(ctx context.Context, key string, v int64) (int64, error) // set an integer key to v unless it holds more; the value after

	// An ordered set (a Redis sorted set whose scores only order it) holds the subject
	// index: members are opaque sealed bytes, in the order they were last pushed.
	zpush(ctx context.Context, key string, members [][]byte, ttl time.Duration, head int) ([][]byte, error) // add or move members to the end, set the key's TTL, return the first head members
	zsettle(ctx context.Context, key string, keep, drop [][]byte) error                                     // remove drop; move the members of keep that are still there to the end
	zall(ctx context.Context, key string) ([][]byte, error)                                                 // every member in order; none when the key is missing
}

// setMode chooses plain SET, SET NX or SET XX.
type setMode uint8

const (
	setAlways setMode = iota
	setNX
	setXX
)

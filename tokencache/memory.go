package tokencache

import (
	"bytes"
	"container/list"
	"context"
	"strconv"
	"sync"
	"time"
)

// memory is the default backend: one map in this process, lost on restart, shared by
// no other replica. Its TTLs run on Options.Now, so tests can move time.
type memory struct {
	now    func() time.Time
	mu     sync.Mutex
	m      map[string]memEntry
	writes int
}

type memEntry struct {
	val []byte
	z   *ordered  // an ordered set instead of a value
	exp time.Time // zero: no TTL
}

// ordered is the memory form of the Redis sorted set the backend's z* methods use:
// members in order and an index into them, so pushing, moving and removing one member
// costs O(1).
type ordered struct {
	l  list.List // of string
	at map[string]*list.Element
}

func (o *ordered) push(member string, mustExist bool) {
	if e, ok := o.at[member]; ok {
		o.l.MoveToBack(e)
		return
	}
	if !mustExist {
		o.at[member] = o.l.PushBack(member)
	}
}

func (o *ordered) head(n int) [][]byte {
	if n < 0 || n > o.l.Len() {
		n = o.l.Len()
	}
	out := make([][]byte, 0, n)
	for e := o.l.Front(); e != nil && len(out) < n; e = e.Next() {
		out = append(out, []byte(e.Value.(string)))
	}
	return out
}

func newMemory(now func() time.Time) *memory {
	return &memory{now: now, m: make(map[string]memEntry)}
}

// lookup returns the live entry under key; the caller holds mu.
func (m *memory) lookup(key string) (memEntry, bool) {
	e, ok := m.m[key]
	if ok && !e.exp.IsZero() && !m.now().Before(e.exp) {
		delete(m.m, key)
		return memEntry{}, false
	}
	return e, ok
}

// store writes under mu and now and then sweeps expired entries, so the map stays
// bounded by what is alive without a janitor goroutine.
func (m *memory) store(key string, val []byte, ttl time.Duration) {
	e := memEntry{val: bytes.Clone(val)}
	if ttl > 0 {
		e.exp = m.now().Add(ttl)
	}
	m.put(key, e)
}

// put writes e under key and now and then sweeps expired entries; the caller holds mu.
func (m *memory) put(key string, e memEntry) {
	m.m[key] = e
	m.writes++
	if m.writes >= 1024 && m.writes >= len(m.m)/4 {
		m.writes = 0
		now := m.now()
		for k, e := range m.m {
			if !e.exp.IsZero() && !now.Before(e.exp) {
				delete(m.m, k)
			}
		}
	}
}

func (m *memory) get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(e.val), nil
}

func (m *memory) mget(_ context.Context, keys ...string) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		if e, ok := m.lookup(k); ok {
			out[i] = bytes.Clone(e.val)
		}
	}
	return out, nil
}

func (m *memory) exists(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.lookup(key)
	return ok, nil
}

func (m *memory) set(_ context.Context, key string, val []byte, ttl time.Duration, mode setMode) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.lookup(key)
	if mode == setNX && ok || mode == setXX && !ok {
		return false, nil
	}
	m.store(key, val, ttl)
	return true, nil
}

func (m *memory) cas(_ context.Context, key string, old, val []byte, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok || !bytes.Equal(e.val, old) {
		return false, nil
	}
	m.store(key, val, ttl)
	return true, nil
}

func (m *memory) delIf(_ context.Context, key string, val []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok || !bytes.Equal(e.val, val) {
		return false, nil
	}
	delete(m.m, key)
	return true, nil
}

func (m *memory) del(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.m, k)
	}
	return nil
}

func (m *memory) expire(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.lookup(key); ok {
		e.exp = m.now().Add(ttl)
		m.m[key] = e
	}
	return nil
}

func (m *memory) take(_ context.Context, key, marker string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok {
		return nil, false, ErrNotFound
	}
	_, taken := m.lookup(marker)
	if !taken {
		m.m[marker] = memEntry{val: []byte("1"), exp: e.exp}
	}
	return bytes.Clone(e.val), !taken, nil
}

func (m *memory) renew(_ context.Context, key string, val []byte, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok || !bytes.Equal(e.val, val) {
		return false, nil
	}
	e.exp = m.now().Add(ttl)
	m.m[key] = e
	return true, nil
}

func (m *memory) ping(context.Context) error { return nil }

func (m *memory) existing(_ context.Context, keys ...string) ([]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]bool, len(keys))
	for i, k := range keys {
		_, out[i] = m.lookup(k)
	}
	return out, nil
}

func (m *memory) delAny(ctx context.Context, keys ...string) error { return m.del(ctx, keys...) }

func (m *memory) raise(_ context.Context, key string, v int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.lookup(key); ok {
		if cur, err := strconv.ParseInt(string(e.val), 10, 64); err == nil && cur >= v {
			return cur, nil
		}
	}
	m.store(key, []byte(strconv.FormatInt(v, 10)), 0)
	return v, nil
}

func (m *memory) zpush(_ context.Context, key string, members [][]byte, ttl time.Duration, head int) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok || e.z == nil {
		if len(members) == 0 {
			return nil, nil
		}
		e = memEntry{z: &ordered{at: make(map[string]*list.Element)}}
	}
	if len(members) > 0 { // as the script extends only what it writes to
		for _, mb := range members {
			e.z.push(string(mb), false)
		}
		e.exp = m.now().Add(ttl)
		m.put(key, e)
	}
	return e.z.head(head), nil
}

func (m *memory) zsettle(_ context.Context, key string, keep, drop [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok || e.z == nil {
		return nil
	}
	for _, mb := range drop {
		if el, ok := e.z.at[string(mb)]; ok {
			e.z.l.Remove(el)
			delete(e.z.at, string(mb))
		}
	}
	for _, mb := range keep {
		e.z.push(string(mb), true)
	}
	if e.z.l.Len() == 0 { // as Redis deletes an empty set
		delete(m.m, key)
	}
	return nil
}

func (m *memory) zall(_ context.Context, key string) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(key)
	if !ok || e.z == nil {
		return nil, nil
	}
	return e.z.head(-1), nil
}

package tokencache

import (
	"container/list"
	"sync"
	"time"
)

// hotCache is the bounded in-process cache of the hot path: access token → session,
// feed key → session, session → provider access token. An OData page then costs no
// Redis round trip. Entries live at most Options.HotCacheTTL, which bounds how long a
// revocation on another replica takes to reach this one; a revocation made here purges
// them at once. When full, the oldest insertion goes first, so a read takes only the
// read lock.
type hotCache struct {
	mu   sync.RWMutex
	m    map[hotKey]*list.Element
	fifo list.List // of *hotEntry, oldest first
	max  int
}

type hotKind uint8

const (
	hotAccess   hotKind = iota + 1 // bridge access token → session ID
	hotFeed                        // feed key → session ID
	hotToken                       // session ID → provider access token
	hotAudience                    // session ID and source → provider access token for that source
)

type hotKey struct {
	kind hotKind
	s    string
}

type hotEntry struct {
	key   hotKey
	val   string
	sid   string // for purging a session
	keyID string // for purging a feed key
	exp   time.Time
}

func newHotCache(max int) *hotCache {
	if max <= 0 {
		return nil
	}
	return &hotCache{m: make(map[hotKey]*list.Element), max: max}
}

func (c *hotCache) get(k hotKey, now time.Time) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.RLock()
	el, ok := c.m[k]
	var e hotEntry
	if ok {
		e = *el.Value.(*hotEntry)
	}
	c.mu.RUnlock()
	if !ok || !now.Before(e.exp) {
		return "", false
	}
	return e.val, true
}

func (c *hotCache) put(e hotEntry) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[e.key]; ok {
		*el.Value.(*hotEntry) = e
		c.fifo.MoveToBack(el)
		return
	}
	c.m[e.key] = c.fifo.PushBack(&e)
	for c.fifo.Len() > c.max {
		oldest := c.fifo.Front()
		delete(c.m, oldest.Value.(*hotEntry).key)
		c.fifo.Remove(oldest)
	}
}

func (c *hotCache) del(k hotKey) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		delete(c.m, k)
		c.fifo.Remove(el)
	}
}

// purge drops every entry for which drop says so; revocation is rare, so a scan is fine.
func (c *hotCache) purge(drop func(*hotEntry) bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.fifo.Front(); el != nil; {
		next := el.Next()
		if e := el.Value.(*hotEntry); drop(e) {
			delete(c.m, e.key)
			c.fifo.Remove(el)
		}
		el = next
	}
}

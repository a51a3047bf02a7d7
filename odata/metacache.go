package odata

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// Bounds of the per-user $metadata cache: CSDL documents are large (K2 trims them per
// user), so the cache holds at most maxCachedMetadata per entry and metaCacheBudget in all.
const (
	maxCachedMetadata = 8 << 20
	metaCacheBudget   = 64 << 20
)

type metaEntry struct {
	header  http.Header
	body    []byte
	served  Served // what the relay read of the body when it was relayed
	expires time.Time
}

// metaCache keeps rewritten $metadata bodies per user and request shape for one source.
type metaCache struct {
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]*metaEntry
	size    int
}

func newMetaCache(ttl time.Duration) *metaCache {
	return &metaCache{ttl: ttl, entries: map[string]*metaEntry{}}
}

// metaKey names a cached $metadata response. The user comes first: one user's trimmed
// metadata must never answer another's request. The format headers follow because they
// select between CSDL XML and CSDL JSON.
func metaKey(user, path, query string, h http.Header) string {
	return strings.Join([]string{user, path, query, h.Get("Accept"), h.Get("OData-MaxVersion"), h.Get("MaxDataServiceVersion"), h.Get("Accept-Language")}, "\x00")
}

func (m *metaCache) get(key string) (*metaEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok {
		return nil, false
	}
	if time.Now().After(e.expires) {
		m.remove(key, e)
		return nil, false
	}
	return e, true
}

func (m *metaCache) put(key string, e *metaEntry) {
	now := time.Now()
	e.expires = now.Add(m.ttl)
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.entries[key]; ok {
		m.remove(key, old)
	}
	if m.size+len(e.body) > metaCacheBudget {
		for k, old := range m.entries {
			if now.After(old.expires) {
				m.remove(k, old)
			}
		}
	}
	// Still full: drop entries (map order is random enough for a cache of this kind).
	for k, old := range m.entries {
		if m.size+len(e.body) <= metaCacheBudget {
			break
		}
		m.remove(k, old)
	}
	m.entries[key] = e
	m.size += len(e.body)
}

func (m *metaCache) remove(key string, e *metaEntry) {
	delete(m.entries, key)
	m.size -= len(e.body)
}

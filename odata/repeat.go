package odata

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The refresh accelerator: a Power BI refresh asks for $metadata, the service document
// and the first page of a table more than once, then walks the pages one by one. The
// relay answers the repeats of one caller from one upstream request (joined while it is
// in flight, kept for the source's RepeatTTL after), and fetches the next page while the
// client still reads the current one (ReadAhead). Everything is per caller and per
// replica: the key of every response starts with the caller's identity, and nothing
// reaches another caller. All kept and read-ahead bytes share Options.MemoryBudget; when
// it is full, responses stream as if the accelerator were off.

const (
	// maxKept bounds one kept response; a larger one streams and is not kept.
	maxKept = 8 << 20
	// defaultMemoryBudget is Options.MemoryBudget's zero value.
	defaultMemoryBudget = 256 << 20
	// defaultAheadTTL keeps an unclaimed read-ahead page when RepeatTTL is zero.
	defaultAheadTTL = 30 * time.Second
)

// repeatKey names one response of one caller: the caller's key as the connector gives
// it, the source, the escaped path and raw query (in canonical form, see canonical), and
// the request headers that select a representation.
type repeatKey struct {
	user, source, path, query  string
	accept, maxVersion, maxDSV string
	prefer, language, charset  string
}

// kept is a finished 200 response to a GET, rewritten and uncompressed.
type kept struct {
	key    repeatKey
	header http.Header
	body   []byte
	next   *pageLink // the next page's link, nil when none
	served Served    // what the relay read of the body when it was relayed
	ahead  bool      // fetched ahead and not claimed yet
	timer  *time.Timer
}

// flight is a request in flight whose response identical requests wait for.
type flight struct {
	key     repeatKey
	user    string // the caller, for the pages read ahead
	done    chan struct{}
	res     *kept // set before done closes; nil: nothing to share
	ahead   bool  // a read-ahead fetch, not a client's request
	settled bool  // done is closed; under accel.mu
	dropped bool  // the caller was forgotten: publish nothing; under accel.mu
	cancel  context.CancelFunc
}

// accel holds a Relay's kept responses, flights and read-ahead fetches.
type accel struct {
	budget int64
	held   atomic.Int64
	log    *slog.Logger
	m      *metrics // nil: no metrics

	ctx    context.Context // cancelled by Relay.Close; bounds every read-ahead fetch
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	flights map[repeatKey]*flight
	kept    map[repeatKey]*kept
	closed  bool
}

func newAccel(budget int64, log *slog.Logger, m *metrics) *accel {
	if budget == 0 {
		budget = defaultMemoryBudget
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &accel{budget: budget, log: log, m: m, ctx: ctx, cancel: cancel,
		flights: map[repeatKey]*flight{}, kept: map[repeatKey]*kept{}}
}

// reserve takes n bytes of the budget, or reports that they do not fit.
func (a *accel) reserve(n int64) bool {
	if a.budget <= 0 {
		return false
	}
	if a.held.Add(n) > a.budget {
		a.held.Add(-n)
		return false
	}
	a.m.held(n)
	return true
}

func (a *accel) unreserve(n int64) {
	if n != 0 {
		a.held.Add(-n)
		a.m.held(-n)
	}
}

// full reports whether the budget has no room left for a page.
func (a *accel) full() bool { return a.budget <= 0 || a.held.Load() >= a.budget }

// lookup finds what answers key: a kept response, or a flight to wait for. With
// neither, and lead set, it registers a flight for the caller to lead.
func (a *accel) lookup(key repeatKey, user string, lead bool) (*kept, *flight, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.kept[key]; ok {
		return e, nil, false
	}
	if f, ok := a.flights[key]; ok {
		return nil, f, false
	}
	if !lead || a.closed || a.full() {
		return nil, nil, false
	}
	f := &flight{key: key, user: user, done: make(chan struct{})}
	a.flights[key] = f
	return nil, f, true
}

// settle ends a flight: e (nil for nothing) goes to its waiters, and is kept for ttl
// when ttl > 0. It returns whether e was kept; when not, its bytes are released.
func (a *accel) settle(key repeatKey, f *flight, e *kept, ttl time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f.settled {
		return false
	}
	f.settled = true
	if a.flights[key] == f {
		delete(a.flights, key)
	}
	if f.dropped || a.closed {
		e = nil
	}
	f.res = e
	close(f.done)
	if e == nil || ttl <= 0 {
		return false
	}
	if old, ok := a.kept[key]; ok {
		a.removeLocked(old)
	}
	a.kept[key] = e
	e.timer = time.AfterFunc(ttl, func() { a.expire(e) })
	return true
}

// expire drops e when its time is up, unless it was dropped already.
func (a *accel) expire(e *kept) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kept[e.key] == e {
		a.removeLocked(e)
	}
}

// claim marks a read-ahead page as used by its caller and drops it: a refresh reads
// each page once, so keeping every page for RepeatTTL would fill the budget with pages
// nobody asks for again, while only $metadata, the service document and the first page
// are repeated (and those are the client's own requests, kept as usual).
func (a *accel) claim(e *kept) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !e.ahead {
		return false
	}
	e.ahead = false
	if a.kept[e.key] == e {
		a.removeLocked(e)
	}
	return true
}

// removeLocked drops a kept response and releases its bytes; an unclaimed read-ahead
// page counts as wasted.
func (a *accel) removeLocked(e *kept) {
	delete(a.kept, e.key)
	if e.timer != nil {
		e.timer.Stop()
	}
	if e.ahead {
		e.ahead = false
		a.m.ahead(e.key.source, false)
		a.log.Debug("read-ahead page dropped unused", "source", e.key.source, "page", linkHash(e.key))
	}
	a.unreserve(int64(len(e.body)))
}

// forget drops every kept response and read-ahead page of the callers match accepts, for
// the source named source ("" for all), and keeps their flights from keeping anything.
func (a *accel) forget(source string, match func(user string) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, e := range a.kept {
		if (source == "" || k.source == source) && match(k.user) {
			a.removeLocked(e)
		}
	}
	for k, f := range a.flights {
		if (source == "" || k.source == source) && match(k.user) {
			f.dropped = true
			if f.cancel != nil {
				f.cancel()
			}
		}
	}
}

// close cancels every read-ahead fetch, waits for them and drops everything kept.
func (a *accel) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
	a.forget("", func(string) bool { return true })
}

// linkHash names a page in logs without its path or query, which may hold data.
func linkHash(k repeatKey) string {
	h := sha256.Sum256([]byte(k.path + "?" + k.query))
	return hex.EncodeToString(h[:6])
}

// newRepeatKey builds the key of a request of user for st's path and query.
func newRepeatKey(user string, st *sourceState, path, query string, h http.Header) repeatKey {
	return repeatKey{
		user: user, source: st.src.Name, path: canonical(path, true), query: canonical(query, false),
		accept: h.Get("Accept"), maxVersion: h.Get("OData-MaxVersion"), maxDSV: h.Get("MaxDataServiceVersion"),
		prefer: h.Get("Prefer"), language: h.Get("Accept-Language"), charset: h.Get("Accept-Charset"),
	}
}

// accelerated reports whether the call may be answered by, or lead, a shared upstream
// request: a GET of a known caller, on a source with repeats or read-ahead on, that is
// not conditional (a validator asks the upstream itself).
func (c *call) accelerated(user string) bool {
	st := c.st
	return (st.src.RepeatTTL > 0 || st.src.ReadAhead > 0) && user != "" && c.in.Method == http.MethodGet &&
		c.rl.acc != nil && c.in.Header.Get("If-None-Match") == "" && c.in.Header.Get("If-Modified-Since") == "" &&
		c.in.Header.Get("If-Match") == "" && c.in.Header.Get("If-Unmodified-Since") == ""
}

// accelerate answers the call from a kept response or a flight it joins, and reports
// whether it did, with what it served. Otherwise the call goes upstream; when it leads
// a new flight, c.flight is set and the response it relays is shared.
func (c *call) accelerate(user string) (Served, bool) {
	st := c.st
	key := newRepeatKey(user, st, c.path, c.upQuery, c.in.Header)
	for range 2 {
		e, f, lead := c.rl.acc.lookup(key, user, true)
		if lead {
			c.flight = f
			return Served{}, false
		}
		if f != nil {
			select {
			case <-f.done:
			case <-c.in.Context().Done():
				return Served{}, true // the client is gone; nobody reads an answer
			}
			if f.res == nil {
				// Nothing to share (an error, a large or uncacheable response, a failed
				// read-ahead): the request goes upstream on its own, or leads the next
				// flight.
				continue
			}
			e = f.res
			if f.ahead {
				c.usedAhead(e)
			} else {
				st.m.joined()
			}
		} else if e != nil {
			if !c.usedAhead(e) {
				st.m.repeat()
			}
		}
		if e == nil {
			return Served{}, false
		}
		served := c.serveKept(e)
		c.readAhead(e, user, c.auth, c.in.Header, 0)
		return served, true
	}
	return Served{}, false
}

// usedAhead counts a read-ahead page reaching its client, once, and reports whether e
// was one.
func (c *call) usedAhead(e *kept) bool {
	if !c.rl.acc.claim(e) {
		return false
	}
	c.rl.metrics.ahead(c.st.src.Name, true)
	c.rl.log.Debug("read-ahead page used", "source", c.st.src.Name, "page", linkHash(e.key))
	return true
}

// serveKept writes a kept response.
func (c *call) serveKept(e *kept) Served { return c.serveBody(e.header, e.body, e.served) }

// keepBuffer passes writes on and keeps a copy for a flight, within maxKept and the
// relay's budget; past either it keeps nothing and releases its bytes, and the flight's
// waiters go upstream themselves. While it fills, the budget counts its capacity, which
// it grows itself (from the response's length when known), so the memory a page takes
// is the memory the budget counts.
type keepBuffer struct {
	header http.Header // the response's headers, without Content-Encoding
	next   io.Writer
	c      *call
	buf    []byte
	over   bool
}

// newKeepBuffer starts a copy of a body of length n (-1: unknown).
func newKeepBuffer(c *call, next io.Writer, n int64) *keepBuffer {
	b := &keepBuffer{next: next, c: c}
	if n > 0 && n <= maxKept {
		// A rewritten body may grow a little: public bases are often longer.
		b.grow(int(min(n+n/8+4<<10, maxKept)))
	}
	return b
}

// grow makes room for capacity n, within the budget; it reports whether it did.
func (b *keepBuffer) grow(n int) bool {
	if !b.c.rl.acc.reserve(int64(n - cap(b.buf))) {
		return false
	}
	nb := make([]byte, len(b.buf), n)
	copy(nb, b.buf)
	b.buf = nb
	return true
}

func (b *keepBuffer) Write(p []byte) (int, error) {
	if !b.over {
		need := len(b.buf) + len(p)
		switch {
		case need > maxKept:
			b.drop()
		case need > cap(b.buf) && !b.grow(min(max(need, 2*cap(b.buf), 32<<10), maxKept)):
			b.drop()
		default:
			b.buf = append(b.buf, p...)
		}
	}
	if b.next == nil {
		return len(p), nil
	}
	return b.next.Write(p)
}

// drop gives up keeping: the bytes go back to the budget and the flight ends empty.
func (b *keepBuffer) drop() {
	if b.over {
		return
	}
	b.over = true
	b.c.rl.acc.unreserve(int64(cap(b.buf)))
	b.buf = nil
	b.c.settleFlight(false)
}

// body returns the kept bytes, which the budget then counts by their length: a buffer
// with much room to spare is copied to one that fits.
func (b *keepBuffer) body() []byte {
	body := b.buf
	if spare := cap(body) - len(body); spare > len(body)/8+4<<10 {
		body = slices.Clone(body)
	}
	b.c.rl.acc.unreserve(int64(cap(b.buf) - len(body)))
	b.buf = nil
	return body
}

// settleFlight ends the call's flight: with ok, the kept copy of the response is shared
// (and kept for RepeatTTL) and the next page is read ahead; otherwise its waiters go
// upstream themselves. It is called on every path out of a call that leads a flight;
// after the first call it does nothing.
func (c *call) settleFlight(ok bool) {
	f := c.flight
	if f == nil {
		return
	}
	c.flight = nil
	acc := c.rl.acc
	if !ok || c.keep == nil || c.keep.over || c.status != http.StatusOK {
		if c.keep != nil && !c.keep.over {
			acc.unreserve(int64(cap(c.keep.buf)))
			c.keep.buf = nil
		}
		acc.settle(f.key, f, nil, 0)
		return
	}
	body := c.keep.body()
	e := &kept{key: f.key, header: c.keep.header, body: body, ahead: f.ahead, served: c.served}
	if c.served.Next {
		// Only a page's own next link: not the __next of an expanded collection.
		e.next = c.nextLink(e.body)
	}
	ttl := c.st.src.RepeatTTL
	if f.ahead && ttl <= 0 {
		ttl = defaultAheadTTL
	}
	if !acc.settle(f.key, f, e, ttl) {
		acc.unreserve(int64(len(e.body)))
		if e.ahead {
			// Nobody will claim it: forgotten, closed, or no time to keep it.
			c.rl.metrics.ahead(c.st.src.Name, false)
			return
		}
	}
	// A client's page starts the run-ahead; a page read ahead continues it, up to
	// ReadAhead pages ahead of the client.
	c.readAhead(e, f.user, c.auth, c.in.Header, c.depth)
}

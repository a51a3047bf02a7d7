package tokencache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The ledger is the operators' record of the bridge: usage counters, refresh history and
// the audit trail. Every replica writes to the same store, so the operators' page of any
// replica shows the whole fleet.
//
// Usage counters are Redis hashes, one per time bucket, whose fields are
// "metric|name". Names are source names, user subjects and feed-key IDs, never request
// paths, so the number of fields is bounded by what is configured and who signs in:
//
//	{prefix}usage:h:{unix hour}  req|src bytes|src rows|src us|src e4|src e5|src t0|src … t10|src  (kept HourRetention)
//	{prefix}usage:u:{unix day}   req|user bytes|user who|user                          (kept DayRetention)
//	{prefix}usage:k:{unix day}   req|key ID bytes|key ID                                (kept DayRetention)
//	{prefix}usage:last           src → "status unix-ms" of the last answer
//
// Increments are summed in process and written every FlushInterval in one pipeline
// (HINCRBY per field), so a small request costs a map update, not a round trip.
//
// A subject is personal data, so in Redis the ledger keeps none in clear, under the
// Store's keys and rotation rules. A user's fields are named by an HMAC of the subject
// under the newest key (userName); who|user holds the subject sealed, bound to the
// bucket and the name, so Days can tell whose the counts are. It lives in the day's
// hash, so it expires with the counts it names. The audit events, finished refreshes
// and refreshes in progress are sealed whole, bound to their Redis key, and the
// refreshes in progress and First's markers are named by HMACs as well (see
// refreshes.go and audit.go). Source names and feed-key IDs (random, chosen by the
// bridge) stay in clear: they name nobody.
//
// What the release before sealing wrote is still read: a JSON record (one that starts
// with '{') as it is, and a user field without who|user as the subject it names.

// Retention of the usage buckets.
const (
	HourRetention = 8 * 24 * time.Hour  // hourly source buckets
	DayRetention  = 90 * 24 * time.Hour // daily user and key buckets
	// RefreshHistoryLen is how many finished refreshes are kept per source.
	RefreshHistoryLen = 500
	// AuditLen is about how many audit events are kept (Redis trims approximately).
	AuditLen = 10000
)

// LatencyBounds are the upper bounds of the upstream-time histogram kept per source and
// hour; the last bucket is everything above the last bound.
var LatencyBounds = [...]time.Duration{
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second,
}

// LedgerOptions configure a Ledger. Every field documents its zero value.
type LedgerOptions struct {
	Redis         redis.UniversalClient // nil: in memory (this process only, lost on restart)
	Prefix        string                // of every Redis key; zero: "bridge:"
	Now           func() time.Time      // zero: time.Now
	Logger        *slog.Logger          // zero: discard
	FlushInterval time.Duration         // how often counters and finished refreshes are written; zero: 1s; negative: only by Flush
	RefreshGap    time.Duration         // a pause longer than this ends a refresh as abandoned; zero: 1m
	// Keys seal and name the records in Redis, as the Store's Options.Keys do (the first
	// seals and names, all open): pass the Store's. Required with Redis: without them the
	// ledger writes nothing and its calls return an error. Unused in memory.
	Keys []Key
}

// Ledger keeps usage counters, refresh history and the audit trail in memory or in
// Redis. It is safe for concurrent use; several Ledgers (replicas) may share one Redis.
type Ledger struct {
	rdb      redis.UniversalClient
	prefix   string
	now      func() time.Time
	log      *slog.Logger
	interval time.Duration
	gap      time.Duration
	ring     *keyring // with Redis: seals and names the records
	err      error    // why the ledger refuses to use Redis; nil when it does

	mu       sync.Mutex
	pending  map[tally]*sums
	last     map[string]lastSeen // per source, not yet written
	runs     map[runKey]*run     // refreshes in progress, in memory only
	finished []RefreshRun        // ended refreshes, not yet written, in memory only
	queued   []pageAt            // pages not yet applied in Redis
	dropped  int                 // pages left out since the last write
	kick     chan struct{}       // a page was queued
	mem      *memLedger          // nil with Redis

	flushMu   sync.Mutex // one flush at a time
	users     users      // with Redis: the users Flush named, under flushMu
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// counter is one field of one bucket hash.
type counter struct{ hash, field string }

// tally is what Record keeps per bucket and name, keyed by strings it already has, so
// counting a request is one map lookup per bucket and allocates nothing. Flush turns the
// tallies into counters.
type tally struct {
	kind   byte  // 'h' per source and hour, 'u' per user and day, 'k' per key and day
	bucket int64 // unix hour or day
	name   string
}

// sums are one tally's counts; users and keys use requests and bytes only.
type sums struct {
	requests, bytes, rows, us, e4, e5 int64
	latency                           [len(LatencyBounds) + 1]int64
}

// lastSeen is the last answer of a source.
type lastSeen struct {
	status int
	ms     int64
}

// latencyMetrics are the histogram fields' metric names, t0 to t10.
var latencyMetrics = func() []string {
	out := make([]string, len(LatencyBounds)+1)
	for i := range out {
		out[i] = "t" + strconv.Itoa(i)
	}
	return out
}()

// bucketKey is the hash that keeps t.
func (l *Ledger) bucketKey(t tally) string {
	return l.prefix + "usage:" + string(t.kind) + ":" + strconv.FormatInt(t.bucket, 10)
}

// counters spreads a tally over the fields of its bucket's hash, named by name.
func (l *Ledger) counters(t tally, name string, n *sums, into map[counter]int64) {
	hash := l.bucketKey(t)
	add := func(metric string, v int64) {
		if v != 0 {
			into[counter{hash, metric + "|" + name}] += v
		}
	}
	add("req", n.requests)
	add("bytes", n.bytes)
	if t.kind != 'h' {
		return
	}
	add("rows", n.rows)
	add("us", n.us)
	add("e4", n.e4)
	add("e5", n.e5)
	for i, v := range n.latency {
		add(latencyMetrics[i], v)
	}
}

// sum returns the sums of t, created on first use; the caller holds mu.
func (l *Ledger) sum(t tally) *sums {
	n := l.pending[t]
	if n == nil {
		n = &sums{}
		l.pending[t] = n
	}
	return n
}

// users remembers, for Flush, each subject's name and the day whose who|name this
// process last wrote, so a user costs one HMAC and one sealed HSETNX a day, not one every
// flush. It forgets everything every hour, and past maxUsers subjects: a who|name lost by
// the store after it was written (a failover) is written again within the hour.
type users struct {
	hour int64 // unix hour of the first flush since it forgot
	m    map[string]user
}

type user struct {
	name string // the HMAC name of the subject's fields
	day  int64  // unix day of the last who|name written; 0: none
}

// maxUsers bounds the subjects users remembers.
const maxUsers = 10000

// user returns subject's entry, named at first use; the caller holds flushMu.
func (l *Ledger) user(subject string, now time.Time) user {
	u := &l.users
	if h := now.Unix() / 3600; h != u.hour || len(u.m) >= maxUsers {
		u.hour = h
		clear(u.m)
	}
	e, ok := u.m[subject]
	if !ok {
		e = user{name: l.userName(subject)}
		u.m[subject] = e
	}
	return e
}

// userName is the name of subject's usage fields in Redis: the HMAC of the subject under
// the newest key, apart from every other name the keyring gives (the label), so it
// cannot be matched with the Store's subject index.
func (l *Ledger) userName(subject string) string {
	return l.ring.name(0, "", "ledger user\x00"+subject)
}

// openRecord returns the record raw, read from the Redis key key (and bound to bound):
// sealed, it is opened; a JSON record, as the release before sealing wrote it, is
// returned as it is. ok is false when it does not open.
func (l *Ledger) openRecord(raw []byte, key, bound string) (plain []byte, ok bool) {
	if len(raw) > 0 && raw[0] == '{' {
		return raw, true
	}
	plain, err := l.ring.open(raw, key, bound)
	return plain, err == nil
}

// NewLedger builds a Ledger and starts its flusher, which Close stops. With Redis and no
// usable LedgerOptions.Keys it logs why, starts no flusher, counts nothing, and every
// call returns the error.
func NewLedger(opts LedgerOptions) *Ledger {
	l := &Ledger{
		rdb:      opts.Redis,
		prefix:   opts.Prefix,
		now:      opts.Now,
		log:      opts.Logger,
		interval: orDefault(opts.FlushInterval, time.Second),
		gap:      orDefault(opts.RefreshGap, time.Minute),
		pending:  map[tally]*sums{},
		last:     map[string]lastSeen{},
		runs:     map[runKey]*run{},
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if l.prefix == "" {
		l.prefix = "bridge:"
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.rdb == nil {
		l.mem = newMemLedger()
	} else {
		l.ring, l.err = ledgerKeyring(opts.Keys)
		l.users.m = map[string]user{}
	}
	if l.err != nil {
		l.log.Error("tokencache: the ledger keeps no records", "err", l.err)
	}
	if l.interval < 0 || l.err != nil {
		close(l.done)
		return l
	}
	go l.flusher()
	return l
}

// ledgerKeyring is the keyring of a ledger on Redis. Nothing older reads a sealed
// record of the ledger, so it writes the newest value version.
func ledgerKeyring(keys []Key) (*keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("tokencache: the ledger needs encryption keys with Redis")
	}
	r, err := newKeyring(keys)
	if err != nil {
		return nil, fmt.Errorf("tokencache: ledger: %w", err)
	}
	r.write.Store(uint32(valueV3))
	return r, nil
}

func (l *Ledger) flusher() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			l.flushMu.Lock()
			if err := l.writeRuns(ctx, false); err != nil {
				l.log.Warn("tokencache: following refreshes failed; those pages are left out", "err", err)
			}
			l.flushMu.Unlock()
			cancel()
			// Pages served meanwhile wait for the next write, so a busy replica writes
			// them in batches, at most every pageBatch, rather than one by one.
			select {
			case <-l.stop:
				return
			case <-time.After(pageBatch):
			}
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := l.Flush(ctx); err != nil {
				l.log.Warn("tokencache: writing usage failed; those counts are lost", "err", err)
			}
			cancel()
		}
	}
}

// Close stops the flusher and writes what is pending.
func (l *Ledger) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.Flush(ctx)
}

// Use is one finished relayed request.
type Use struct {
	Source   string        // required
	Subject  string        // the signed-in user; "": not counted per user
	KeyID    string        // the feed key's ID; "": not a feed key
	Status   int           // the answer's status
	Bytes    int64         // response body bytes sent
	Rows     int64         // entities relayed, where the answer could be read (see Page)
	Upstream time.Duration // time spent serving the request
}

func latencyBucket(d time.Duration) int {
	for i, b := range LatencyBounds {
		if d <= b {
			return i
		}
	}
	return len(LatencyBounds)
}

// Record counts u in the current hour and day. It never does I/O.
func (l *Ledger) Record(u Use) {
	if l.err != nil {
		return
	}
	now := l.now()
	hour, day := now.Unix()/3600, now.Unix()/86400
	us := u.Upstream.Microseconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	src := l.sum(tally{'h', hour, u.Source})
	src.requests++
	src.bytes += u.Bytes
	src.rows += max(u.Rows, 0)
	src.us += us
	src.latency[latencyBucket(u.Upstream)]++
	switch {
	case u.Status >= 500:
		src.e5++
	case u.Status >= 400:
		src.e4++
	}
	if u.Subject != "" {
		n := l.sum(tally{'u', day, u.Subject})
		n.requests++
		n.bytes += u.Bytes
	}
	if u.KeyID != "" {
		n := l.sum(tally{'k', day, u.KeyID})
		n.requests++
		n.bytes += u.Bytes
	}
	l.last[u.Source] = lastSeen{u.Status, now.UnixMilli()}
}

// retention is how long the bucket named hash is kept.
func (l *Ledger) retention(hash string) time.Duration {
	if strings.HasPrefix(hash, l.prefix+"usage:h:") {
		return HourRetention
	}
	return DayRetention
}

// Flush writes the pending counters and finished refreshes, and ends the refreshes that
// paused longer than the gap.
func (l *Ledger) Flush(ctx context.Context) error {
	if l.err != nil {
		return l.err
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	runErr := l.writeRuns(ctx, true)
	l.mu.Lock()
	l.sweepRuns(l.now())
	tallies, seen, finished := l.pending, l.last, l.finished
	l.pending, l.last, l.finished = map[tally]*sums{}, map[string]lastSeen{}, nil
	l.mu.Unlock()
	pending := make(map[counter]int64, 4*len(tallies))
	who := map[counter][]byte{} // with Redis: who|user → the subject, sealed
	var named []tally           // the users whose who|user is written
	now := l.now()
	for t, n := range tallies {
		name := t.name
		if t.kind == 'u' && l.ring != nil {
			u := l.user(t.name, now)
			name = u.name
			if u.day != t.bucket {
				hash := l.bucketKey(t)
				who[counter{hash, "who|" + name}] = l.ring.seal([]byte(t.name), hash, name)
				named = append(named, t)
			}
		}
		l.counters(t, name, n, pending)
	}
	last := make(map[string]string, len(seen))
	for src, v := range seen {
		last[src] = strconv.Itoa(v.status) + " " + strconv.FormatInt(v.ms, 10)
	}
	if len(pending) == 0 && len(last) == 0 && len(finished) == 0 {
		return runErr
	}
	if l.mem != nil {
		l.mem.apply(l.now(), pending, last, finished, l.retention)
		return nil
	}
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		hashes := map[string]bool{}
		for c, n := range pending {
			p.HIncrBy(ctx, c.hash, c.field, n)
			hashes[c.hash] = true
		}
		// Whichever replica names a user first in a day keeps it: every replica
		// seals the same subject.
		for c, v := range who {
			p.HSetNX(ctx, c.hash, c.field, v)
		}
		for h := range hashes {
			p.Expire(ctx, h, l.retention(h))
		}
		if len(last) > 0 {
			vals := make([]any, 0, 2*len(last))
			for src, v := range last {
				vals = append(vals, src, v)
			}
			p.HSet(ctx, l.prefix+"usage:last", vals...)
		}
		return nil
	})
	if err == nil {
		for _, t := range named {
			if u, ok := l.users.m[t.name]; ok {
				u.day = t.bucket
				l.users.m[t.name] = u
			}
		}
	}
	return errors.Join(runErr, unavailable(err))
}

// SourceHour is one source's usage in one clock hour.
type SourceHour struct {
	Source     string
	Hour       time.Time // start of the hour, UTC
	Requests   int64
	Bytes      int64
	Rows       int64 // entities of the collections relayed, where they could be read
	UpstreamUS int64 // microseconds, summed over the requests
	Errors4xx  int64
	Errors5xx  int64
	Latency    [len(LatencyBounds) + 1]int64 // requests per LatencyBounds bucket
}

// P95 is the upper bound of the LatencyBounds bucket that holds the 95th percentile of
// upstream time, or -1 when it lies above the last bound; zero without requests.
func P95(latency [len(LatencyBounds) + 1]int64) time.Duration {
	var total int64
	for _, n := range latency {
		total += n
	}
	if total == 0 {
		return 0
	}
	want := (total*95 + 99) / 100
	var seen int64
	for i, n := range latency {
		seen += n
		if seen >= want {
			if i < len(LatencyBounds) {
				return LatencyBounds[i]
			}
			break
		}
	}
	return -1
}

// PartyDay is one user's or feed key's usage in one UTC day.
type PartyDay struct {
	Day      time.Time // start of the day, UTC
	ID       string    // the subject or the key ID
	Requests int64
	Bytes    int64
}

// LastStatus is the status of a source's last answer and when it was sent.
type LastStatus struct {
	Status int
	At     time.Time
}

// hashes reads the named hashes; a missing one is empty.
func (l *Ledger) hashes(ctx context.Context, names []string) ([]map[string]string, error) {
	if l.mem != nil {
		return l.mem.read(l.now(), names), nil
	}
	if l.err != nil {
		return nil, l.err
	}
	cmds := make([]*redis.MapStringStringCmd, len(names))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range names {
			cmds[i] = p.HGetAll(ctx, n)
		}
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]map[string]string, len(names))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// Hours returns every source's hourly usage from the hour of since to now, oldest first.
// Hours without requests are left out.
func (l *Ledger) Hours(ctx context.Context, since time.Time) ([]SourceHour, error) {
	first, last := since.Unix()/3600, l.now().Unix()/3600
	var names []string
	for h := first; h <= last; h++ {
		names = append(names, l.prefix+"usage:h:"+strconv.FormatInt(h, 10))
	}
	maps, err := l.hashes(ctx, names)
	if err != nil {
		return nil, err
	}
	var out []SourceHour
	for i, m := range maps {
		by := map[string]*SourceHour{}
		for f, v := range m {
			metric, src, ok := strings.Cut(f, "|")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			sh := by[src]
			if sh == nil {
				sh = &SourceHour{Source: src, Hour: time.Unix((first+int64(i))*3600, 0).UTC()}
				by[src] = sh
			}
			switch metric {
			case "req":
				sh.Requests = n
			case "bytes":
				sh.Bytes = n
			case "rows":
				sh.Rows = n
			case "us":
				sh.UpstreamUS = n
			case "e4":
				sh.Errors4xx = n
			case "e5":
				sh.Errors5xx = n
			default:
				if b, err := strconv.Atoi(strings.TrimPrefix(metric, "t")); err == nil && strings.HasPrefix(metric, "t") && b >= 0 && b <= len(LatencyBounds) {
					sh.Latency[b] = n
				}
			}
		}
		hour := make([]SourceHour, 0, len(by))
		for _, sh := range by {
			hour = append(hour, *sh)
		}
		sort.Slice(hour, func(a, b int) bool { return hour[a].Source < hour[b].Source })
		out = append(out, hour...)
	}
	return out, nil
}

// Days returns the daily usage of users (keys false) or feed keys (keys true) from the
// day of since to today, oldest first.
func (l *Ledger) Days(ctx context.Context, since time.Time, keys bool) ([]PartyDay, error) {
	kind := "usage:u:"
	if keys {
		kind = "usage:k:"
	}
	first, last := since.Unix()/86400, l.now().Unix()/86400
	var names []string
	for d := first; d <= last; d++ {
		names = append(names, l.prefix+kind+strconv.FormatInt(d, 10))
	}
	maps, err := l.hashes(ctx, names)
	if err != nil {
		return nil, err
	}
	var out []PartyDay
	for i, m := range maps {
		by := map[string]*PartyDay{}
		who := map[string]string{} // user name → subject
		for f, v := range m {
			metric, id, ok := strings.Cut(f, "|")
			if !ok || metric == "who" {
				continue
			}
			if !keys {
				id = l.subject(m, names[i], id, who)
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			pd := by[id]
			if pd == nil {
				pd = &PartyDay{ID: id, Day: time.Unix((first+int64(i))*86400, 0).UTC()}
				by[id] = pd
			}
			// Summed: one subject has two names on the day of a key rotation, and a
			// name and itself in clear on the day of the upgrade to sealing.
			switch metric {
			case "req":
				pd.Requests += n
			case "bytes":
				pd.Bytes += n
			}
		}
		day := make([]PartyDay, 0, len(by))
		for _, pd := range by {
			day = append(day, *pd)
		}
		sort.Slice(day, func(a, b int) bool { return day[a].ID < day[b].ID })
		out = append(out, day...)
	}
	return out, nil
}

// subject returns the subject of the user field id of the day hash m, kept under key:
// the subject sealed in who|id, or id itself when there is none (what the release before
// sealing wrote) or it does not open (sealed under a key no longer configured). seen
// remembers the answers for m.
func (l *Ledger) subject(m map[string]string, key, id string, seen map[string]string) string {
	if s, ok := seen[id]; ok {
		return s
	}
	s := id
	if sealed, ok := m["who|"+id]; ok && l.ring != nil {
		if plain, err := l.ring.open([]byte(sealed), key, id); err == nil {
			s = string(plain)
		}
	}
	seen[id] = s
	return s
}

// Last returns the last answer's status per source.
func (l *Ledger) Last(ctx context.Context) (map[string]LastStatus, error) {
	maps, err := l.hashes(ctx, []string{l.prefix + "usage:last"})
	if err != nil {
		return nil, err
	}
	out := map[string]LastStatus{}
	for src, v := range maps[0] {
		st, at, _ := strings.Cut(v, " ")
		code, _ := strconv.Atoi(st)
		ms, _ := strconv.ParseInt(at, 10, 64)
		out[src] = LastStatus{Status: code, At: time.UnixMilli(ms).UTC()}
	}
	return out, nil
}

// Series counts the usage fields kept for the current hour and day: the cardinality a
// flood of requests can add.
func (l *Ledger) Series(ctx context.Context) (int, error) {
	now := l.now()
	names := []string{
		l.prefix + "usage:h:" + strconv.FormatInt(now.Unix()/3600, 10),
		l.prefix + "usage:u:" + strconv.FormatInt(now.Unix()/86400, 10),
		l.prefix + "usage:k:" + strconv.FormatInt(now.Unix()/86400, 10),
	}
	maps, err := l.hashes(ctx, names)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range maps {
		n += len(m)
	}
	return n, nil
}

// memLedger is the in-memory form of the ledger's Redis keys, with the same retention.
type memLedger struct {
	mu      sync.Mutex
	hashes  map[string]*memHash
	history map[string][]RefreshRun // per source, newest first
	audit   []Event                 // newest last; at most AuditLen
	flags   map[string]time.Time    // First markers and their expiry
}

type memHash struct {
	fields map[string]int64
	raw    map[string]string // usage:last
	exp    time.Time
}

func newMemLedger() *memLedger {
	return &memLedger{hashes: map[string]*memHash{}, history: map[string][]RefreshRun{}, flags: map[string]time.Time{}}
}

func (m *memLedger) apply(now time.Time, pending map[counter]int64, last map[string]string, finished []RefreshRun, retention func(string) time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, h := range m.hashes {
		if !h.exp.IsZero() && !now.Before(h.exp) {
			delete(m.hashes, name)
		}
	}
	for c, n := range pending {
		h := m.hashes[c.hash]
		if h == nil {
			h = &memHash{fields: map[string]int64{}}
			m.hashes[c.hash] = h
		}
		h.fields[c.field] += n
		h.exp = now.Add(retention(c.hash))
	}
	for src, v := range last {
		h := m.hashes["last"]
		if h == nil {
			h = &memHash{raw: map[string]string{}}
			m.hashes["last"] = h
		}
		h.raw[src] = v
	}
	for _, r := range finished {
		// Oldest first, appended: a refresh costs no copy of the history,
		// and the oldest half goes only when twice the bound is reached.
		hist := append(m.history[r.Source], r)
		if len(hist) >= 2*RefreshHistoryLen {
			hist = append([]RefreshRun(nil), hist[len(hist)-RefreshHistoryLen:]...)
		}
		m.history[r.Source] = hist
	}
}

func (m *memLedger) read(now time.Time, names []string) []map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]map[string]string, len(names))
	for i, name := range names {
		out[i] = map[string]string{}
		if strings.HasSuffix(name, "usage:last") {
			name = "last"
		}
		h := m.hashes[name]
		if h == nil || (!h.exp.IsZero() && !now.Before(h.exp)) {
			continue
		}
		for f, v := range h.fields {
			out[i][f] = strconv.FormatInt(v, 10)
		}
		for f, v := range h.raw {
			out[i][f] = v
		}
	}
	return out
}

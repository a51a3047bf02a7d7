package tokencache

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// A refresh is one caller paging through one entity set: from a first page (a request
// without $skip or $skiptoken; repeats of it before the second page count once) through
// the following pages (requests with either) until a page without a next link
// (complete), an error answer (error, with its status), or a pause longer than the gap
// (abandoned). Finished refreshes are kept per source, the last RefreshHistoryLen.
//
// With Redis, the refreshes in progress are kept in the store, so a refresh whose pages
// a load balancer spreads over several replicas is followed as one:
//
//	{prefix}{runs}       hash: caller and entity set → the refresh so far (sealed JSON)
//	{prefix}{runs}:last  sorted set: the same fields, scored by the last page's unix ms
//
// Each replica applies its pages as they are served (not with the once-a-second
// counters; a busy replica batches those of pageBatch), by reading the run and writing
// it back only if no other replica changed it meanwhile. Runs that paused are ended by
// the once-a-second flush of whichever replica looks first. One decision, step, applies a page in memory and in Redis alike.
//
// The caller is a subject, so a field is the HMAC of source, subject and entity set under
// the newest key (runField), and the run is sealed, bound to the hash and the field. A
// key rotation thus renames the runs in progress: pages after it start a new run, and
// the one under the old name, which no page reaches any more, ends as abandoned once it
// paused longer than the gap, as any other would. The same holds for a run the release
// before sealing left in clear (its field holds the subject), which is still read and
// ended. A finished refresh is sealed in the history, bound to the source's list.

// Outcomes of a refresh.
const (
	RefreshComplete  = "complete"  // a page came without a next link
	RefreshAbandoned = "abandoned" // the caller paused longer than the gap after a page with a next link
	RefreshError     = "error"     // a page was answered with an error status
	RefreshEnded     = "ended"     // the caller paused after a page that could not be read, so whether it had a next link is unknown
)

// Page is one relayed page of an entity set.
type Page struct {
	Source, Subject, EntitySet string
	Following                  bool          // the request carried $skip or $skiptoken
	More                       int           // 1: the page had a next link; 0: it had none; -1: unknown
	Rows                       int64         // entities on the page; -1: not counted
	Status                     int           // the answer's status
	Bytes                      int64         // response body bytes
	Duration                   time.Duration // time to serve the page
}

// RefreshRun is one finished refresh.
type RefreshRun struct {
	Source    string        `json:"source"`
	Subject   string        `json:"subject"`
	EntitySet string        `json:"entity_set"`
	Start     time.Time     `json:"start"`
	End       time.Time     `json:"end"`
	Pages     int           `json:"pages"`
	Rows      int64         `json:"rows"` // -1 when a page's rows were not counted
	Bytes     int64         `json:"bytes"`
	Duration  time.Duration `json:"duration_ns"`
	Outcome   string        `json:"outcome"`
	Status    int           `json:"status,omitempty"` // the error answer's status
}

// run is a refresh in progress, as the store keeps it.
type run struct {
	RefreshRun
	Last      time.Time `json:"last"`
	Unknown   bool      `json:"unknown,omitempty"`   // the last page's next link could not be seen
	Following bool      `json:"following,omitempty"` // a following page was asked for
}

// runKey names the refresh of one caller through one entity set.
type runKey struct{ source, subject, set string }

func (k runKey) field() string { return k.source + "\x1f" + k.subject + "\x1f" + k.set }

// runField names the run of k in {prefix}{runs}: an HMAC under the newest key, apart from
// every other name the keyring gives (the label).
func (l *Ledger) runField(k runKey) string {
	return l.ring.name(0, "", "ledger run\x00"+k.field())
}

// pageAt is a page and when it was served, waiting to be applied in Redis.
type pageAt struct {
	Page
	at time.Time
}

const (
	// maxRuns bounds the refreshes followed at once.
	maxRuns = 10000
	// maxQueuedPages bounds the pages waiting to be applied in Redis; past it, pages
	// are left out of the history until the store answers again.
	maxQueuedPages = 10000
	// pageBatch is the least time between two writes of pages in Redis: the pages one
	// replica serves meanwhile are applied together.
	pageBatch = 20 * time.Millisecond
	// casAttempts is how often a replica tries to write a run other replicas keep
	// changing; between tries it waits a random while that doubles each time.
	casAttempts = 10
)

// step applies p, served at now, to the refresh r (nil: none in progress). It returns the
// refresh left in progress (nil: none) and the refreshes p ended.
func (l *Ledger) step(r *run, p Page, now time.Time) (*run, []RefreshRun) {
	var ended []RefreshRun
	repeat := r != nil && !p.Following && !r.Following && now.Sub(r.Last) <= l.gap
	if r != nil && !repeat && (now.Sub(r.Last) > l.gap || !p.Following) {
		// A pause, or the first page again after others: the earlier run stopped short.
		ended = append(ended, r.stop(r.Last))
		r = nil
	}
	if r == nil {
		r = &run{RefreshRun: RefreshRun{Source: p.Source, Subject: p.Subject, EntitySet: p.EntitySet, Start: now.Add(-p.Duration)}}
	}
	if !repeat {
		// Power Query asks for a first page more than once before it pages on.
		r.Pages++
		switch {
		case p.Rows < 0:
			r.Rows = -1 // one page not counted: the refresh's rows are not known
		case r.Rows >= 0:
			r.Rows += p.Rows
		}
	}
	r.Following = r.Following || p.Following
	r.Bytes += p.Bytes
	if now.After(r.Last) {
		r.Last = now // a page another replica applied late does not move it back
	}
	r.Unknown = p.More < 0
	switch {
	case p.Status >= 400:
		r.Outcome, r.Status = RefreshError, p.Status
		return nil, append(ended, r.end(now))
	case p.More == 0:
		r.Outcome = RefreshComplete
		return nil, append(ended, r.end(now))
	}
	return r, ended
}

// stop ends a run that stopped without a last page.
func (r *run) stop(at time.Time) RefreshRun {
	r.Outcome = RefreshAbandoned
	if r.Unknown {
		r.Outcome = RefreshEnded
	}
	return r.end(at)
}

func (r *run) end(at time.Time) RefreshRun {
	r.End = at.UTC()
	r.Start = r.Start.UTC()
	r.Duration = at.Sub(r.Start)
	return r.RefreshRun
}

// stale reports whether r paused longer than the gap by now.
func (l *Ledger) stale(r *run, now time.Time) bool { return now.Sub(r.Last) > l.gap }

// Page follows the refresh p belongs to. It never does I/O: in memory the refresh is
// followed at once; with Redis the page is applied in the store by the ledger's writer,
// within pageBatch, and finished refreshes are written to the history.
func (l *Ledger) Page(p Page) {
	if l.err != nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rdb != nil {
		if len(l.queued) >= maxQueuedPages {
			l.dropped++
			return
		}
		l.queued = append(l.queued, pageAt{p, now})
		select {
		case l.kick <- struct{}{}:
		default:
		}
		return
	}
	k := runKey{p.Source, p.Subject, p.EntitySet}
	r := l.runs[k]
	open, ended := l.step(r, p, now)
	l.finished = append(l.finished, ended...)
	switch {
	case open == nil:
		delete(l.runs, k)
	case r != nil || len(l.runs) < maxRuns:
		l.runs[k] = open
	}
}

// sweepRuns ends the runs in memory that paused longer than the gap; the caller holds mu.
func (l *Ledger) sweepRuns(now time.Time) {
	for k, r := range l.runs {
		if l.stale(r, now) {
			l.finished = append(l.finished, r.stop(r.Last))
			delete(l.runs, k)
		}
	}
}

func (l *Ledger) runsKey() string     { return l.prefix + "{runs}" }
func (l *Ledger) runsLastKey() string { return l.prefix + "{runs}:last" }

// runCASScript replaces a run in progress if it is still the one read. KEYS[1]: the runs;
// KEYS[2]: their last-page times. ARGV[1]: the field; ARGV[2]: the value read ("": none);
// ARGV[3]: the new value ("": ended); ARGV[4]: its last page, unix ms; ARGV[5]: the most
// runs kept. Returns 1 when written, 0 when another replica changed it first, 2 when a
// new run found no room.
var runCASScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if cur ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
if cur == '' and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return 2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1`)

// runChange is the writing back of one run after its pages or a pause were applied.
type runChange struct {
	field    string
	old, new string // as stored (sealed; JSON from the release before); "": none
	last     time.Time
	ended    []RefreshRun
}

// applyPages applies queued pages in Redis and, with sweep, ends the runs that paused.
// It returns the refreshes that ended; pages it could not apply are lost with the error.
func (l *Ledger) applyPages(ctx context.Context, pages []pageAt, now time.Time, sweep bool) ([]RefreshRun, error) {
	byField := map[string][]pageAt{}
	var order []string
	for _, p := range pages {
		f := l.runField(runKey{p.Source, p.Subject, p.EntitySet})
		if byField[f] == nil {
			order = append(order, f)
		}
		byField[f] = append(byField[f], p)
	}
	// Runs whose last page is older than the gap end here, on whichever replica looks
	// first; the compare-and-set lets only one of them write the ending.
	var stale []string
	if sweep {
		var err error
		stale, err = l.rdb.ZRangeByScore(ctx, l.runsLastKey(), &redis.ZRangeBy{
			Min: "-inf", Max: "(" + strconv.FormatInt(now.Add(-l.gap).UnixMilli(), 10), Count: 1000,
		}).Result()
		if err != nil {
			return nil, unavailable(err)
		}
	}
	for _, f := range stale {
		if byField[f] == nil {
			order = append(order, f)
			byField[f] = []pageAt{}
		}
	}
	var ended []RefreshRun
	for attempt := 0; len(order) > 0 && attempt < casAttempts; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ended, unavailable(ctx.Err())
			case <-time.After(time.Duration(rand.Int64N(int64(time.Millisecond) << attempt))):
			}
		}
		reads := make([]*redis.StringCmd, len(order))
		if _, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, f := range order {
				reads[i] = p.HGet(ctx, l.runsKey(), f)
			}
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			return ended, unavailable(err)
		}
		changes := make([]runChange, len(order))
		for i, f := range order {
			changes[i] = l.change(f, reads[i].Val(), byField[f], now)
		}
		writes := make([]*redis.Cmd, len(changes))
		if _, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range changes {
				if c.old == c.new {
					continue
				}
				// Eval, not EvalSha: a pipeline cannot fall back on NOSCRIPT, and pages
				// are few beside the requests they carry.
				writes[i] = runCASScript.Eval(ctx, p, []string{l.runsKey(), l.runsLastKey()}, c.field, c.old, c.new, c.last.UnixMilli(), maxRuns)
			}
			return nil
		}); err != nil {
			return ended, unavailable(err)
		}
		order = order[:0]
		for i, c := range changes {
			n := int64(1)
			if writes[i] != nil {
				n, _ = writes[i].Int64()
			}
			if n == 0 {
				order = append(order, c.field) // another replica wrote it first: again
				continue
			}
			ended = append(ended, c.ended...) // 2: no room for a new run, which is not followed

		}
	}
	if len(order) > 0 {
		l.log.Warn("tokencache: refreshes changed by other replicas faster than they could be applied; their pages are left out", "refreshes", len(order))
	}
	return ended, nil
}

// change applies pages to the run stored as old ("" for none) and ends it if it paused
// longer than the gap by now.
func (l *Ledger) change(field, old string, pages []pageAt, now time.Time) runChange {
	c := runChange{field: field, old: old}
	var r *run
	if old != "" {
		r = new(run)
		raw, ok := l.openRecord([]byte(old), l.runsKey(), field)
		if !ok || json.Unmarshal(raw, r) != nil {
			r = nil // unreadable: a new run replaces it
		}
	}
	if r != nil && len(pages) == 0 && !l.stale(r, now) {
		c.new = old // another replica moved it on since it was found paused: as it is
		return c
	}
	for _, p := range pages {
		var e []RefreshRun
		r, e = l.step(r, p.Page, p.at)
		c.ended = append(c.ended, e...)
	}
	if r != nil && l.stale(r, now) {
		c.ended = append(c.ended, r.stop(r.Last))
		r = nil
	}
	if r != nil {
		raw, _ := json.Marshal(r)
		c.new, c.last = string(l.ring.seal(raw, l.runsKey(), field)), r.Last
	}
	return c
}

func (l *Ledger) historyKey(source string) string { return l.prefix + "refreshes:" + source }

// Refreshes returns a source's finished refreshes, newest first.
func (l *Ledger) Refreshes(ctx context.Context, source string) ([]RefreshRun, error) {
	if l.mem != nil {
		l.mem.mu.Lock()
		defer l.mem.mu.Unlock()
		hist := l.mem.history[source]
		hist = hist[max(0, len(hist)-RefreshHistoryLen):]
		out := make([]RefreshRun, len(hist))
		for i, r := range hist {
			out[len(hist)-1-i] = r // newest first
		}
		return out, nil
	}
	if l.err != nil {
		return nil, l.err
	}
	key := l.historyKey(source)
	stored, err := l.rdb.LRange(ctx, key, 0, RefreshHistoryLen-1).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]RefreshRun, 0, len(stored))
	for _, s := range stored {
		raw, ok := l.openRecord([]byte(s), key, "")
		var r RefreshRun
		if ok && json.Unmarshal(raw, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// writeRuns applies the queued pages in Redis and writes the refreshes that ended to
// their sources' histories; with sweep it also ends the runs that paused. The caller
// holds flushMu.
func (l *Ledger) writeRuns(ctx context.Context, sweep bool) error {
	if l.rdb == nil {
		return nil
	}
	l.mu.Lock()
	queued, dropped := l.queued, l.dropped
	l.queued, l.dropped = nil, 0
	l.mu.Unlock()
	if dropped > 0 {
		l.log.Warn("tokencache: the store fell behind; pages left out of the refresh history", "pages", dropped)
	}
	if len(queued) == 0 && !sweep {
		return nil
	}
	ended, err := l.applyPages(ctx, queued, l.now(), sweep)
	if len(ended) == 0 {
		return err
	}
	_, perr := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range ended {
			raw, _ := json.Marshal(r)
			k := l.historyKey(r.Source)
			p.LPush(ctx, k, l.ring.seal(raw, k, ""))
			p.LTrim(ctx, k, 0, RefreshHistoryLen-1)
		}
		return nil
	})
	return errors.Join(err, unavailable(perr))
}

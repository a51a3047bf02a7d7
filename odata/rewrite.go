package odata

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"sync"
)

// outBufSize is the size of the Rewriter's pooled output buffer: large enough that
// one upstream read (copyBufSize) leaves the Rewriter as one write downstream, even with
// its links made longer.
const outBufSize = 2 * copyBufSize

var outBufPool = sync.Pool{New: func() any { b := make([]byte, 0, outBufSize); return &b }}

// Rewriter is a streaming writer that replaces every occurrence of a set of base URLs
// with one public base, in both the plain and the JSON `\/`-escaped spelling.
//
// Matching is leftmost first and, among bases starting at the same byte, longest first.
// The output equals what a replacement over the whole stream would give, however the
// input is split into writes: a tail that could still begin a base is held back (at most
// one base length) until the next Write or Close. Every other byte is copied unchanged.
type Rewriter struct {
	dst  io.Writer
	pats []pattern // longest first
	// groups index pats by anchor: the longest prefix shared by all patterns with the
	// same first byte. One bytes.Index scan per anchor finds every candidate, so a feed
	// with one URL scheme costs one scan whatever the number of bases.
	groups []group
	maxLen int
	first  [256]uint16 // 1 + index of the group whose bases start with the byte; 0 for none

	// With one group, the scan looks for '/' instead of the anchor when every base
	// holds one: a base's first '/' sits at an offset in [slashMin, slashMax] (5 and
	// 6 for http:// and http:\/), and bytes.IndexByte for a byte that JSON feeds
	// hardly use runs about four times as fast as bytes.Index for "http:", whose
	// first byte is common in text. In a feed dense with '/' (Atom XML) the scan
	// switches back to the anchor for the rest of the stream.
	slash              bool
	slashMin, slashMax int
	dense              bool // '/' proved common in this stream
	misses             int  // '/' found outside a base in the current scan

	pend []byte  // held-back tail, len < maxLen
	outp *[]byte // pooled output buffer, between begin and end
	out  []byte  // *outp, as filled so far
	err  error
}

type pattern struct {
	from, to []byte
}

type group struct {
	anchor []byte
	pats   []int // indexes into pats, longest first
	next   int   // cached next anchor position in the current scan; -1 unknown
}

// NewRewriter returns a streaming writer that replaces every base in from (plain and
// \/-escaped) with to, writing to dst; call Close (or Flush at a safe end) to emit the tail.
func NewRewriter(dst io.Writer, from []string, to string) *Rewriter {
	rw := &Rewriter{dst: dst}
	seen := map[string]bool{}
	add := func(f, t string) {
		if f == "" || seen[f] || f == t {
			return
		}
		seen[f] = true
		rw.pats = append(rw.pats, pattern{from: []byte(f), to: []byte(t)})
	}
	escTo := strings.ReplaceAll(to, "/", `\/`)
	for _, f := range from {
		add(f, to)
		if strings.Contains(f, "/") {
			add(strings.ReplaceAll(f, "/", `\/`), escTo)
		}
	}
	slices.SortStableFunc(rw.pats, func(a, b pattern) int { return len(b.from) - len(a.from) })
	for i, p := range rw.pats {
		rw.maxLen = max(rw.maxLen, len(p.from))
		g := slices.IndexFunc(rw.groups, func(g group) bool { return g.anchor[0] == p.from[0] })
		if g < 0 {
			rw.groups = append(rw.groups, group{anchor: p.from})
			g = len(rw.groups) - 1
		}
		gr := &rw.groups[g]
		gr.anchor = gr.anchor[:commonPrefix(gr.anchor, p.from)]
		gr.pats = append(gr.pats, i)
		rw.first[p.from[0]] = uint16(g + 1)
	}
	rw.pend = make([]byte, 0, 2*rw.maxLen)
	rw.slash = len(rw.groups) == 1
	rw.slashMin = rw.maxLen
	for _, p := range rw.pats {
		k := bytes.IndexByte(p.from, '/')
		if k < 0 {
			rw.slash = false
			break
		}
		rw.slashMin, rw.slashMax = min(rw.slashMin, k), max(rw.slashMax, k)
	}
	return rw
}

// clone returns a fresh Rewriter with the same bases writing to dst; the patterns are
// shared, since no Rewriter modifies them.
func (rw *Rewriter) clone(dst io.Writer) *Rewriter {
	c := &Rewriter{dst: dst, pats: rw.pats, groups: slices.Clone(rw.groups), maxLen: rw.maxLen, first: rw.first,
		slash: rw.slash, slashMin: rw.slashMin, slashMax: rw.slashMax}
	c.pend = make([]byte, 0, 2*rw.maxLen)
	return c
}

// getRewriter returns an idle Rewriter of the source's bases writing to dst.
func (st *sourceState) getRewriter(dst io.Writer) *Rewriter {
	if rw, ok := st.rewriters.Get().(*Rewriter); ok {
		rw.dst = dst
		return rw
	}
	return st.rewriter.clone(dst)
}

// putRewriter makes rw idle again, whatever state its stream ended in.
func (st *sourceState) putRewriter(rw *Rewriter) {
	if rw.outp != nil { // only a panic between begin and end leaves one
		return
	}
	rw.dst, rw.err, rw.dense = nil, nil, false
	rw.pend = rw.pend[:0]
	st.rewriters.Put(rw)
}

func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// Write rewrites p and writes the settled part of the result to the destination.
func (rw *Rewriter) Write(p []byte) (int, error) {
	if rw.err != nil {
		return 0, rw.err
	}
	if len(rw.pats) == 0 {
		return rw.passthrough(p)
	}
	rw.begin()
	n := len(p)
	if len(rw.pend) > 0 {
		if len(rw.pend)+len(p) <= cap(rw.pend) {
			// Small write: join it to the tail and settle what can be settled.
			rw.pend = append(rw.pend, p...)
			c := rw.scan(rw.pend, len(rw.pend), false)
			rw.pend = rw.pend[:copy(rw.pend, rw.pend[c:])]
			return n, rw.end()
		}
		// Resolve every base that starts in the tail: it ends at most maxLen-1 bytes into p.
		lp := len(rw.pend)
		joint := append(rw.pend, p[:rw.maxLen-1]...)
		c := rw.scan(joint, lp, false)
		rw.pend = rw.pend[:0]
		p = p[c-lp:]
	}
	c := rw.scan(p, len(p), false)
	rw.pend = append(rw.pend, p[c:]...)
	return n, rw.end()
}

// Flush writes out everything written so far, treating the current tail as final, and
// flushes the destination when it can. Use it only where the stream may end.
func (rw *Rewriter) Flush() error {
	if rw.err != nil {
		return rw.err
	}
	if len(rw.pend) > 0 {
		rw.begin()
		rw.scan(rw.pend, len(rw.pend), true)
		rw.pend = rw.pend[:0]
		if err := rw.end(); err != nil {
			return err
		}
	}
	if f, ok := rw.dst.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

// Close writes the held-back tail; it does not close the destination.
func (rw *Rewriter) Close() error {
	if rw.err != nil {
		return rw.err
	}
	if len(rw.pend) > 0 {
		rw.begin()
		rw.scan(rw.pend, len(rw.pend), true)
		rw.pend = rw.pend[:0]
		return rw.end()
	}
	return nil
}

func (rw *Rewriter) passthrough(p []byte) (int, error) {
	n, err := rw.dst.Write(p)
	if err != nil {
		rw.err = err
	}
	return n, err
}

func (rw *Rewriter) begin() {
	if rw.outp == nil {
		rw.outp = outBufPool.Get().(*[]byte)
		rw.out = (*rw.outp)[:0]
	}
}

// end writes the output buffer downstream and returns it to the pool, so an idle
// Rewriter holds no more than its tail.
func (rw *Rewriter) end() error {
	if rw.outp == nil {
		return rw.err
	}
	if len(rw.out) > 0 && rw.err == nil {
		if _, err := rw.dst.Write(rw.out); err != nil {
			rw.err = err
		}
	}
	*rw.outp = rw.out[:0]
	outBufPool.Put(rw.outp)
	rw.outp, rw.out = nil, nil
	return rw.err
}

// directWrite is the segment length from which emit writes a segment straight through
// instead of copying it: a feed with few links then costs a scan and no copy, while dense
// links still leave as one write per upstream read.
const directWrite = 16 << 10

// emit appends b to the output buffer; the common case is small enough to inline.
func (rw *Rewriter) emit(b []byte) {
	if len(b) < directWrite && len(rw.out)+len(b) <= cap(rw.out) {
		rw.out = append(rw.out, b...)
		return
	}
	rw.emitSlow(b)
}

func (rw *Rewriter) emitSlow(b []byte) {
	if rw.err != nil {
		return
	}
	if len(rw.out) > 0 {
		if _, err := rw.dst.Write(rw.out); err != nil {
			rw.err = err
			return
		}
		rw.out = rw.out[:0]
	}
	if len(b) >= directWrite {
		if _, err := rw.dst.Write(b); err != nil {
			rw.err = err
		}
		return
	}
	rw.out = append(rw.out, b...)
}

// scan emits data[:c] rewritten and returns c. Only bases starting before limit are
// replaced. With final, everything is settled. With limit < len(data) (the joint of a
// held tail and the next write), c >= limit. Otherwise c stops before the shortest tail
// that could still begin a base.
func (rw *Rewriter) scan(data []byte, limit int, final bool) int {
	for g := range rw.groups {
		rw.groups[g].next = -1
	}
	rw.misses = 0
	defer func() {
		// More than one stray '/' per 128 bytes costs more than the anchor scan.
		if rw.misses*128 > len(data) && len(data) >= 4<<10 {
			rw.dense = true
		}
	}()
	joint := limit < len(data)
	if !joint && !final {
		limit = rw.tailStart(data, 0)
	}
	i := 0
	for {
		j, pi := rw.find(data, i, limit)
		if j < 0 {
			break
		}
		rw.emit(data[i:j])
		rw.emit(rw.pats[pi].to)
		i = j + len(rw.pats[pi].from)
	}
	switch {
	case final:
		rw.emit(data[i:])
		return len(data)
	case joint:
		if i < limit {
			rw.emit(data[i:limit])
			i = limit
		}
		return i
	case i <= limit:
		rw.emit(data[i:limit])
		return limit
	default:
		// A base ran past the tail found up front: find the tail again after it.
		t := rw.tailStart(data, i)
		rw.emit(data[i:t])
		return t
	}
}

// tailStart returns the smallest s >= from such that data[s:] is a proper, non-empty
// prefix of some base, or len(data).
func (rw *Rewriter) tailStart(data []byte, from int) int {
	for s := max(from, len(data)-rw.maxLen+1); s < len(data); s++ {
		g := rw.groupOf(data[s])
		if g == nil {
			continue
		}
		rest := data[s:]
		for _, pi := range g.pats {
			f := rw.pats[pi].from
			if len(rest) < len(f) && bytes.HasPrefix(f, rest) {
				return s
			}
		}
	}
	return len(data)
}

func (rw *Rewriter) groupOf(c byte) *group {
	if g := rw.first[c]; g > 0 {
		return &rw.groups[g-1]
	}
	return nil
}

// find returns the leftmost base starting in [i, limit) and complete in data, longest
// first at equal starts, as (start, pattern index), or (-1, -1).
func (rw *Rewriter) find(data []byte, i, limit int) (int, int) {
	if len(rw.groups) == 1 {
		if rw.slash && !rw.dense {
			return rw.findSlash(data, i, limit)
		}
		// The usual case, every base spelled http(s)://…: one anchor, no positions to cache.
		g := &rw.groups[0]
		for i < limit {
			k := bytes.Index(data[i:], g.anchor)
			if k < 0 || i+k >= limit {
				return -1, -1
			}
			j := i + k
			if pi := rw.matchAt(data[j:], g); pi >= 0 {
				return j, pi
			}
			i = j + 1
		}
		return -1, -1
	}
	for {
		best, bg := -1, -1
		for gi := range rw.groups {
			g := &rw.groups[gi]
			if g.next < i && g.next != len(data) {
				if k := bytes.Index(data[i:], g.anchor); k >= 0 {
					g.next = i + k
				} else {
					g.next = len(data)
				}
			}
			if g.next < limit && (best < 0 || g.next < best) {
				best, bg = g.next, gi
			}
		}
		if best < 0 {
			return -1, -1
		}
		if pi := rw.matchAt(data[best:], &rw.groups[bg]); pi >= 0 {
			return best, pi
		}
		// An anchor that starts no base: look again after it. The other groups keep
		// their cached positions, which are >= i or exhausted.
		rw.groups[bg].next = -1
		i = best + 1
		if i >= limit {
			return -1, -1
		}
	}
}

// findSlash is find for one group by the bases' first '/': a base starting at s has it
// at s+k, k in [slashMin, slashMax]. Every '/' at j is visited in order, and the starts
// in [j-slashMax, j-slashMin] are tried in order, so the first base found is the
// leftmost: one starting earlier would have its '/' in an earlier window, or in this one.
func (rw *Rewriter) findSlash(data []byte, i, limit int) (int, int) {
	g := &rw.groups[0]
	for from := i + rw.slashMin; from < len(data); {
		k := bytes.IndexByte(data[from:], '/')
		if k < 0 {
			return -1, -1
		}
		j := from + k
		if j-rw.slashMax >= limit {
			return -1, -1
		}
		a0 := g.anchor[0]
		for s := max(i, j-rw.slashMax); s <= j-rw.slashMin && s < limit; s++ {
			if data[s] != a0 {
				continue
			}
			if pi := rw.matchAt(data[s:], g); pi >= 0 {
				return s, pi
			}
		}
		rw.misses++
		from = j + 1
	}
	return -1, -1
}

// matchAt returns the longest base of g that rest begins with, or -1.
func (rw *Rewriter) matchAt(rest []byte, g *group) int {
	for _, pi := range g.pats {
		f := rw.pats[pi].from
		if len(rest) >= len(f) && rest[len(f)-1] == f[len(f)-1] && string(rest[:len(f)]) == string(f) {
			return pi
		}
	}
	return -1
}

// replaceAll rewrites one whole value, such as a header, with the same rules.
func (rw *Rewriter) replaceAll(s string) string {
	if len(rw.pats) == 0 {
		return s
	}
	var b strings.Builder
	i := 0
	data := []byte(s)
	for j := range rw.groups {
		rw.groups[j].next = -1
	}
	for {
		j, pi := rw.find(data, i, len(data))
		if j < 0 {
			break
		}
		b.Write(data[i:j])
		b.Write(rw.pats[pi].to)
		i = j + len(rw.pats[pi].from)
	}
	if i == 0 {
		return s
	}
	b.Write(data[i:])
	return b.String()
}

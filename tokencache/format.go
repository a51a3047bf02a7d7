package tokencache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Store formats. Replicas that share a Redis may run different releases during an
// upgrade, so a replica writes only what every release still running reads. The
// operator says which releases may still run by raising the minimum format, the integer
// under Prefix + "format" (bridge:format):
//
//	redis-cli SET bridge:format 3
//
// or Store.RaiseFormat. Until it is raised (no key reads as FormatListIndex) a replica
// writes the oldest form: every value as valueV1 and the subject index both as the
// sorted set and as the sealed list the releases before the set read. It reads every
// form at every format.
//
// Every sealed value carries its version (crypto.go). Three kinds of keys hold nothing
// sealed and no version: this key, the rate-limit counters (decimal integers that live
// two minutes) and a session's lookups set (key names, which no older release reads).
const (
	// FormatListIndex: releases that keep the subject index only as one sealed list
	// (bridge:sub:) may run. The list is kept beside the set.
	FormatListIndex = 1
	// FormatSetIndex: every replica reads the sorted-set index; values are still
	// written in the layout without their own version check.
	FormatSetIndex = 2
	// FormatVersioned: every replica runs this release or a later one; every value is
	// written as valueV3, whose version is bound into its additional data.
	FormatVersioned = 3
	// CurrentFormat is the newest format this release reads and writes.
	CurrentFormat = FormatVersioned
)

// formatCheck is how often a replica re-reads the minimum format; a raise takes effect
// on every replica within it.
const formatCheck = 10 * time.Second

func (s *Store) formatKey() string { return s.prefix + "format" }

// minFormat returns the minimum format in force, re-reading it when the last read is
// older than formatCheck. A store of its own (memory) has no other replica, so it
// writes the newest format. A failed read keeps the last value for formatCheck; before
// the first successful read that is FormatListIndex, which every release reads.
func (s *Store) minFormat(ctx context.Context) int {
	if !s.shared {
		return CurrentFormat
	}
	if time.Since(time.Unix(0, s.formatAt.Load())) >= formatCheck && s.formatMu.TryLock() {
		defer s.formatMu.Unlock()
		if _, err := s.readFormat(ctx); err != nil {
			// Not again before formatCheck: while Redis is down every request would
			// try and log it.
			s.formatAt.Store(time.Now().UnixNano())
			s.log.Warn("tokencache: reading the minimum store format failed; keeping the last one", "format", s.format.Load(), "err", err)
		}
	}
	return int(s.format.Load())
}

// readFormat reads the minimum format from the store and applies it.
func (s *Store) readFormat(ctx context.Context) (int, error) {
	raw, err := s.b.get(ctx, s.formatKey())
	f := FormatListIndex
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return int(s.format.Load()), err
	default:
		n, perr := strconv.Atoi(string(raw))
		if perr != nil || n < FormatListIndex {
			return int(s.format.Load()), fmt.Errorf("tokencache: %s holds %q, not a store format", s.formatKey(), raw)
		}
		f = n
	}
	s.applyFormat(f)
	return f, nil
}

// applyFormat makes f the format this replica writes. A format newer than this
// release's is written as the newest this release knows: the operator raised it for a
// later release, which reads this one's.
func (s *Store) applyFormat(f int) {
	s.format.Store(int32(f))
	s.formatAt.Store(time.Now().UnixNano())
	if f >= FormatVersioned {
		s.ring.write.Store(uint32(valueV3))
	} else {
		s.ring.write.Store(uint32(valueV1))
	}
}

// Format reads the minimum store format now (see FormatListIndex) and applies it to
// this replica's writes at once. A store without Redis reports CurrentFormat.
func (s *Store) Format(ctx context.Context) (int, error) {
	if !s.shared {
		return CurrentFormat, nil
	}
	return s.readFormat(ctx)
}

// RaiseFormat raises the minimum store format to f, once no replica of a release that
// cannot read format f runs any more; it never lowers it. Other replicas follow within
// ten seconds. To go back to an older release, lower bridge:format with redis-cli
// first and start the older release ten seconds later; what was written at the higher
// format meanwhile is unreadable to it.
func (s *Store) RaiseFormat(ctx context.Context, f int) error {
	if f < FormatListIndex || f > CurrentFormat {
		return fmt.Errorf("tokencache: format %d: this release knows %d to %d", f, FormatListIndex, CurrentFormat)
	}
	if !s.shared {
		return nil
	}
	got, err := s.b.raise(ctx, s.formatKey(), int64(f))
	if err != nil {
		return err
	}
	s.applyFormat(int(got))
	return nil
}

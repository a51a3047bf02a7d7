package connector

import (
	"context"
	"sync"
	"time"

	"github.com/odata-bridge/bridge/odata"
)

// kindVersion is the token store's kind of learned OData versions, so every
// replica and the next start know a source's version before reading it.
const kindVersion = "odata-version"

// versionTTL keeps a learned version for 30 days after the last start that
// learned it, so a version that changes upstream is relearned in time.
const versionTTL = 30 * 24 * time.Hour

// versionRecheck bounds how often an unknown version is looked up in the store.
const versionRecheck = time.Minute

// learner is a Feed that takes a version learned elsewhere.
type learner interface{ Learn(version string) }

// versions remembers, per source, when its version was last looked up in
// the store and whether this process has stored it.
type versions struct {
	mu      sync.Mutex
	checked map[string]time.Time
	stored  map[string]bool
}

// versionOf is the OData version of src: its feed's, else the one another
// replica or an earlier run stored, else "" while nobody knows it.
func (s *Server) versionOf(ctx context.Context, src *Source) string {
	if v := src.Feed.Version(); v != "" {
		return v
	}
	now := s.now()
	s.versions.mu.Lock()
	last, seen := s.versions.checked[src.Name]
	if seen && now.Sub(last) < versionRecheck {
		s.versions.mu.Unlock()
		return ""
	}
	s.versions.checked[src.Name] = now
	s.versions.mu.Unlock()
	b, err := s.opts.Store.Value(ctx, kindVersion, src.Name)
	if err != nil {
		return ""
	}
	v := string(b)
	switch v {
	case odata.Version2, odata.Version3, odata.Version4:
	default:
		return ""
	}
	if l, ok := src.Feed.(learner); ok {
		l.Learn(v)
	}
	return v
}

// rememberVersion stores the version src's feed learned, once per process,
// for the other replicas and the next start.
func (s *Server) rememberVersion(ctx context.Context, src *Source) {
	v := src.Feed.Version()
	if v == "" {
		return
	}
	s.versions.mu.Lock()
	done := s.versions.stored[src.Name]
	s.versions.stored[src.Name] = true
	s.versions.mu.Unlock()
	if done {
		return
	}
	if err := s.opts.Store.PutValue(context.WithoutCancel(ctx), kindVersion, src.Name, []byte(v), versionTTL); err != nil {
		s.log.WarnContext(ctx, "storing a learned OData version failed", "source", src.Name, "error", err)
		s.versions.mu.Lock()
		s.versions.stored[src.Name] = false
		s.versions.mu.Unlock()
	}
}

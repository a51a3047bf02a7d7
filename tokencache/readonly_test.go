package tokencache

import (
	"context"
	"errors"
	"testing"
	"time"
)

// readOnly is a backend that refuses every write, as a Redis master does that has lost
// its replica under min-replicas-to-write, or one being demoted in a failover.
type readOnly struct{ backend }

var errReadOnly = errors.New("NOREPLICAS Not enough good replicas to write")

func (readOnly) set(context.Context, string, []byte, time.Duration, setMode) (bool, error) {
	return false, unavailable(errReadOnly)
}
func (readOnly) cas(context.Context, string, []byte, []byte, time.Duration) (bool, error) {
	return false, unavailable(errReadOnly)
}
func (readOnly) expire(context.Context, string, time.Duration) error { return unavailable(errReadOnly) }
func (readOnly) zpush(context.Context, string, [][]byte, time.Duration, int) ([][]byte, error) {
	return nil, unavailable(errReadOnly)
}
func (readOnly) del(context.Context, ...string) error { return unavailable(errReadOnly) }

// While the store refuses writes, what only reads is served: a bearer token, a feed
// key, a session's fresh provider token. What must write fails with ErrUnavailable.
func TestReadsWhileWritesRefused(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		clk := newClock()
		s := e.store(t, Options{Now: clk.Now, HotCacheTTL: -1})
		sid := newSession(t, s, "sub-1")
		tok, err := s.Issue(ctx, sid)
		if err != nil {
			t.Fatal(err)
		}
		_, key, err := s.CreateFeedKey(ctx, sid, "k")
		if err != nil {
			t.Fatal(err)
		}
		clk.Add(2 * time.Minute) // so that a use would write
		s.b = readOnly{s.b}
		for _, tc := range []struct {
			name string
			call func() error
			want error
		}{
			{"Authenticate", func() error { _, err := s.Authenticate(ctx, string(tok.AccessToken)); return err }, nil},
			{"FeedKey", func() error { _, err := s.FeedKey(ctx, string(key)); return err }, nil},
			{"Token", func() error { _, err := s.Token(ctx, sid); return err }, nil},
			{"Rotate", func() error { _, err := s.Rotate(ctx, string(tok.RefreshToken)); return err }, ErrUnavailable},
			{"CreateSession", func() error { _, err := s.CreateSession(ctx, Session{Subject: "sub-2"}); return err }, ErrUnavailable},
		} {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("%s while writes are refused: %v, want %v", tc.name, err, tc.want)
			}
		}
	})
}

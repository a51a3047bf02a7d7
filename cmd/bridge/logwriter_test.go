package main

import (
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLogWriter(t *testing.T) {
	var out lockedBuilder
	// An interval no test run reaches: only Flush, a full buffer and Close write.
	w := newLogWriter(&out, time.Hour)
	w.Write([]byte("one\n"))
	if got := out.String(); got != "" {
		t.Fatalf("written before a flush: %q", got)
	}
	w.Flush()
	if got := out.String(); got != "one\n" {
		t.Fatalf("after Flush: %q", got)
	}
	big := strings.Repeat("x", 100<<10) + "\n"
	w.Write([]byte(big))
	if got := out.String(); got != "one\n"+big {
		t.Fatalf("a line larger than the buffer was held back (%d bytes out)", len(got))
	}
	w.Write([]byte("two\n"))
	w.Close()
	if got := out.String(); !strings.HasSuffix(got, "two\n") {
		t.Fatalf("Close did not write out the rest: ...%q", got[max(0, len(got)-10):])
	}
	w.Write([]byte("late\n"))
	if got := out.String(); !strings.HasSuffix(got, "late\n") {
		t.Fatal("a line after Close was held back")
	}

	// The flusher writes without being asked.
	var ticked lockedBuilder
	w = newLogWriter(&ticked, 10*time.Millisecond)
	defer w.Close()
	w.Write([]byte("tick\n"))
	deadline := time.Now().Add(10 * time.Second)
	for ticked.String() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the flusher never wrote the buffered line")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

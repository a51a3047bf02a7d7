package tokencache

import (
	"fmt"
	"testing"
	"time"
)

func TestHotCacheBounded(t *testing.T) {
	c := newHotCache(3)
	now := time.Unix(1000, 0)
	for i := range 5 {
		c.put(hotEntry{key: hotKey{hotAccess, fmt.Sprint(i)}, val: fmt.Sprint(i), sid: "s", exp: now.Add(time.Second)})
	}
	if got := len(c.m); got != 3 || c.fifo.Len() != 3 {
		t.Fatalf("entries: got %d, want the bound 3", got)
	}
	for i, want := range []bool{false, false, true, true, true} {
		if _, ok := c.get(hotKey{hotAccess, fmt.Sprint(i)}, now); ok != want {
			t.Errorf("entry %d present: got %v, want %v (oldest go first)", i, ok, want)
		}
	}
	if _, ok := c.get(hotKey{hotAccess, "4"}, now.Add(time.Second)); ok {
		t.Errorf("an entry past its expiry was served")
	}
	c.purge(func(e *hotEntry) bool { return e.val == "3" })
	if _, ok := c.get(hotKey{hotAccess, "3"}, now); ok || len(c.m) != 2 {
		t.Errorf("purge left the entry or the map out of step")
	}
	var off *hotCache // HotCacheSize or HotCacheTTL negative
	off.put(hotEntry{key: hotKey{hotAccess, "x"}})
	if _, ok := off.get(hotKey{hotAccess, "x"}, now); ok {
		t.Errorf("a disabled cache served an entry")
	}
}

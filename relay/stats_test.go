package relay_test

import (
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// TestCountersLast: the latest packet's time is zero before the first
// and moves with each batch counted.
func TestCountersLast(t *testing.T) {
	var c relay.Counters
	if s := c.Snapshot(); !s.Last.IsZero() {
		t.Fatalf("Last %v before any packet", s.Last)
	}
	before := time.Now()
	c.Add(3, 180)
	s := c.Snapshot()
	if s.Last.Before(before) || s.Last.After(time.Now()) || s.Packets != 3 || s.Bytes != 180 {
		t.Fatalf("after Add: %+v (added at %v)", s, before)
	}
	time.Sleep(2 * time.Millisecond)
	c.Add(1, 60)
	if next := c.Snapshot().Last; !next.After(s.Last) {
		t.Errorf("Last did not move: %v, then %v", s.Last, next)
	}
}

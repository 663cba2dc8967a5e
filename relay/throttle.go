package relay

import (
	"sync"
	"time"
)

// Throttle lets one log line through per interval for each kind of event
// and counts the rest, so that a peer flooding spoofed or malformed packets
// costs the log a line per interval, not a line per packet. The zero value
// is not ready: use NewThrottle. It is safe for concurrent use.
type Throttle struct {
	every time.Duration

	mu   sync.Mutex
	last map[string]*throttled
}

type throttled struct {
	at         time.Time
	suppressed uint64
}

// NewThrottle lets one event of each kind through per every.
func NewThrottle(every time.Duration) *Throttle {
	return &Throttle{every: every, last: make(map[string]*throttled)}
}

// Allow reports whether an event of this kind should be logged now, and
// how many of its kind were held back since the last one that was. Kinds
// are a caller's fixed strings, not what a peer sent, so they stay few.
func (t *Throttle) Allow(kind string) (suppressed uint64, ok bool) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.last[kind]
	if e == nil {
		t.last[kind] = &throttled{at: now}
		return 0, true
	}
	if now.Sub(e.at) < t.every {
		e.suppressed++
		return 0, false
	}
	n := e.suppressed
	e.at, e.suppressed = now, 0
	return n, true
}

package stack

import (
	"io"
	"sync"
	"time"
)

// group owns every goroutine and connection of one client, because gVisor's
// RemoveNIC closes no transport endpoint: Close closes (aborts) each tracked
// connection, then waits for each goroutine begun through it. After Close,
// begin refuses, so no flow starts on a client that is going away.
type group struct {
	mu     sync.Mutex
	closed bool
	conns  map[io.Closer]struct{}
	wg     sync.WaitGroup
}

func newGroup() *group { return &group{conns: map[io.Closer]struct{}{}} }

// begin accounts for one goroutine; false means the group is closed and
// the caller must not start it. A true begin is paired with one done.
func (g *group) begin() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *group) done() { g.wg.Done() }

// track adds c to what Close closes. When the group is already closed it
// closes c at once and returns false.
func (g *group) track(c io.Closer) bool {
	g.mu.Lock()
	if !g.closed {
		g.conns[c] = struct{}{}
		g.mu.Unlock()
		return true
	}
	g.mu.Unlock()
	c.Close()
	return false
}

func (g *group) untrack(c io.Closer) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// closeNudge is how often close calls its nudge while it waits.
const closeNudge = 50 * time.Millisecond

// close closes every tracked connection and waits for every goroutine. It
// calls nudge once at once and then every closeNudge until they are done:
// what nudge unblocks (a handshake in the stack) may have begun after a
// call, from a goroutine that was already running.
func (g *group) close(nudge func()) {
	g.mu.Lock()
	g.closed = true
	cs := make([]io.Closer, 0, len(g.conns))
	for c := range g.conns {
		cs = append(cs, c)
	}
	clear(g.conns)
	g.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	t := time.NewTicker(closeNudge)
	defer t.Stop()
	for {
		if nudge != nil {
			nudge()
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

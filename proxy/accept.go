package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns is the per-listener limit when a config leaves MaxConns
// zero: far above what one user's browser opens, far below the file limit.
const DefaultMaxConns = 1024

// maxHandshakes bounds connections per listener that are still in their
// handshake. Past it, or at MaxConns, a new connection closes the oldest
// of them: a real client finishes its handshake in milliseconds, so idle
// or slow sockets, not it, are what give way.
const maxHandshakes = 64

// maxRefusing bounds connections being told "too many": past it a
// connection over the limit is closed without a reply, so a flood cannot
// spend a goroutine per socket on courtesy.
const maxRefusing = 32

// owner holds every goroutine and connection of one Serve call: when it
// ends, stop closes what is open and waits for every goroutine.
type owner struct {
	ctx  context.Context
	wg   sync.WaitGroup
	mu   sync.Mutex
	done bool
}

// spawn runs fn in a goroutine the owner waits for; false after stop.
func (o *owner) spawn(fn func()) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return false
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		fn()
	}()
	return true
}

// closeOnDone closes c when the owner's context ends; the returned func
// undoes that (and reports whether c was left open).
func (o *owner) closeOnDone(c interface{ Close() error }) (stop func() bool) {
	return context.AfterFunc(o.ctx, func() { c.Close() })
}

func (o *owner) stop() {
	o.mu.Lock()
	o.done = true
	o.mu.Unlock()
	o.wg.Wait()
}

// acceptLoop is what Server and Forward share: accept, hold MaxConns, own
// each connection's goroutine, and on return leave nothing running.
type acceptLoop struct {
	max   int
	log   *slog.Logger
	stats *Stats
	// handle serves one connection, which begins in its handshake;
	// handle calls handshakeDone once the client has said what it wants,
	// after which the connection can no longer be evicted.
	handle func(o *owner, c net.Conn, handshakeDone func())
	refuse func(o *owner, c net.Conn) // nil: close at once
}

func (a *acceptLoop) run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	o := &owner{ctx: ctx}
	defer o.stop()
	defer cancel()
	stopClose := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopClose()
	limit := a.max
	if limit <= 0 {
		limit = DefaultMaxConns
	}
	sl := &slots{limit: limit, budget: min(maxHandshakes, limit), stats: a.stats}
	var refusing atomic.Int64
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			a.log.Warn("proxy: accept failed, retrying", "listener", ln.Addr(), "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		a.stats.accepted.Add(1)
		s := sl.take(c)
		if s == nil {
			a.refuseConn(o, c, &refusing, limit)
			continue
		}
		if !o.spawn(func() {
			defer sl.release(s)
			defer c.Close()
			stop := o.closeOnDone(c)
			defer stop()
			a.handle(o, c, func() { sl.handshakeDone(s) })
		}) {
			sl.release(s)
			c.Close()
		}
	}
}

// slots counts one listener's connections against MaxConns and keeps
// those still in their handshake, oldest first, to evict.
type slots struct {
	limit, budget int
	stats         *Stats

	mu          sync.Mutex
	active      int
	handshaking []*slot // at most budget
}

// slot is one connection's hold on a slot.
type slot struct {
	c           net.Conn
	held        bool // counts in active
	inHandshake bool // listed in handshaking
}

// take holds a slot for c, first evicting the oldest connection in its
// handshake when the handshake budget is spent or the listener is full;
// nil when every slot is held by a connection past its handshake.
func (sl *slots) take(c net.Conn) *slot {
	sl.mu.Lock()
	var evicted net.Conn
	if n := len(sl.handshaking); n > 0 && (n >= sl.budget || sl.active >= sl.limit) {
		old := sl.handshaking[0]
		sl.handshaking = slices.Delete(sl.handshaking, 0, 1)
		old.inHandshake = false
		// The slot passes to c now; the evicted goroutine ends on its own.
		sl.free(old)
		evicted = old.c
	}
	var s *slot
	if sl.active < sl.limit {
		s = &slot{c: c, held: true, inHandshake: true}
		sl.active++
		sl.stats.active.Add(1)
		sl.handshaking = append(sl.handshaking, s)
	}
	sl.mu.Unlock()
	if evicted != nil {
		sl.stats.handshakeEvicted.Add(1)
		evicted.Close()
	}
	return s
}

// handshakeDone takes s off the list of connections that may be evicted.
func (sl *slots) handshakeDone(s *slot) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.leaveHandshake(s)
}

// release gives s's slot back, unless an eviction already did.
func (sl *slots) release(s *slot) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.leaveHandshake(s)
	sl.free(s)
}

func (sl *slots) leaveHandshake(s *slot) {
	if !s.inHandshake {
		return
	}
	s.inHandshake = false
	if i := slices.Index(sl.handshaking, s); i >= 0 {
		sl.handshaking = slices.Delete(sl.handshaking, i, i+1)
	}
}

func (sl *slots) free(s *slot) {
	if s.held {
		s.held = false
		sl.active--
		sl.stats.active.Add(-1)
	}
}

// refuseConn counts c as refused at the limit and answers it, when few
// enough answers are under way, in its protocol's words.
func (a *acceptLoop) refuseConn(o *owner, c net.Conn, refusing *atomic.Int64, limit int) {
	if a.stats.refused.Add(1) == 1 {
		a.log.Warn("proxy: a listener is at its connection limit; further refusals are only counted", "listener", c.LocalAddr(), "max", limit)
	}
	if a.refuse == nil || refusing.Add(1) > maxRefusing {
		if a.refuse != nil {
			refusing.Add(-1)
		}
		c.Close()
		return
	}
	if !o.spawn(func() {
		defer refusing.Add(-1)
		defer c.Close()
		stop := o.closeOnDone(c)
		defer stop()
		a.refuse(o, c)
	}) {
		refusing.Add(-1)
		c.Close()
	}
}

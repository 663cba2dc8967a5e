package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns is the per-listener limit when a config leaves MaxConns
// zero: far above what one user's browser opens, far below the file limit.
const DefaultMaxConns = 1024

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
	max    int
	log    *slog.Logger
	stats  *Stats
	handle func(o *owner, c net.Conn)
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
	var active, refusing atomic.Int64
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
		if active.Add(1) > int64(limit) {
			active.Add(-1)
			a.refuseConn(o, c, &refusing, limit)
			continue
		}
		a.stats.active.Add(1)
		if !o.spawn(func() {
			defer active.Add(-1)
			defer a.stats.active.Add(-1)
			defer c.Close()
			stop := o.closeOnDone(c)
			defer stop()
			a.handle(o, c)
		}) {
			active.Add(-1)
			a.stats.active.Add(-1)
			c.Close()
		}
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

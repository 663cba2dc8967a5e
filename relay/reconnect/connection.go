package reconnect

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/ssh"
)

// connection hands the connection that is up to the flows that dial on it,
// and tells them, while there is none, why and since when.
type connection struct {
	mu    sync.Mutex
	sc    *ssh.Client
	last  error         // why there is no connection now
	ended bool          // Run has returned: no connection will come
	wake  chan struct{} // closed when sc, last or ended changes
}

// ErrStopped is what flows get once Run has returned.
var ErrStopped = errors.New("sshvpn connect is stopping")

// Connection returns the SSH connection that is up, waiting for one while
// the client connects or reconnects, until ctx ends: the caller bounds the
// wait. The error then says why there is none. Only with Flows.
func (c *Client) Connection(ctx context.Context) (*ssh.Client, error) {
	return c.NextConnection(ctx, nil)
}

// NextConnection is Connection for a caller whose flow failed on dead:
// the client may not have noticed yet that dead is gone, so it waits for
// another connection.
func (c *Client) NextConnection(ctx context.Context, dead *ssh.Client) (*ssh.Client, error) {
	cn := &c.conn
	for {
		cn.mu.Lock()
		sc, last, ended := cn.sc, cn.last, cn.ended
		wake := cn.waitLocked()
		cn.mu.Unlock()
		switch {
		case sc != nil && sc != dead:
			return sc, nil
		case ended:
			return nil, ErrStopped
		}
		select {
		case <-wake:
		case <-ctx.Done():
			if last == nil {
				return nil, fmt.Errorf("connecting to the server: %w", ctx.Err())
			}
			return nil, fmt.Errorf("reconnecting to the server (last error: %v): %w", last, ctx.Err())
		}
	}
}

// waitLocked returns the channel the next change closes.
func (cn *connection) waitLocked() chan struct{} {
	if cn.wake == nil {
		cn.wake = make(chan struct{})
	}
	return cn.wake
}

// set changes the state and wakes the waiters.
func (cn *connection) set(f func()) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	f()
	if cn.wake != nil {
		close(cn.wake)
		cn.wake = nil
	}
}

func (cn *connection) up(sc *ssh.Client) { cn.set(func() { cn.sc, cn.last = sc, nil }) }

func (cn *connection) down(why error) { cn.set(func() { cn.sc, cn.last = nil, why }) }

func (cn *connection) failed(err error) { cn.set(func() { cn.last = err }) }

func (cn *connection) end() { cn.set(func() { cn.sc, cn.ended = nil, true }) }

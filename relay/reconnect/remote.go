package reconnect

import (
	"errors"
	"net"
	"sync"

	"github.com/sshvpn/sshvpn/relay"
)

// remote is the far side of the tunnel as one relay.Device for the
// client's whole life, so that one Pump, with one long-lived reader on the
// local device, outlives every connection: each session attaches its SSH
// channel and detaches it when the connection is lost. While none is
// attached, Read waits and Write drops (counted as relay.DropNoTunnel):
// applications see a pause and retransmit, as over any lossy link.
type remote struct {
	mtu int

	mu     sync.Mutex
	cur    *attachment
	wake   chan struct{} // closed and replaced whenever cur or closed changes
	closed bool
}

// attachment is one session's channel on the remote.
type attachment struct {
	dev  relay.Device
	once sync.Once
	err  error         // why it ended; read after done is closed
	done chan struct{} // closed when the channel failed or was detached
}

var _ relay.Device = (*remote)(nil)

// remoteBatch is how many packets one Read of the remote takes at most.
const remoteBatch = 64

var errNoTunnel = &relay.DropError{Reason: relay.DropNoTunnel, Err: errors.New("the tunnel is down; reconnecting")}

func newRemote(mtu int) *remote {
	return &remote{mtu: mtu, wake: make(chan struct{})}
}

// attach makes dev the remote side until it fails or detach is called. It
// returns the attachment, whose done says when dev ended and why.
func (r *remote) attach(dev relay.Device) *attachment {
	a := &attachment{dev: dev, done: make(chan struct{})}
	r.mu.Lock()
	old, closed := r.cur, r.closed
	if !closed {
		r.cur = a
		r.notify()
	}
	r.mu.Unlock()
	// Closing a device may wait on its peer: never under r.mu.
	if old != nil {
		old.end(errors.New("replaced by a new session"))
	}
	if closed {
		a.end(net.ErrClosed)
	}
	return a
}

// detach ends a with cause, closing its device, and takes it off the
// remote if it is still the current one.
func (r *remote) detach(a *attachment, cause error) {
	r.mu.Lock()
	if r.cur == a {
		r.cur = nil
		r.notify()
	}
	r.mu.Unlock()
	a.end(cause)
}

// notify wakes every waiter; r.mu is held.
func (r *remote) notify() {
	close(r.wake)
	r.wake = make(chan struct{})
}

// end records why the attachment ended, once, and closes its device.
func (a *attachment) end(cause error) {
	a.once.Do(func() {
		a.err = cause
		a.dev.Close()
		close(a.done) // after Close: who sees done may count on the device being closed
	})
}

// current returns the attachment in place, waiting for one when wait is
// set; it fails once the remote is closed.
func (r *remote) current(wait bool) (*attachment, error) {
	for {
		r.mu.Lock()
		a, closed, wake := r.cur, r.closed, r.wake
		r.mu.Unlock()
		switch {
		case closed:
			return nil, net.ErrClosed
		case a != nil || !wait:
			return a, nil
		}
		<-wake
	}
}

// Read implements relay.Device: it reads the attached channel, and when
// that fails, ends its session and waits for the next one.
func (r *remote) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		a, err := r.current(true)
		if err != nil {
			return 0, err
		}
		n, err := a.dev.Read(bufs, sizes, offset)
		if err != nil {
			r.detach(a, err)
		}
		if n > 0 || err == nil {
			return n, nil
		}
	}
}

// Write implements relay.Device: it writes to the attached channel, and
// drops what comes while none is attached or after it failed.
func (r *remote) Write(bufs [][]byte, offset int) (int, error) {
	a, err := r.current(false)
	if err != nil {
		return 0, err
	}
	if a == nil {
		return 0, errNoTunnel
	}
	n, err := a.dev.Write(bufs, offset)
	if err == nil {
		return n, nil
	}
	if _, ok := errors.AsType[*relay.DropError](err); ok {
		return n, err
	}
	r.detach(a, err)
	return n, errNoTunnel
}

// BatchSize implements relay.Device.
func (r *remote) BatchSize() int { return remoteBatch }

// MTU implements relay.Device: the local device's, which every channel is
// opened with.
func (r *remote) MTU() int { return r.mtu }

// Close implements relay.Device: it ends the attached session and wakes
// a waiting Read.
func (r *remote) Close() error {
	r.mu.Lock()
	old, closed := r.cur, r.closed
	r.cur, r.closed = nil, true
	if !closed {
		r.notify()
	}
	r.mu.Unlock()
	if old != nil {
		old.end(net.ErrClosed)
	}
	return nil
}

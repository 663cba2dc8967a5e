//go:build linux

package kernel

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/relay"
)

// readBatch is the state of one Read, kept in the Tun so that the callback
// given to RawConn.Read is a method value made once at Open: a closure made
// per call would allocate on every Read.
type readBatch struct {
	fn     func(fd uintptr) bool
	bufs   [][]byte
	sizes  []int
	offset int
	n      int
	err    error
}

func (b *readBatch) init() { b.fn = b.ready }

// ready reads packets while the kernel has them. It returns false, which
// makes the poller wait for readability, only when it has nothing yet.
func (b *readBatch) ready(fd uintptr) bool {
	for b.n < len(b.bufs) {
		size, err := unix.Read(int(fd), b.bufs[b.n][b.offset:])
		switch err {
		case nil:
			b.sizes[b.n] = size
			b.n++
		case unix.EINTR:
		case unix.EAGAIN:
			return b.n > 0
		default:
			b.err = err
			return true
		}
	}
	return true
}

// Read blocks until the device has a packet, then reads it and every further
// packet that is ready, up to len(bufs), len(sizes) and BatchSize, into
// bufs[i][offset:]. The kernel truncates a packet larger than its buffer, so
// buffers hold at least MTU bytes (tun) or MTU+18 (tap: Ethernet and VLAN
// headers) after offset.
func (t *Tun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	b := &t.rd
	limit := min(len(bufs), len(sizes), BatchSize)
	if limit == 0 {
		return 0, nil
	}
	b.bufs, b.sizes, b.offset, b.n, b.err = bufs[:limit], sizes, offset, 0, nil
	err := t.rc.Read(b.fn)
	n, rerr := b.n, b.err
	b.bufs, b.sizes = nil, nil // do not pin the caller's buffers
	if n > 0 {
		// A read error after some packets recurs on the next call.
		return n, nil
	}
	if err == nil {
		err = rerr
	}
	return 0, t.ioError("read", err)
}

// writeBatch is the state of one Write; see readBatch.
type writeBatch struct {
	fn     func(fd uintptr) bool
	bufs   [][]byte
	offset int
	n      int
	err    error
}

func (b *writeBatch) init() { b.fn = b.ready }

func (b *writeBatch) ready(fd uintptr) bool {
	for b.n < len(b.bufs) {
		_, err := unix.Write(int(fd), b.bufs[b.n][b.offset:])
		switch err {
		case nil:
			b.n++
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			b.err = err
			return true
		}
	}
	return true
}

// Write writes bufs[i][offset:] to the device, each as one packet, and returns
// how many it wrote. A packet the kernel refuses (EINVAL: not an IP packet,
// a runt frame; EIO) ends the call with a *relay.DropError for packet n; the
// Tun stays usable. Any other error is fatal.
func (t *Tun) Write(bufs [][]byte, offset int) (int, error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	b := &t.wr
	b.bufs, b.offset, b.n, b.err = bufs, offset, 0, nil
	err := t.rc.Write(b.fn)
	n, werr := b.n, b.err
	b.bufs = nil
	switch {
	case err != nil:
		return n, t.ioError("write", err)
	case werr == unix.EINVAL || werr == unix.EIO:
		return n, &relay.DropError{Reason: relay.DropWrite, Err: fmt.Errorf("write %s: %w", t.name, werr)}
	case werr != nil:
		return n, t.ioError("write", werr)
	}
	return n, nil
}

// ioError names the device in err, and turns every error after Close into
// net.ErrClosed: the poller reports a closed file with an error of its own
// that os.File maps only on its own methods, not on RawConn.
func (t *Tun) ioError(op string, err error) error {
	if t.closed.Load() {
		return fmt.Errorf("%s %s: %w", op, t.name, net.ErrClosed)
	}
	return fmt.Errorf("%s %s: %w", op, t.name, err)
}

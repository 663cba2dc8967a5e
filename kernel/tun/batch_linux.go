//go:build linux

package tun

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/offload"
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
	// hdr is the virtio-net header in front of each packet the kernel
	// hands out (IFF_VNET_HDR), 0 without; it lands in the headroom.
	hdr   int
	whole bool // the caller takes super-packets, behind their header
}

func (b *readBatch) init(vnet, whole bool) {
	b.fn, b.whole = b.ready, whole
	if vnet {
		b.hdr = offload.HdrLen
	}
}

// ready reads packets while the kernel has them. It returns false, which
// makes the poller wait for readability, only when it has nothing yet. A
// Tun that does not pass super-packets whole asked for no offloads, so
// its headers are empty; a packet whose header is not is dropped rather
// than handed on as a plain packet.
func (b *readBatch) ready(fd uintptr) bool {
	for b.n < len(b.bufs) {
		buf := b.bufs[b.n][b.offset-b.hdr:]
		size, err := unix.Read(int(fd), buf)
		switch err {
		case nil:
			if b.hdr > 0 && (size < b.hdr || !b.whole && !offload.Empty(buf)) {
				continue
			}
			b.sizes[b.n] = size - b.hdr
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
	if t.vnet && offset < offload.HdrLen {
		return 0, fmt.Errorf("read %s: %d bytes of headroom, want %d for the virtio-net header", t.name, offset, offload.HdrLen)
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

	// A vnet Tun writes frames, header and packet: the callers' buffers
	// from the header on (whole), or what gro made of them.
	vnet, whole bool
	gro         *offload.Coalescer
	frames      [][]byte
	exact       bool // frames[i] is bufs[i]: a refusal names its packet
	dropped     int  // frames the kernel refused in this Write, when not exact
}

func (b *writeBatch) init(link offload.Link, vnet, whole bool) {
	b.vnet, b.whole = vnet, whole
	b.fn = b.ready
	if vnet {
		b.frames = make([][]byte, 0, BatchSize)
		if !whole {
			b.gro = offload.NewCoalescer(link, BatchSize)
		}
		b.fn = b.readyFrames
	}
}

// readyFrames writes b.frames whole. A frame the kernel refuses ends the
// Write as in ready, unless coalescing merged packets: then it is counted
// and skipped, since it stands for packets that have no index of their
// own any more.
func (b *writeBatch) readyFrames(fd uintptr) bool {
	for b.n < len(b.frames) {
		_, err := unix.Write(int(fd), b.frames[b.n])
		switch err {
		case nil:
			b.n++
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		case unix.EINVAL, unix.EIO:
			if b.exact {
				b.err = err
				return true
			}
			b.dropped++
			b.n++
		default:
			b.err = err
			return true
		}
	}
	return true
}

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
	if b.vnet {
		return t.writeFrames(bufs, offset)
	}
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

// writeFrames is Write for a Tun with offloads: every packet goes behind
// a virtio-net header, its own (GSO) or one the coalescer writes. When the
// kernel refuses frames, the error reports the last packet as the dropped
// one; the count of packets written is exact only when nothing merged.
func (t *Tun) writeFrames(bufs [][]byte, offset int) (int, error) {
	b := &t.wr
	if offset < offload.HdrLen {
		return 0, fmt.Errorf("write %s: %d bytes of headroom, want %d for the virtio-net header", t.name, offset, offload.HdrLen)
	}
	b.frames = b.frames[:0]
	if b.whole {
		for _, p := range bufs {
			b.frames = append(b.frames, p[offset-offload.HdrLen:])
		}
	} else {
		b.frames = b.gro.Coalesce(bufs, offset, b.frames)
	}
	b.n, b.err, b.dropped, b.exact = 0, nil, 0, len(b.frames) == len(bufs)
	err := t.rc.Write(b.fn)
	n, werr, dropped := b.n, b.err, b.dropped
	b.frames = b.frames[:0]
	switch {
	case err != nil:
		return 0, t.ioError("write", err)
	case werr == unix.EINVAL || werr == unix.EIO:
		return n, &relay.DropError{Reason: relay.DropWrite, Err: fmt.Errorf("write %s: %w", t.name, werr)}
	case werr != nil:
		return 0, t.ioError("write", werr)
	case dropped > 0:
		return len(bufs) - 1, &relay.DropError{Reason: relay.DropWrite, Err: fmt.Errorf("write %s: the kernel refused %d packets", t.name, dropped)}
	}
	return len(bufs), nil
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

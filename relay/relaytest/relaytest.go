// Package relaytest provides an in-memory relay.Device for tests, in the
// spirit of wireguard-go's tun/tuntest.
//
// A Dev is one end of nothing: the test plays the other end. Inject queues
// packets (and errors) for the Dev's Read; what is given to the Dev's Write
// comes out of Recv, or goes to a function installed with OnWrite.
package relaytest

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"

	"github.com/sshvpn/sshvpn/relay"
)

// QueueLen is how many injected packets, and how many written packets, a Dev
// holds before Inject, or Write, blocks.
const QueueLen = 1024

// Dev is an in-memory relay.Device. All its methods are safe for concurrent
// use, except that Read, like Write, expects one caller at a time.
type Dev struct {
	mtu, batch int
	in         chan item   // for Read
	out        chan []byte // from Write, for Recv
	closed     chan struct{}
	closeOnce  sync.Once

	mu      sync.Mutex
	onWrite func(pkt []byte) error
	readErr error // sticky: once Read met an injected error, it keeps it
}

// item is a packet, or an error Read returns in its place.
type item struct {
	pkt []byte
	err error
}

var _ relay.Device = (*Dev)(nil)

// New returns a Dev that reports mtu and batch as its MTU and BatchSize.
func New(mtu, batch int) *Dev {
	return &Dev{
		mtu: mtu, batch: max(batch, 1),
		in:     make(chan item, QueueLen),
		out:    make(chan []byte, QueueLen),
		closed: make(chan struct{}),
	}
}

// Inject queues pkt for Read, which copies it out later: pkt must not be
// modified after the call. It blocks while the queue is full and returns
// net.ErrClosed after Close.
func (d *Dev) Inject(pkt []byte) error {
	return d.push(item{pkt: pkt})
}

// InjectError makes Read return err once the packets queued before it are
// read, and on every Read after that: io.EOF plays a peer that closed.
func (d *Dev) InjectError(err error) error {
	return d.push(item{err: err})
}

func (d *Dev) push(it item) error {
	select {
	case <-d.closed:
		return net.ErrClosed
	default:
	}
	select {
	case d.in <- it:
		return nil
	case <-d.closed:
		return net.ErrClosed
	}
}

// OnWrite makes Write call f for each packet instead of queueing a copy for
// Recv; nil restores queueing. pkt is valid only during the call. f's error
// is what Write returns for that packet: wrap relay.ErrDropped (a
// *relay.DropError) to drop it, anything else is fatal.
func (d *Dev) OnWrite(f func(pkt []byte) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onWrite = f
}

// Recv returns a copy of the next packet given to Write. After Close it
// returns the packets still queued, then net.ErrClosed.
func (d *Dev) Recv(ctx context.Context) ([]byte, error) {
	select {
	case p := <-d.out:
		return p, nil
	default:
	}
	select {
	case p := <-d.out:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-d.closed:
	}
	select {
	case p := <-d.out:
		return p, nil
	default:
		return nil, net.ErrClosed
	}
}

// Closed is closed when the Dev is.
func (d *Dev) Closed() <-chan struct{} { return d.closed }

// Read implements relay.Device: it blocks for one injected packet, then takes
// those already queued, up to the batch size.
func (d *Dev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if err := d.stickyErr(); err != nil {
		return 0, err
	}
	n, limit := 0, min(len(bufs), len(sizes), d.batch)
	if limit == 0 {
		return 0, fmt.Errorf("relaytest: Read with %d buffers and %d sizes", len(bufs), len(sizes))
	}
	var it item
	select {
	case it = <-d.in:
	case <-d.closed:
		return 0, net.ErrClosed
	}
	for {
		if it.err != nil {
			d.setStickyErr(it.err)
			if n == 0 {
				return 0, it.err
			}
			return n, nil
		}
		if offset+len(it.pkt) > len(bufs[n]) {
			return n, fmt.Errorf("relaytest: %d-byte packet does not fit a %d-byte buffer at offset %d",
				len(it.pkt), len(bufs[n]), offset)
		}
		sizes[n] = copy(bufs[n][offset:], it.pkt)
		if n++; n == limit {
			return n, nil
		}
		select {
		case it = <-d.in:
		default:
			return n, nil
		}
	}
}

func (d *Dev) stickyErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.readErr
}

func (d *Dev) setStickyErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.readErr = err
}

// Write implements relay.Device.
func (d *Dev) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	f := d.onWrite
	d.mu.Unlock()
	for i, b := range bufs {
		select {
		case <-d.closed:
			return i, net.ErrClosed
		default:
		}
		if err := d.write(f, b[offset:]); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

func (d *Dev) write(f func([]byte) error, pkt []byte) error {
	if f != nil {
		return f(pkt)
	}
	select {
	case d.out <- append([]byte(nil), pkt...):
		return nil
	case <-d.closed:
		return net.ErrClosed
	}
}

// BatchSize implements relay.Device.
func (d *Dev) BatchSize() int { return d.batch }

// MTU implements relay.Device.
func (d *Dev) MTU() int { return d.mtu }

// Close implements relay.Device: it unblocks Read, Write and Recv. Closing
// twice returns net.ErrClosed.
func (d *Dev) Close() error {
	err := net.ErrClosed
	d.closeOnce.Do(func() {
		close(d.closed)
		err = nil
	})
	return err
}

// IPv4 is a UDP packet from 198.18.0.2 to 198.18.0.1 carrying payload,
// with a valid IPv4 header length and total length (the checksums are not
// filled in: nothing on the way checks them).
func IPv4(payload string) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	copy(p[12:], []byte{198, 18, 0, 2, 198, 18, 0, 1})
	copy(p[20:], payload)
	return p
}

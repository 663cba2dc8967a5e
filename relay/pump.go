package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

// Pump joins two Devices and moves packets between them in both directions,
// a batch at a time, until one side fails or ends or the context is done.
//
// Each direction owns one goroutine and one set of buffers, allocated when
// Run starts; the hot path allocates nothing (TestPumpAllocs), in the spirit
// of wireguard-go's device/send.go.
type Pump struct {
	a, b       Device
	aToB, bToA *Counters
	log        *slog.Logger
}

// NewPump returns a Pump between a and b that counts into aToB and bToA;
// nil counters and a nil logger are allowed.
func NewPump(a, b Device, aToB, bToA *Counters, log *slog.Logger) *Pump {
	if aToB == nil {
		aToB = new(Counters)
	}
	if bToA == nil {
		bToA = new(Counters)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pump{a: a, b: b, aToB: aToB, bToA: bToA, log: log}
}

// Run moves packets until ctx is done or a Device fails or ends, then closes
// both Devices and returns once both directions have stopped. A Pump runs
// once.
//
// A packet that a Write drops (an error wrapping ErrDropped) is counted by
// reason and the batch goes on. Run returns nil when ctx ends or when a
// Device reports io.EOF or net.ErrClosed (its peer or its owner ended it);
// otherwise it returns the first error, naming the direction and the
// operation. Errors that follow the stop are its echoes and are ignored.
func (p *Pump) Run(ctx context.Context) error {
	s := &stopper{done: make(chan struct{}), devs: [2]Device{p.a, p.b}, log: p.log}
	dirs := [2]*direction{
		newDirection("a→b", p.a, p.b, p.aToB, p.log),
		newDirection("b→a", p.b, p.a, p.bToA, p.log),
	}
	var wg sync.WaitGroup
	for _, d := range dirs {
		wg.Go(func() { s.stop(d.run()) })
	}
	wg.Go(func() {
		select {
		case <-ctx.Done():
			s.stop(nil)
		case <-s.done:
		}
	})
	wg.Wait()
	return s.err
}

// stopper ends a Run once: it records why and closes both Devices, which
// unblocks whatever Read or Write the other direction is in.
type stopper struct {
	once sync.Once
	done chan struct{}
	devs [2]Device
	log  *slog.Logger
	err  error // set inside once; read after Run's goroutines are done
}

func (s *stopper) stop(cause error) {
	s.once.Do(func() {
		if !isClean(cause) {
			s.err = cause
		}
		s.log.Debug("pump stopping", "cause", cause)
		close(s.done)
		// In order: a Close that can block (an SSH channel behind a
		// stalled peer) belongs second.
		for _, d := range s.devs {
			if err := d.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("pump: close device", "err", err)
			}
		}
	})
}

// isClean tells an orderly end from a failure: io.EOF is a peer that closed,
// net.ErrClosed a Device that its owner (or our stop) closed.
func isClean(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// direction moves packets from src to dst.
type direction struct {
	name     string
	src, dst Device
	count    *Counters
	log      *slog.Logger
	wbatch   int      // most packets per dst.Write
	bufs     [][]byte // Read fills bufs[i][Headroom:]
	sizes    []int
	pkts     [][]byte // bufs[i][:Headroom+sizes[i]], what Write is given
}

// newDirection allocates the direction's buffers, once: src.BatchSize rows,
// each large enough for the bigger MTU of the two plus an ethernet header and
// a VLAN tag. Devices drop (and count) what is larger than their MTU.
func newDirection(name string, src, dst Device, c *Counters, log *slog.Logger) *direction {
	batch := max(src.BatchSize(), 1)
	size := bufSize(src.MTU(), dst.MTU())
	mem := make([]byte, batch*size)
	d := &direction{
		name: name, src: src, dst: dst, count: c, log: log,
		wbatch: max(dst.BatchSize(), 1),
		bufs:   make([][]byte, batch),
		sizes:  make([]int, batch),
		pkts:   make([][]byte, batch),
	}
	for i := range d.bufs {
		d.bufs[i] = mem[i*size : (i+1)*size : (i+1)*size]
	}
	return d
}

// linkOverhead is what an ethernet-mode packet adds to the MTU: the 14-byte
// Ethernet header and one 4-byte 802.1Q tag.
const linkOverhead = 14 + 4

// bufSize rounds up to a multiple of 64 bytes so rows start on cache lines.
func bufSize(mtuA, mtuB int) int {
	n := Headroom + max(mtuA, mtuB) + linkOverhead
	return (n + 63) &^ 63
}

// run pumps until src or dst fails; it always returns a non-nil error.
func (d *direction) run() error {
	for {
		n, err := d.src.Read(d.bufs, d.sizes, Headroom)
		if werr := d.deliver(n); werr != nil {
			return werr
		}
		switch {
		case err == nil:
		case isDrop(err): // not in the contract, but harmless
			d.drop(err)
		default:
			return fmt.Errorf("relay: pump %s: read: %w", d.name, err)
		}
	}
}

// deliver writes the n packets just read to dst, at most wbatch per Write,
// and skips the packets dst drops.
func (d *direction) deliver(n int) error {
	pkts, err := d.batch(n)
	if err != nil {
		return err
	}
	for len(pkts) > 0 {
		chunk := pkts[:min(len(pkts), d.wbatch)]
		k, err := d.dst.Write(chunk, Headroom)
		k = min(max(k, 0), len(chunk))
		d.count.Add(k, payloadBytes(chunk[:k]))
		switch {
		case err == nil && k < len(chunk):
			return fmt.Errorf("relay: pump %s: write: %w", d.name, io.ErrShortWrite)
		case err == nil:
		case isDrop(err):
			d.drop(err)
			k = min(k+1, len(chunk))
		default:
			return fmt.Errorf("relay: pump %s: write: %w", d.name, err)
		}
		pkts = pkts[k:]
	}
	return nil
}

// batch slices the first n read buffers down to their packets.
func (d *direction) batch(n int) ([][]byte, error) {
	if n < 0 || n > len(d.bufs) {
		return nil, fmt.Errorf("relay: pump %s: read returned %d packets for %d buffers", d.name, n, len(d.bufs))
	}
	for i := range n {
		end := Headroom + d.sizes[i]
		if d.sizes[i] < 0 || end > len(d.bufs[i]) {
			return nil, fmt.Errorf("relay: pump %s: read returned a %d-byte packet for a %d-byte buffer",
				d.name, d.sizes[i], len(d.bufs[i])-Headroom)
		}
		d.pkts[i] = d.bufs[i][:end]
	}
	return d.pkts[:n], nil
}

// isDrop reports an error wrapping ErrDropped. It tries the common
// *DropError first because errors.Is allocates to walk DropError.Unwrap.
func isDrop(err error) bool {
	if _, ok := errors.AsType[*DropError](err); ok {
		return true
	}
	return errors.Is(err, ErrDropped)
}

func (d *direction) drop(err error) {
	reason := DropWrite
	if de, ok := errors.AsType[*DropError](err); ok {
		reason = de.Reason
	}
	d.count.Drop(reason)
	if d.log.Enabled(context.Background(), slog.LevelDebug) {
		d.log.Debug("packet dropped", "direction", d.name, "err", err)
	}
}

func payloadBytes(pkts [][]byte) int {
	n := 0
	for _, p := range pkts {
		n += len(p) - Headroom
	}
	return n
}

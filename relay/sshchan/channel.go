package relay

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// ChannelType is the SSH channel type OpenSSH uses for tunnels.
const ChannelType = "tun@openssh.com"

// channelBatch is how many queued messages one Read takes at most.
const channelBatch = 64

// Channel is a tun@openssh.com channel as a Device: each SSH message carries
// one packet (an IP packet behind an address family word, or an Ethernet
// frame). Read and Write must each be called from one goroutine at a time;
// Pump does that.
type Channel struct {
	ch    ssh.Channel
	shim  *chanShim // nil when x/crypto's internals are out of reach: stream mode
	mode  Mode
	mtu   int
	drift uint32
	in    *Counters
	log   *slog.Logger

	stream  []byte // stream mode: bytes read but not yet framed
	discard []byte // room to drain a message too large for the caller's buffer

	closeOnce sync.Once
	closed    atomic.Bool
}

var _ Device = (*Channel)(nil)

// ChannelConfig says how to treat one tunnel channel.
type ChannelConfig struct {
	Mode Mode
	MTU  int // largest IP packet (point-to-point) or frame payload (ethernet)
	// Drift is what the peer charges its window per datagram beyond the
	// datagram's length: see WindowDrift.
	Drift uint32
	// In counts packets dropped on the way in because they cannot be
	// framed; nil to not count them.
	In  *Counters
	Log *slog.Logger
}

// WindowDrift is the extra window an SSH peer charges per channel data
// message, judged from its version string: OpenSSH debits and credits
// len+4 (it counts the string's length word), everyone else len.
func WindowDrift(peerVersion []byte) uint32 {
	if strings.HasPrefix(string(peerVersion), "SSH-2.0-OpenSSH") {
		return 4
	}
	return 0
}

// NewChannel wraps an open tun@openssh.com channel. The caller must keep
// draining the channel's requests.
func NewChannel(ch ssh.Channel, cfg ChannelConfig) *Channel {
	c := &Channel{ch: ch, mode: cfg.Mode, mtu: cfg.MTU, drift: cfg.Drift, in: cfg.In, log: cfg.Log}
	if c.in == nil {
		c.in = new(Counters)
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	shim, err := newChanShim(ch)
	if err != nil {
		c.log.Warn("tunnel falls back to stream framing and unpaced writes", "err", err)
		c.stream = make([]byte, 0, 4*MaxFrame)
	}
	c.shim = shim
	c.discard = make([]byte, 32<<10)
	return c
}

// BatchSize implements Device.
func (c *Channel) BatchSize() int { return channelBatch }

// MTU implements Device.
func (c *Channel) MTU() int { return c.mtu }

// Close implements Device.
func (c *Channel) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.shim != nil {
			c.shim.close()
		}
		err = c.ch.Close()
		if errors.Is(err, io.EOF) {
			err = nil
		}
	})
	return err
}

// Read implements Device. It blocks for the first packet and then takes
// those already queued.
func (c *Channel) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if c.shim == nil {
		return c.readStream(bufs, sizes, offset)
	}
	n := 0
	for n < len(bufs) {
		size, err := c.shim.nextLen(n == 0)
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, c.readErr(err)
		}
		if size == 0 {
			break
		}
		ok, err := c.readMessage(bufs[n], &sizes[n], offset, size)
		if err != nil {
			return n, c.readErr(err)
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// readMessage reads one message of size bytes into buf so that the packet
// starts at offset, and reports whether it holds a packet worth delivering.
func (c *Channel) readMessage(buf []byte, size *int, offset, n int) (bool, error) {
	start := offset
	if c.mode == PointToPoint {
		start -= 4 // the address family word lands in the headroom
	}
	if start+n > len(buf) {
		c.in.Drop(DropOversized)
		return false, c.drain(n)
	}
	msg := buf[start : start+n]
	if _, err := c.shim.readMessage(msg); err != nil {
		return false, err
	}
	pkt, reason, ok := c.decode(msg)
	if !ok {
		c.in.Drop(reason)
		return false, nil
	}
	*size = len(pkt)
	return true, nil
}

// decode validates one whole message and returns the packet it carries,
// which starts at msg[0] (ethernet) or msg[4] (point-to-point).
func (c *Channel) decode(msg []byte) ([]byte, DropReason, bool) {
	if c.mode == PointToPoint {
		pkt, err := DecodeL3(msg)
		if err != nil {
			return nil, dropReason(err), false
		}
		if len(pkt) > c.mtu {
			return nil, DropOversized, false
		}
		return pkt, 0, true
	}
	frame, _, err := SplitL2(msg)
	if err == ErrUnknownLength { // unwrapped; errors.Is would allocate
		frame, err = msg, nil // a message is a frame: OpenSSH sends one per message
	}
	if err == nil {
		err = DecodeL2(frame, c.mtu)
	}
	if err != nil {
		return nil, dropReason(err), false
	}
	return frame, 0, true
}

// dropReason maps a framer error to the counter it belongs to, without the
// allocation errors.As would cost on every dropped packet.
func dropReason(err error) DropReason {
	if de, ok := errors.AsType[*DropError](err); ok {
		return de.Reason
	}
	if err == ErrShort {
		return DropTruncated
	}
	return DropMalformed
}

// drain consumes an n-byte message nobody can hold.
func (c *Channel) drain(n int) error {
	for n > 0 {
		m := min(n, len(c.discard))
		if _, err := c.shim.readMessage(c.discard[:m]); err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// readErr turns the end of the channel into net.ErrClosed after our own
// Close and io.EOF when the peer closed.
func (c *Channel) readErr(err error) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	return err
}

// Write implements Device: one SSH message per packet, never split.
func (c *Channel) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		frame, err := c.encode(b, offset)
		if err != nil {
			return i, err
		}
		if c.shim != nil {
			err = c.shim.writeDatagram(frame, c.drift)
		} else {
			_, err = c.ch.Write(frame)
		}
		if err != nil {
			return i, c.readErr(err)
		}
	}
	return len(bufs), nil
}

// encode frames the packet at b[offset:] for the wire.
func (c *Channel) encode(b []byte, offset int) ([]byte, error) {
	size := len(b) - offset
	var frame []byte
	if c.mode == PointToPoint {
		f, err := EncodeL3(b, offset, size)
		if err != nil {
			return nil, err
		}
		frame = f
	} else {
		if size < 14 {
			return nil, &DropError{Reason: DropMalformed}
		}
		frame = b[offset:]
	}
	if len(frame) > MaxFrame || (c.shim != nil && uint32(len(frame)) > c.shim.maxPayload) {
		return nil, &DropError{Reason: DropOversized}
	}
	return frame, nil
}

package sshchan

import (
	"errors"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// readStream is Read for when the shim is unavailable, toward an sshvpn peer
// only: Channel.Read hands us bytes of several messages at once, so packets
// are recovered from their own headers (wire's framer). A read that did not fill the buffer ended on a message
// boundary, which is where the stream resynchronises after bytes that cannot
// be framed.
func (c *Channel) readStream(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) {
		frame, rest, err := c.splitStream()
		switch {
		case err == nil:
			if c.deliver(frame, bufs[n], &sizes[n], offset) {
				n++
			}
			c.consume(len(c.stream) - len(rest))
			continue
		case errors.Is(err, wire.ErrShort):
			if n > 0 {
				return n, nil
			}
		default:
			// Includes ErrUnknownLength: without message boundaries an
			// ethernet type of unknown length cannot be framed.
			c.in.Drop(dropReason(err))
			c.stream = c.stream[:0]
			if n > 0 {
				return n, nil
			}
		}
		if err := c.fill(); err != nil {
			return n, c.readErr(err)
		}
	}
	return n, nil
}

func (c *Channel) splitStream() (frame, rest []byte, err error) {
	if len(c.stream) == 0 {
		return nil, nil, wire.ErrShort
	}
	if c.mode == relay.PointToPoint {
		return wire.SplitL3(c.stream)
	}
	return wire.SplitL2(c.stream)
}

// fill reads more bytes into the stream buffer.
func (c *Channel) fill() error {
	if len(c.stream) == cap(c.stream) {
		c.in.Drop(relay.DropOversized) // no datagram is this long: resynchronise
		c.stream = c.stream[:0]
	}
	m, err := c.ch.Read(c.stream[len(c.stream):cap(c.stream)])
	c.stream = c.stream[:len(c.stream)+m]
	return err
}

// deliver copies one framed datagram into buf at offset.
func (c *Channel) deliver(frame, buf []byte, size *int, offset int) bool {
	pkt, reason, ok := c.decode(frame)
	if !ok {
		c.in.Drop(reason)
		return false
	}
	if offset+len(pkt) > len(buf) {
		c.in.Drop(relay.DropOversized)
		return false
	}
	*size = copy(buf[offset:], pkt)
	return true
}

// consume forgets the first n buffered bytes.
func (c *Channel) consume(n int) {
	k := copy(c.stream, c.stream[n:])
	c.stream = c.stream[:k]
}

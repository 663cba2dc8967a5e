package sshchan

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/offload"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// Framed is a wire.StreamChannelType channel as a relay.Device: packets
// as length-framed records in one byte stream, between two sshvpn
// endpoints. A Write sends its whole batch with one channel Write, which
// x/crypto/ssh cuts into as few SSH messages as the peer's packet size
// allows; a Read takes every whole frame that one channel Read brought.
// Read and Write must each be called from one goroutine at a time; relay.Pump
// does that.
//
// With GSO set, the local device passes GSO super-packets whole, each
// behind a virtio-net header in the headroom (offload.HdrLen bytes before
// the packet). Frames carry the header when it says more than "a plain
// packet". Without GSO, a super-packet from the peer is split here into
// packets of its segment size.
type Framed struct {
	ch   ssh.Channel
	mode relay.Mode
	link offload.Link // what the packets' IP headers stand behind
	mtu  int
	gso  bool
	in   *relay.Counters

	// rbuf[r:w] are bytes read but not yet delivered. It holds several
	// whole frames, so that one channel Read serves a batch.
	rbuf []byte
	r, w int
	// A super-packet split across two Reads: its frame is still at rbuf[r:],
	// segments up to next of its total were delivered.
	next, total int
	// broken is why the stream cannot be read on: a frame length that
	// leaves no way back into step.
	broken error

	wbuf []byte // one Write's frames, sent with one channel Write

	closeOnce sync.Once
	closed    atomic.Bool
}

var _ relay.Device = (*Framed)(nil)

// FramedConfig says how to treat one stream channel.
type FramedConfig struct {
	Mode relay.Mode
	// GSO says the local device passes GSO super-packets whole, with
	// their virtio-net header in the headroom.
	GSO bool
	// In counts packets dropped on the way in; nil to not count them.
	In *relay.Counters
}

// Buffer sizes. The read buffer holds at least one frame of the largest
// size and several of the usual; the write buffer is flushed when the next
// frame would not fit, so that a batch of 64 full-size packets costs a
// handful of channel Writes.
const (
	framedReadBuf  = 256 << 10
	framedWriteBuf = 256 << 10
)

// The window of a framed channel is sized to the path: a window is also a
// queue, and every byte of it in flight delays a ping behind a download.
// x/crypto's 2 MiB covers a round trip of 5 ms at framedRate; a longer path
// gets a round trip's worth at that rate, up to framedMaxWindow (16 MiB,
// 45 ms): a fixed 16 MiB window would cost a LAN's pings under load what
// it gains a long path (bench/README.md).
const (
	xcryptoWindow   = 2 << 20
	framedMaxWindow = 16 << 20
	framedRate      = 3e9 / 8 // bytes per second: what two sshvpn endpoints carry on a fast machine
)

// FramedWindowExtra is the window a framed channel's receiver grants beyond
// x/crypto's for a path of this round-trip time (WidenWindow); 0 when
// x/crypto's suffices.
func FramedWindowExtra(rtt time.Duration) uint32 {
	want := min(rtt.Seconds()*framedRate, framedMaxWindow)
	if want <= xcryptoWindow {
		return 0
	}
	return uint32(want) - xcryptoWindow
}

// FlowWindowExtra is the window beyond x/crypto's 2 MiB that the receiver
// of a direct-tcpip flow (ssh -L, -D) grants for a path of this round
// trip: a round trip's worth at flowRate, up to flowMaxWindow. A flow's
// window is also memory: what the sender may send that the application
// has not read yet waits in the receiving process, so it is sized for one
// fast flow, not for the most a path carries (the framed channel's 16 MiB).
func FlowWindowExtra(rtt time.Duration) uint32 {
	want := min(rtt.Seconds()*flowRate, flowMaxWindow)
	if want <= xcryptoWindow {
		return 0
	}
	return uint32(want) - xcryptoWindow
}

const (
	flowMaxWindow = 8 << 20
	flowRate      = 1.5e9 / 8 // bytes per second
)

// PathRTT measures a round trip on conn with a global request nobody
// answers but with a reply (keepalive@openssh.com, as OpenSSH's own
// keepalives): what the framed channel's window is sized by. It costs one
// round trip, once per tunnel.
func PathRTT(conn ssh.Conn) (time.Duration, error) {
	start := time.Now()
	if _, _, err := conn.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// TunePath measures the round trip of the SSH path under conn and tells
// each tuner. Run it beside a stock peer's tunnel, not before it: such a
// peer answers a global request it does not know with a failure (RFC 4254
// §4), but one that never answers must not hold its tunnel up. The
// request ends with the connection at the latest.
func TunePath(conn ssh.Conn, tuners ...relay.PathTuner) {
	rtt, err := PathRTT(conn)
	if err != nil {
		return
	}
	for _, t := range tuners {
		t.SetPathRTT(rtt)
	}
}

// SizeWindow sizes ch's window to the path under conn, logs what it
// chose and returns the round trip it measured (0 when it could not).
// Both ends of a framed channel run it beside the tunnel rather than
// before it, which cost the first packet two round trips: until the
// measurement returns the channel has x/crypto's 2 MiB, all the first
// round trip of a slow start needs.
func SizeWindow(conn ssh.Conn, ch ssh.Channel, log *slog.Logger) time.Duration {
	rtt, err := PathRTT(conn)
	if err != nil {
		log.Warn("cannot measure the path's round trip; the tunnel keeps a 2 MiB window", "err", err)
		return 0
	}
	extra := FramedWindowExtra(rtt)
	if extra == 0 {
		return rtt
	}
	if err := WidenWindow(conn, ch, extra); err != nil {
		log.Warn("the tunnel keeps x/crypto's 2 MiB window, which slows long paths", "rtt", rtt, "err", err)
		return rtt
	}
	log.Debug("tunnel window sized to the path", "rtt", rtt.Round(100*time.Microsecond), "window_mib", (xcryptoWindow+extra)>>20)
	return rtt
}

// NewFramed wraps an open stream channel. The caller must keep draining
// the channel's requests.
func NewFramed(ch ssh.Channel, cfg FramedConfig) *Framed {
	s := &Framed{ch: ch, mode: cfg.Mode, link: linkOf(cfg.Mode), mtu: wire.MaxStreamPacket, gso: cfg.GSO, in: cfg.In,
		rbuf: make([]byte, framedReadBuf), wbuf: make([]byte, 0, framedWriteBuf)}
	if s.in == nil {
		s.in = new(relay.Counters)
	}
	return s
}

// BatchSize implements relay.Device.
func (s *Framed) BatchSize() int { return batch }

// MTU implements relay.Device: the largest packet a frame carries.
func (s *Framed) MTU() int { return s.mtu }

// Close implements relay.Device.
func (s *Framed) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		err = s.ch.Close()
		if errors.Is(err, io.EOF) {
			err = nil
		}
	})
	return err
}

// errFramedHeadroom is a caller's mistake: GSO packets need room for their
// header in front.
var errFramedHeadroom = fmt.Errorf("sshchan: stream with GSO needs %d bytes of headroom", offload.HdrLen)

// Read implements relay.Device. It blocks until at least one packet is
// there, then delivers every packet of the whole frames already read.
func (s *Framed) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if s.gso && offset < offload.HdrLen {
		return 0, errFramedHeadroom
	}
	if s.broken != nil {
		return 0, s.broken
	}
	n := 0
	for {
		k, err := s.deliver(bufs[n:], sizes[n:], offset)
		n += k
		if err != nil {
			// Deliver what came before; every later Read fails.
			s.broken = err
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if n > 0 {
			return n, nil
		}
		if err := s.fill(); err != nil {
			return 0, s.readErr(err)
		}
	}
}

// fill reads more of the stream, after moving what is left to the front.
func (s *Framed) fill() error {
	if s.r > 0 {
		s.w = copy(s.rbuf, s.rbuf[s.r:s.w])
		s.r = 0
	}
	m, err := s.ch.Read(s.rbuf[s.w:])
	s.w += m
	if m > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// deliver hands out the packets of the whole frames in rbuf[r:w], as many
// as bufs hold. Only a broken stream is an error.
func (s *Framed) deliver(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) {
		flags, payload, rest, known, err := wire.NextFrame(s.rbuf[s.r:s.w])
		if err == wire.ErrShort {
			return n, nil
		}
		if err != nil {
			// A length nobody sends: the stream is out of step or
			// hostile, and there is no way back into step.
			s.in.Drop(relay.DropMalformed)
			return n, fmt.Errorf("sshchan: stream: %w", err)
		}
		if !known {
			s.in.Drop(relay.DropMalformed)
			s.r = s.w - len(rest)
			continue
		}
		k, done := s.packet(flags, payload, bufs[n:], sizes[n:], offset)
		n += k
		if !done {
			return n, nil // bufs are full in the middle of a super-packet
		}
		s.r = s.w - len(rest)
		s.next = 0
	}
	return n, nil
}

// packet delivers one frame's payload into bufs: as it is, behind its
// header when the device takes GSO packets, or split into segments when
// it does not. It returns how many buffers it filled and whether the frame
// is finished with (false: resume it at s.next on the next Read).
func (s *Framed) packet(flags byte, payload []byte, bufs [][]byte, sizes []int, offset int) (int, bool) {
	var h offload.Hdr
	pkt := payload
	if flags&wire.FrameGSO != 0 {
		if len(payload) < offload.HdrLen || h.Decode(payload) != nil {
			s.in.Drop(relay.DropMalformed)
			return 0, true
		}
		pkt = payload[offload.HdrLen:]
	}
	if err := wire.CheckStreamPacket(s.mode, pkt, s.mtu); err != nil {
		s.in.Drop(dropReason(err))
		return 0, true
	}
	if flags&wire.FrameGSO != 0 && s.gso {
		// The header goes to the kernel as it is: it must describe
		// this packet, as Split would take it. The kernel's own checks
		// of headers from userspace have had bugs a peer should not
		// reach.
		if _, err := offload.Segments(s.link, pkt, h); err != nil {
			s.in.Drop(relay.DropMalformed)
			return 0, true
		}
	}
	whole := s.gso || flags&wire.FrameGSO == 0
	if whole {
		buf := bufs[0]
		if offset+len(pkt) > len(buf) {
			s.in.Drop(relay.DropOversized)
			return 0, true
		}
		if s.gso {
			h.Encode(buf[offset-offload.HdrLen : offset])
		}
		sizes[0] = copy(buf[offset:], pkt)
		return 1, true
	}
	if s.next == 0 {
		total, err := offload.Segments(s.link, pkt, h)
		if err != nil {
			s.in.Drop(relay.DropMalformed)
			return 0, true
		}
		s.total = total
	}
	k, err := offload.Split(s.link, pkt, h, s.next, bufs, sizes, offset)
	if err != nil {
		s.in.Drop(relay.DropMalformed)
		return 0, true
	}
	s.next += k
	return k, s.next >= s.total
}

// linkOf is what stands in front of the IP header in mode's packets: an
// Ethernet frame's header in ethernet mode.
func linkOf(m relay.Mode) offload.Link {
	if m == relay.Ethernet {
		return offload.Ethernet
	}
	return offload.IP
}

// readErr turns the end of the channel into net.ErrClosed after our own
// Close.
func (s *Framed) readErr(err error) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	return err
}

// Write implements relay.Device: it frames every packet into one buffer
// and sends it with as few channel Writes as the buffer's size allows.
func (s *Framed) Write(bufs [][]byte, offset int) (int, error) {
	if s.gso && offset < offload.HdrLen {
		return 0, errFramedHeadroom
	}
	s.wbuf = s.wbuf[:0]
	for i, b := range bufs {
		pkt := b[offset:]
		if len(pkt) == 0 || len(pkt) > s.mtu {
			if err := s.flush(); err != nil {
				return 0, err
			}
			return i, errBigFrame
		}
		flags, hdr := byte(0), []byte(nil)
		if s.gso && !offload.Empty(b[offset-offload.HdrLen:]) {
			flags, hdr = wire.FrameGSO, b[offset-offload.HdrLen:offset]
		}
		n := len(hdr) + len(pkt)
		if len(s.wbuf)+wire.FrameHeader+n > cap(s.wbuf) {
			if err := s.flush(); err != nil {
				return 0, err
			}
		}
		var h [wire.FrameHeader]byte
		wire.PutFrameHeader(h[:], flags, n)
		s.wbuf = append(s.wbuf, h[:]...)
		s.wbuf = append(s.wbuf, hdr...)
		s.wbuf = append(s.wbuf, pkt...)
	}
	if err := s.flush(); err != nil {
		return 0, err
	}
	return len(bufs), nil
}

// flush sends the frames gathered so far. A failed channel Write is the
// end of the stream: part of a frame may be gone.
func (s *Framed) flush() error {
	if len(s.wbuf) == 0 {
		return nil
	}
	_, err := s.ch.Write(s.wbuf)
	s.wbuf = s.wbuf[:0]
	if err != nil {
		return s.readErr(err)
	}
	return nil
}

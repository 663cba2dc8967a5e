package sshchan

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/offload"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// batch is how many queued messages one Read takes at most.
const batch = 64

// Channel is a tun@openssh.com channel as a relay.Device: each SSH message
// carries one packet (an IP packet behind an address family word, or an
// Ethernet frame). Read and Write must each be called from one goroutine
// at a time; relay.Pump does that.
type Channel struct {
	ch   ssh.Channel
	shim *chanShim // nil in stream mode: only toward an sshvpn peer
	mode relay.Mode
	mtu  int
	in   *relay.Counters

	stream  []byte // stream mode: bytes read but not yet framed
	discard []byte // room to drain a message too large for the caller's buffer

	// merge joins runs of TCP segments toward the peer's own addresses
	// (Config.Local); nil when there are none. unmerge turns it off for
	// good once the peer says a packet was too big for a link of its own,
	// or, in ethernet mode, once its frames come from a second MAC (see
	// Read).
	merge   *offload.Coalescer
	local   []netip.Prefix
	routed  []netip.Prefix
	frames  [][]byte
	unmerge atomic.Bool
	log     *slog.Logger
	// peerMAC (ethernet mode) is the source MAC of the peer's frames,
	// with macKnown set once one came; merged frames go only to it.
	peerMAC atomic.Uint64

	closeOnce sync.Once
	closed    atomic.Bool
}

var _ relay.Device = (*Channel)(nil)

// Config says how to treat one tunnel channel.
type Config struct {
	Mode relay.Mode
	MTU  int // largest IP packet (point-to-point) or frame payload (ethernet)
	// PeerVersion is the peer's SSH version string. It decides what the
	// peer is taken to charge its window per message when its adjusts do
	// not tell (see Peer), whether it is known to return window early,
	// and whether the channel may fall back to stream framing.
	PeerVersion []byte
	// In counts packets dropped on the way in because they cannot be
	// framed; nil to not count them.
	In  *relay.Counters
	Log *slog.Logger
	// Local are the networks of the peer's own addresses on the tunnel:
	// a packet to one of them is the peer's to take in, not to route on.
	// Toward an OpenSSH peer, runs of TCP segments to them are sent
	// merged, as packets of up to MergeSize bytes (frames of up to
	// wire.MaxFrame in ethernet mode), which it writes to its tun or tap
	// one per pass of its event loop, as it would one of 1500 (see
	// offload.NewPlainCoalescer). In ethernet mode only frames to the one
	// MAC the peer's frames come from merge. Nil merges nothing.
	Local []netip.Prefix
	// Routed are networks the peer routes on even inside Local (its
	// AllowedIPs): never merged.
	Routed []netip.Prefix
}

// MergeSize is the largest IP packet Channel merges toward a peer's own
// address: with its address family word, the largest datagram the framer
// takes (wire.MaxFrame), and what OpenBSD's and FreeBSD's tun take in one
// write (TUNMRU, 16 KiB); Linux takes up to 64 KiB. Eleven 1448-byte
// segments fit, so a batch of 64 takes 6 SSH messages (BenchmarkChannel;
// figures in bench/README.md).
const MergeSize = wire.MaxFrame - 4

// What a stock peer may hold unconsumed. OpenSSH grants a tunnel channel a
// 2 MiB window and writes what it receives to its tun one datagram per pass
// of its event loop, so a full window can be 1,400 datagrams queued in the
// peer, and a ping waits behind them. At most minInFlight unconsumed, or a
// round trip at framedRate when the path is longer, keeps that queue short
// at the same throughput (bench/README.md, "Why the constants are what they
// are").
const minInFlight = 512 << 10

// SetPathRTT implements relay.PathTuner: it bounds what the peer may hold
// unconsumed to what a path of this round trip needs (minInFlight, or a
// round trip at framedRate). Without it the peer's whole window is used.
//
// The cap is a queue-length policy, and RFC 4254 leaves when to return
// window to the receiver: it holds back a peer known to return window
// early (OpenSSH, sshvpn), and any other once its adjusts show it returns
// window in steps of at most half the cap. It is lifted when a write has
// waited on it for a few round trips without an adjust (capPatience), and
// back once the peer's adjusts are small again (restoreAfter): a peer
// slow for a moment keeps its short queue, one that returns window only
// at half its window is never waited for.
func (c *Channel) SetPathRTT(rtt time.Duration) {
	if c.shim != nil {
		c.shim.rtt.Store(int64(rtt))
		c.shim.maxInFlight.Store(int64(max(minInFlight, rtt.Seconds()*framedRate)))
	}
}

// Peer is what sshvpn knows of the other end from its version string.
type Peer int

const (
	// Stock is any peer that is not sshvpn: it takes every message as one
	// whole packet, so a datagram must never be split.
	Stock Peer = iota
	// OpenSSH is a stock peer that debits and credits len+4 per datagram
	// (it counts the string's length word), where every sender debits len,
	// and returns window early.
	OpenSSH
	// SSHVPN re-frames what it reads from the packets' own headers, so a
	// split write costs it nothing.
	SSHVPN
)

// PeerOf judges a peer by its version string.
func PeerOf(version []byte) Peer {
	v := string(version)
	switch {
	case strings.HasPrefix(v, "SSH-2.0-sshvpn"):
		return SSHVPN
	case strings.HasPrefix(v, "SSH-2.0-OpenSSH"):
		return OpenSSH
	}
	return Stock
}

// priorCharge is what p is taken to charge its window per message beyond the
// message, when its adjusts do not tell (see peerWindow).
func (p Peer) priorCharge() int32 {
	if p == OpenSSH {
		return 4
	}
	return 0
}

// bindFailure remembers why the shim could not bind, so that Check can
// refuse later tunnels before they are accepted.
var bindFailure atomic.Pointer[error]

// Check says whether a tunnel toward a peer with this version string can
// be carried, before its channel exists: it fails once the shim has failed
// to bind to an earlier channel and the peer needs whole messages.
func Check(peerVersion []byte) error {
	if p := bindFailure.Load(); p != nil && PeerOf(peerVersion) != SSHVPN {
		return *p
	}
	return nil
}

// New wraps an open tun@openssh.com channel. The caller must keep draining
// the channel's requests. It fails closed: when x/crypto/ssh's internals are
// out of reach, only an sshvpn peer can be served (by re-framing the
// stream); any other peer would get split datagrams, which it takes as
// corrupt packets, so New refuses and names the cause.
func New(ch ssh.Channel, cfg Config) (*Channel, error) {
	peer := PeerOf(cfg.PeerVersion)
	c := &Channel{ch: ch, mode: cfg.Mode, mtu: cfg.MTU, in: cfg.In,
		discard: make([]byte, 32<<10)}
	if c.in == nil {
		c.in = new(relay.Counters)
	}
	shim, err := newChanShim(ch)
	if err == nil {
		c.shim = shim
		shim.setPeer(peer, cfg.Log)
		// Only OpenSSH is known to take what it did not send: sshvpn
		// drops a packet larger than its MTU, other peers are untried.
		// A peer whose messages hold less than two MTU-sized packets
		// gains nothing.
		size := min(MergeSize, int(shim.maxPayload)-4)
		if cfg.Mode == relay.Ethernet {
			size = min(wire.MaxFrame, int(shim.maxPayload))
		}
		if len(cfg.Local) > 0 && peer == OpenSSH && size >= 2*1500 {
			c.local, c.routed, c.log = cfg.Local, cfg.Routed, cfg.Log
			c.merge = offload.NewPlainCoalescer(linkOf(cfg.Mode), batch, size, c.isLocal)
			c.frames = make([][]byte, 0, batch)
		}
		return c, nil
	}
	err = fmt.Errorf("x/crypto/ssh %s: %w", xcryptoVersion(), err)
	if peer != SSHVPN {
		err = fmt.Errorf("tunnel to %q refused: %w: without it sshvpn cannot send each packet as one SSH message, "+
			"which a stock peer needs; build sshvpn with the x/crypto/ssh version its go.mod names", cfg.PeerVersion, err)
		bindFailure.Store(&err)
		return nil, err
	}
	if cfg.Log != nil {
		cfg.Log.Warn("tunnel re-frames the byte stream: exact toward an sshvpn peer, but slower", "why", err)
	}
	c.stream = make([]byte, 0, 4*wire.MaxFrame)
	return c, nil
}

// newStream wraps ch in stream mode whatever the peer, for tests.
func newStream(ch ssh.Channel, cfg Config) *Channel {
	c := &Channel{ch: ch, mode: cfg.Mode, mtu: cfg.MTU, in: cfg.In, stream: make([]byte, 0, 4*wire.MaxFrame)}
	if c.in == nil {
		c.in = new(relay.Counters)
	}
	return c
}

// xcryptoVersion is the version of golang.org/x/crypto built in, for the
// error that says the shim no longer fits it.
func xcryptoVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "golang.org/x/crypto" {
				if m.Replace != nil {
					return m.Version + " (replaced by " + m.Replace.Path + " " + m.Replace.Version + ")"
				}
				return m.Version
			}
		}
	}
	return "(unknown version)"
}

// BatchSize implements relay.Device.
func (c *Channel) BatchSize() int { return batch }

// MTU implements relay.Device.
func (c *Channel) MTU() int { return c.mtu }

// Close implements relay.Device.
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

// Read implements relay.Device. It blocks for the first packet and then
// takes those already queued.
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
			if c.merge != nil {
				c.watch(bufs[n][offset : offset+sizes[n]])
			}
			n++
		}
	}
	return n, nil
}

// readMessage reads one message of size bytes into buf so that the packet
// starts at offset, and reports whether it holds a packet worth delivering.
func (c *Channel) readMessage(buf []byte, size *int, offset, n int) (bool, error) {
	start := offset
	if c.mode == relay.PointToPoint {
		start -= 4 // the address family word lands in the headroom
	}
	if start+n > len(buf) {
		c.in.Drop(relay.DropOversized)
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
func (c *Channel) decode(msg []byte) ([]byte, relay.DropReason, bool) {
	if c.mode == relay.PointToPoint {
		pkt, err := wire.DecodeL3(msg)
		if err != nil {
			return nil, dropReason(err), false
		}
		if len(pkt) > c.mtu {
			return nil, relay.DropOversized, false
		}
		return pkt, 0, true
	}
	if err := wire.DecodeL2(msg, c.mtu); err != nil {
		return nil, dropReason(err), false
	}
	return msg, 0, true
}

// dropReason maps a framer error to the counter it belongs to, without the
// allocation errors.As would cost on every dropped packet.
func dropReason(err error) relay.DropReason {
	if de, ok := errors.AsType[*relay.DropError](err); ok {
		return de.Reason
	}
	if err == wire.ErrShort {
		return relay.DropTruncated
	}
	return relay.DropMalformed
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

// Write implements relay.Device: one SSH message per packet, never split
// (in stream mode x/crypto may split it, which an sshvpn peer re-frames).
func (c *Channel) Write(bufs [][]byte, offset int) (int, error) {
	if c.merge != nil && len(bufs) > 1 && offset >= offload.HdrLen && !c.unmerge.Load() {
		return c.writeMerged(bufs, offset)
	}
	for i, b := range bufs {
		frame, err := c.encode(b, offset)
		if err != nil {
			return i, err
		}
		if c.shim != nil {
			err = c.shim.writeDatagram(frame)
		} else {
			_, err = c.ch.Write(frame)
		}
		if err != nil {
			return i, c.readErr(err)
		}
	}
	return len(bufs), nil
}

var (
	errShortFrame = &relay.DropError{Reason: relay.DropMalformed, Err: errors.New("shorter than an Ethernet header")}
	errBigFrame   = &relay.DropError{Reason: relay.DropOversized, Err: errors.New("larger than the peer takes in one message")}
)

// encode frames the packet at b[offset:] for the wire.
func (c *Channel) encode(b []byte, offset int) ([]byte, error) {
	size := len(b) - offset
	var frame []byte
	if c.mode == relay.PointToPoint {
		f, err := wire.EncodeL3(b, offset, size)
		if err != nil {
			return nil, err
		}
		frame = f
	} else {
		if size < 14 {
			return nil, errShortFrame
		}
		frame = b[offset:]
	}
	if len(frame) > wire.MaxFrame || (c.shim != nil && uint32(len(frame)) > c.shim.maxPayload) {
		return nil, errBigFrame
	}
	return frame, nil
}

// writeMerged is Write with runs of segments toward the peer merged. The
// packets are checked first, so that one that cannot be framed is
// reported by its own index, as Write promises, and those before it go
// out merged.
func (c *Channel) writeMerged(bufs [][]byte, offset int) (int, error) {
	var bad error
	n := len(bufs)
	for i, b := range bufs {
		if _, err := c.encode(b, offset); err != nil {
			n, bad = i, err
			break
		}
	}
	c.frames = c.merge.Coalesce(bufs[:n], offset, c.frames[:0])
	for _, f := range c.frames {
		frame, err := c.encode(f, offload.HdrLen)
		if err != nil {
			// Not the caller's packet n: the frame is a merge, which the
			// size limit keeps framable, or a packet checked above.
			clear(c.frames)
			return 0, fmt.Errorf("merged packet of %d bytes: %v", len(f)-offload.HdrLen, err)
		}
		if err := c.shim.writeDatagram(frame); err != nil {
			clear(c.frames)
			return 0, c.readErr(err)
		}
	}
	clear(c.frames) // do not pin the caller's buffers
	return n, bad
}

// watch turns merging off for good when a packet from the peer says it
// forwards what it is sent: an ICMP "too big" (tooBig), or in ethernet mode
// frames from a second source MAC. A peer that bridges its tap drops a
// frame larger than its MTU without a word (a bridge sends no ICMP), so
// merged frames go only to the one MAC it has shown, and only while it
// shows one: a host behind a bridge shows its own as it resolves ours.
func (c *Channel) watch(pkt []byte) {
	if c.unmerge.Load() {
		return
	}
	why := ""
	if c.mode == relay.Ethernet {
		// DecodeL2 let no frame shorter than its header through.
		if mac := macOf(pkt[6:12]); pkt[6]&1 == 0 { // a group address is no source
			if old := c.peerMAC.Load(); old != mac && !(old == 0 && c.peerMAC.CompareAndSwap(0, mac)) {
				why = "the client's frames come from more than one MAC: it bridges"
			}
		}
		if typ := uint16(pkt[12])<<8 | uint16(pkt[13]); typ == 0x0800 || typ == 0x86dd {
			pkt = pkt[14:]
		} else {
			pkt = nil
		}
	}
	if why == "" && tooBig(pkt) {
		why = "the client says a packet was too big for a link behind it"
	}
	if why != "" && !c.unmerge.Swap(true) && c.log != nil {
		c.log.Warn(why + ": no more merged packets toward it")
	}
}

// macOf packs a MAC address into a Channel.peerMAC value.
func macOf(b []byte) uint64 {
	return macKnown | uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 |
		uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// macKnown marks Channel.peerMAC as learnt.
const macKnown = 1 << 63

// isLocal says whether pkt, to dst, an IPv4 or IPv6 address as 4 or 16
// bytes, is the peer's to take in: dst is in the networks of the peer's
// own addresses, and in ethernet mode the frame goes to the peer's MAC.
func (c *Channel) isLocal(pkt, dst []byte) bool {
	if c.mode == relay.Ethernet && c.peerMAC.Load() != macOf(pkt[:6]) {
		return false // also while no MAC is known: peerMAC is 0
	}
	var a netip.Addr
	switch len(dst) {
	case 4:
		a = netip.AddrFrom4([4]byte(dst))
	case 16:
		a = netip.AddrFrom16([16]byte(dst))
	}
	return relay.ContainsAny(c.local, a) && !relay.ContainsAny(c.routed, a)
}

// tooBig reports an ICMP "fragmentation needed" (IPv4) or "packet too
// big" (ICMPv6) in pkt, a packet from the peer. The peer sends one when
// it forwards a merged packet after all, to a link whose MTU it does not
// fit: a container or VM behind it masqueraded to its tunnel address, a
// port it forwards. Merging then stops for the channel, and the sender's
// retransmits get through as they were cut.
func tooBig(pkt []byte) bool {
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4 && pkt[9] == 1:
		ihl := int(pkt[0]&0x0f) * 4
		return len(pkt) >= ihl+2 && pkt[ihl] == 3 && pkt[ihl+1] == 4
	case len(pkt) >= 41 && pkt[0]>>4 == 6 && pkt[6] == 58:
		return pkt[40] == 2
	}
	return false
}

package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// Injector queues one packet the segment built itself (an ARP payload, a
// neighbour or router advertisement, a DHCP reply) on the inner device's
// outbound path, ahead of bulk traffic, so that Read returns it like any
// packet of the stack's and the segment needs no goroutine of its own.
// Read tells an ARP payload (first nibble 0) from IP (4 or 6).
type Injector interface {
	// Inject copies p and queues the copy; false means it was dropped
	// (queue full, device closed). Safe for concurrent use.
	Inject(p []byte) bool
}

// Claimer decides on the client's SLAAC and privacy addresses: addresses
// in the advertised prefix, other than the key's stable one, that the
// client sends from. The gateway bounds them per key and keeps one key
// from taking another's.
type Claimer interface {
	// Claim reports whether the client may send from a. The segment asks
	// once per address it has not seen, and remembers the answer.
	Claim(a netip.Addr) bool
}

// DHCPReply is what a DHCP server answers: the UDP payload, to be sent
// from port 67 to port 68 of Dst.
type DHCPReply struct {
	Payload []byte
	Dst     netip.Addr
}

// DHCPFunc hands one DHCPv4 message (the UDP payload) to a server; ok
// false means no answer.
type DHCPFunc func(msg []byte, now time.Time) (reply DHCPReply, ok bool, err error)

// Config is what a Segment is built from.
type Config struct {
	// Inner is the client's layer-3 device. The Segment owns it: its
	// Close closes Inner.
	Inner    relay.Device
	Injector Injector
	// MAC and LinkLocal are the gateway's on the segment (DefaultMAC and
	// DefaultLinkLocal when zero).
	MAC       net.HardwareAddr
	LinkLocal netip.Addr
	// Local are the gateway's own addresses, IPv4 and IPv6: ARP and
	// neighbour solicitations for them are answered, for nothing else.
	Local []netip.Addr
	// Lease is the client's IPv4 address and network (DHCP hands it out):
	// the only IPv4 source the client may use besides 0.0.0.0 for DHCP.
	Lease netip.Prefix
	// Addr6 is the key's stable IPv6 address and the gateway's IPv6
	// subnet: advertised for SLAAC when it is a /64.
	Addr6 netip.Prefix
	// Routed are networks the client routes through itself (its key's
	// AllowedIPs): accepted as sources too.
	Routed []netip.Prefix
	// DNS and Domains go into router advertisements (RDNSS, DNSSL).
	DNS     []netip.Addr
	Domains []string
	// DHCP answers DHCPv4; without it DHCP is dropped.
	DHCP DHCPFunc
	// Claims decides on SLAAC addresses; without it, up to MaxSLAAC.
	Claims Claimer
	// Clock runs the router advertisement timer (the real one when nil).
	Clock Clock
	// RA is the advertisement schedule (DefaultRA when zero).
	RA RAConfig
	// Stats is where the segment counts (its own when nil).
	Stats *Stats
	Log   *slog.Logger
}

// MaxSLAAC bounds the addresses one segment accepts from the advertised
// prefix besides the key's stable one: Linux keeps at most 16 addresses
// on an interface (net.ipv6.conf.*.max_addresses), a stable SLAAC one
// and privacy ones among them, so a stock client never needs more.
const MaxSLAAC = 16

// maxRefused bounds the refused sources a segment remembers; past it,
// each is refused again without being remembered.
const maxRefused = 64

// Segment is an Ethernet segment with two stations, the client and the
// gateway, in front of the client's layer-3 device. Write takes the
// client's frames, Read gives frames to it. Write and Read may run at
// once, each from one goroutine.
type Segment struct {
	inner    relay.Device
	inject   Injector
	gwMAC    mac
	linkLoc  netip.Addr
	local4   []netip.Addr
	local6   []netip.Addr
	lease    netip.Prefix
	bcast4   netip.Addr // the lease network's broadcast address
	addr6    netip.Prefix
	prefix6  netip.Prefix // the SLAAC prefix; invalid when not a /64
	routed   []netip.Prefix
	dhcp     DHCPFunc
	claims   Claimer
	clock    Clock
	log      *slog.Logger
	stats    *Stats
	ra       *advertiser
	client   atomic.Uint64 // the client's MAC, packMAC; 0 until learnt
	closeMu  sync.Once
	closeErr error
	closed   atomic.Bool // Close began: Inject failures are no queue's fault

	// Write's own state: one goroutine.
	toStack  [][]byte
	seen4    bool
	seen6    bool
	accepted map[netip.Addr]bool // SLAAC sources decided: true accepted
	nAccept  int
}

var _ relay.Device = (*Segment)(nil)

// New builds a Segment and sends its first router advertisement.
func New(cfg Config) (*Segment, error) {
	if cfg.Inner == nil || cfg.Injector == nil {
		return nil, errors.New("segment: Config needs Inner and Injector")
	}
	s := &Segment{
		inner: cfg.Inner, inject: cfg.Injector, linkLoc: cfg.LinkLocal, lease: cfg.Lease,
		addr6: cfg.Addr6, routed: cfg.Routed, dhcp: cfg.DHCP, claims: cfg.Claims,
		clock: cfg.Clock, log: cfg.Log, stats: cfg.Stats,
		toStack: make([][]byte, 0, cfg.Inner.BatchSize()), accepted: map[netip.Addr]bool{},
	}
	m := cfg.MAC
	if m == nil {
		m = DefaultMAC
	}
	if len(m) != 6 || m[0]&1 != 0 {
		return nil, fmt.Errorf("segment: gateway MAC %s: want a unicast 48-bit MAC", m)
	}
	s.gwMAC = mac(m)
	if !s.linkLoc.IsValid() {
		s.linkLoc = DefaultLinkLocal
	}
	if !s.linkLoc.IsLinkLocalUnicast() {
		return nil, fmt.Errorf("segment: gateway link-local address %s is not link-local", s.linkLoc)
	}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.stats == nil {
		s.stats = new(Stats)
	}
	for _, a := range cfg.Local {
		if a.Is4() {
			s.local4 = append(s.local4, a)
		} else {
			s.local6 = append(s.local6, a)
		}
	}
	if s.lease.IsValid() {
		s.bcast4 = broadcast4(s.lease)
	}
	if s.addr6.IsValid() && s.addr6.Bits() == 64 {
		s.prefix6 = s.addr6.Masked()
	}
	ra, err := newAdvertiser(s, cfg)
	if err != nil {
		return nil, err
	}
	s.ra = ra
	s.ra.start()
	return s, nil
}

// broadcast4 is an IPv4 network's broadcast address.
func broadcast4(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// ClientMAC is the client's MAC, once the segment has learnt it.
func (s *Segment) ClientMAC() (net.HardwareAddr, bool) {
	m, ok := unpackMAC(s.client.Load())
	if !ok {
		return nil, false
	}
	return net.HardwareAddr(m[:]), true
}

// Stats are the segment's counters.
func (s *Segment) Stats() *Stats { return s.stats }

// Write implements relay.Device: the client's frames. Frames the segment
// answers itself (ARP, neighbour discovery, DHCP) or drops stay here; IP
// frames go on to the inner device in one batch, the same buffers past
// the Ethernet header, uncopied. A drop here is counted in Stats, not
// returned: the frames after it still go on.
func (s *Segment) Write(bufs [][]byte, offset int) (int, error) {
	now := s.clock.Now()
	ip := s.toStack[:0]
	for _, b := range bufs {
		if s.admit(b[offset:], now) {
			ip = append(ip, b)
		}
	}
	err := s.writeInner(ip, offset+HeaderLen)
	clear(ip) // hold no caller buffer past the call
	if err != nil {
		return 0, err
	}
	return len(bufs), nil
}

// writeInner writes every packet of ip to the inner device, going on past
// the packets it drops one by one (the stack counts those itself).
func (s *Segment) writeInner(ip [][]byte, offset int) error {
	for len(ip) > 0 {
		n, err := s.inner.Write(ip, offset)
		if err == nil {
			return nil
		}
		if !errors.Is(err, relay.ErrDropped) {
			return err
		}
		ip = ip[n+1:]
	}
	return nil
}

// admit takes one frame from the client and says whether its IP packet
// goes on to the stack.
func (s *Segment) admit(f []byte, now time.Time) bool {
	if len(f) < HeaderLen {
		s.stats.DropsMalformed.Add(1)
		return false
	}
	dst, src := mac(f[0:6]), mac(f[6:12])
	if !s.fromClient(src) {
		return false
	}
	p := f[HeaderLen:]
	switch binary.BigEndian.Uint16(f[12:14]) {
	case etherTypeIPv4:
		return s.ipv4(dst, p, now)
	case etherTypeIPv6:
		return s.ipv6(dst, src, p, now)
	case etherTypeARP:
		s.arp(src, p)
	case etherTypeVLAN, etherTypeQinQ, etherTypeQ91:
		s.stats.DropsTagged.Add(1)
	default:
		s.stats.DropsEtherType.Add(1)
	}
	return false
}

// fromClient is port security: the first unicast source MAC is the
// client's, and only it may send.
func (s *Segment) fromClient(src mac) bool {
	if src.multicast() {
		s.stats.DropsForeignMAC.Add(1)
		return false
	}
	v := s.client.Load()
	if v == 0 {
		s.client.Store(packMAC(src))
		s.log.Info("ethernet client's MAC learnt", "mac", src)
		return true
	}
	if v != packMAC(src) {
		s.stats.DropsForeignMAC.Add(1)
		return false
	}
	return true
}

// toGateway checks a unicast IP frame's destination MAC: anything but
// the gateway's is for nobody on this segment.
func (s *Segment) toGateway(dst mac) bool {
	switch {
	case dst == s.gwMAC:
		return true
	case dst.multicast():
		s.stats.Multicast.Add(1)
	default:
		s.stats.DropsForeignDst.Add(1)
	}
	return false
}

// Read implements relay.Device: the stack's packets, and the segment's
// own, each behind an Ethernet header written in place in the headroom.
// A unicast packet waits for nobody: before the client's MAC is known it
// is dropped and counted.
func (s *Segment) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := s.inner.Read(bufs, sizes, offset+HeaderLen)
		if n == 0 && err != nil {
			return 0, err
		}
		k := 0
		for i := range n {
			if !s.frame(bufs[i][offset : offset+HeaderLen+sizes[i]]) {
				continue
			}
			if k != i { // rare: only after a drop
				copy(bufs[k][offset:], bufs[i][offset:offset+HeaderLen+sizes[i]])
			}
			sizes[k] = HeaderLen + sizes[i]
			k++
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// frame writes the Ethernet header in front of the packet in f[HeaderLen:].
func (s *Segment) frame(f []byte) bool {
	p := f[HeaderLen:]
	if len(p) == 0 {
		s.stats.DropsOutMalformed.Add(1)
		return false
	}
	var dst mac
	var et uint16
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			s.stats.DropsOutMalformed.Add(1)
			return false
		}
		et = etherTypeIPv4
		d := p[16:20]
		switch {
		case d[0]&0xf0 == 0xe0:
			dst = ipv4MulticastMAC(d)
		case [4]byte(d) == [4]byte{255, 255, 255, 255} || (s.bcast4.IsValid() && [4]byte(d) == s.bcast4.As4()):
			dst = broadcastMAC
		default:
			return s.unicast(f, etherTypeIPv4)
		}
	case 6:
		if len(p) < 40 {
			s.stats.DropsOutMalformed.Add(1)
			return false
		}
		et = etherTypeIPv6
		if p[24] != 0xff {
			return s.unicast(f, etherTypeIPv6)
		}
		dst = ipv6MulticastMAC(p[24:40])
	case 0: // an ARP payload of the segment's own: to its target
		if len(p) < arpLen {
			s.stats.DropsOutMalformed.Add(1)
			return false
		}
		et, dst = etherTypeARP, mac(p[18:24])
	default:
		s.stats.DropsOutMalformed.Add(1)
		return false
	}
	putHeader(f, dst, s.gwMAC, et)
	return true
}

// unicast frames a packet to the client's MAC, once it is known.
func (s *Segment) unicast(f []byte, et uint16) bool {
	m, ok := unpackMAC(s.client.Load())
	if !ok {
		s.stats.DropsNoClientMAC.Add(1)
		return false
	}
	putHeader(f, m, s.gwMAC, et)
	return true
}

// BatchSize implements relay.Device: the inner device's.
func (s *Segment) BatchSize() int { return s.inner.BatchSize() }

// MTU implements relay.Device: the inner device's IP MTU, which is the
// frame less its header, as relay.Device has it for ethernet mode.
func (s *Segment) MTU() int { return s.inner.MTU() }

// Close implements relay.Device: it stops the advertisement timer, then
// closes the inner device.
func (s *Segment) Close() error {
	s.closeMu.Do(func() {
		s.closed.Store(true)
		s.ra.stop()
		s.closeErr = s.inner.Close()
	})
	return s.closeErr
}

// send queues a packet the segment built; it counts what the queue
// refused while the segment is open.
func (s *Segment) send(p []byte) {
	if !s.inject.Inject(p) && !s.closed.Load() {
		s.stats.DropsInjectFull.Add(1)
	}
}

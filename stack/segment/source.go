package segment

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"time"
)

// ipv4 takes one IPv4 packet from the client: DHCP goes to the server,
// the rest to the stack when its source is the lease (or a routed
// network) and its frame is addressed to the gateway.
func (s *Segment) ipv4(dst mac, p []byte, now time.Time) bool {
	if len(p) < 20 || p[0]>>4 != 4 {
		s.stats.DropsMalformed.Add(1)
		return false
	}
	ihl := int(p[0]&0xf) * 4
	if ihl < 20 || ihl > len(p) {
		s.stats.DropsMalformed.Add(1)
		return false
	}
	src := netip.AddrFrom4([4]byte(p[12:16]))
	if dhcpRequest(p, ihl) && (src.IsUnspecified() || src == s.lease.Addr()) {
		s.dhcpIn(p, ihl, now)
		return false
	}
	if !s.source4(src) {
		s.stats.DropsSource.Add(1)
		return false
	}
	return s.toGateway(dst)
}

// dhcpRequest says whether an IPv4 packet is an unfragmented UDP
// datagram to port 67.
func dhcpRequest(p []byte, ihl int) bool {
	return p[9] == 17 && binary.BigEndian.Uint16(p[6:8])&0x3fff == 0 && len(p) >= ihl+8 &&
		binary.BigEndian.Uint16(p[ihl+2:ihl+4]) == 67
}

// source4 checks an IPv4 source: the lease, or a network the key routes.
func (s *Segment) source4(a netip.Addr) bool {
	if s.lease.IsValid() && a == s.lease.Addr() {
		if !s.seen4 {
			s.seen4 = true
			s.log.Info("ethernet client uses its lease", "addr", a)
		}
		return true
	}
	return containsAny(s.routed, a)
}

// ipv6 takes one IPv6 packet from the client: neighbour discovery stays
// in the segment, multicast goes nowhere, the rest goes to the stack when
// its source passes source6 and its frame is addressed to the gateway.
func (s *Segment) ipv6(dst, src mac, p []byte, now time.Time) bool {
	if len(p) < 40 || p[0]>>4 != 6 {
		s.stats.DropsMalformed.Add(1)
		return false
	}
	if p[6] == protoICMPv6 && len(p) > 40 && ndType(p[40]) {
		s.nd(src, p, now)
		return false
	}
	if ndBehindExtension(p) {
		s.stats.DropsMalformed.Add(1)
		return false
	}
	if p[24] == 0xff { // MLD reports, mDNS, LLMNR: nobody here serves them
		s.stats.Multicast.Add(1)
		return false
	}
	if !s.source6(netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))) {
		s.stats.DropsSource.Add(1)
		return false
	}
	return s.toGateway(dst)
}

func ndType(t byte) bool { return t >= icmpRouterSolicitation && t <= icmpRedirect }

// IPv6 extension headers that may stand between the fixed header and an
// ND message (RFC 8200 4.1).
const (
	extHopByHop    = 0
	extRouting     = 43
	extFragment    = 44
	extDestination = 60
)

// ndBehindExtension says whether p, an IPv6 packet, carries neighbour
// discovery behind extension headers, or in a first fragment too short to
// show the ICMPv6 type. Such messages never reach nd(), and RFC 6980
// forbids fragmented ND: they are dropped, not passed to the stack, which
// would otherwise take a router advertisement or redirect unchecked. A
// chain cut short, or a header the walk does not know (AH, ESP, ...), is
// left to the stack: it carries no ND the walk could find.
func ndBehindExtension(p []byte) bool {
	next, off, first := p[6], 40, true
	for hops := 0; ; hops++ {
		switch next {
		case protoICMPv6:
			if hops == 0 {
				return false // no extension header: nd() had it
			}
			if off >= len(p) {
				return first // the type is in a later fragment, or nowhere
			}
			return first && ndType(p[off])
		case extHopByHop, extRouting, extDestination:
			if off+2 > len(p) {
				return false
			}
			next, off = p[off], off+(int(p[off+1])+1)*8
		case extFragment:
			if off+8 > len(p) {
				return false
			}
			first = first && binary.BigEndian.Uint16(p[off+2:off+4])&^7 == 0
			next, off = p[off], off+8
		default:
			return false
		}
	}
}

// source6 checks an IPv6 source: the key's stable address; link-local,
// to the gateway's link-local address only; an address in the advertised
// prefix the client may claim (SLAAC, privacy); a network the key routes.
// The unspecified address is for neighbour discovery alone.
func (s *Segment) source6(src, dst netip.Addr) bool {
	switch {
	case s.addr6.IsValid() && src == s.addr6.Addr():
		if !s.seen6 {
			s.seen6 = true
			s.log.Info("ethernet client uses its stable IPv6 address", "addr", src)
		}
		return true
	case src.IsLinkLocalUnicast():
		return dst == s.linkLoc
	case s.prefix6.IsValid() && s.prefix6.Contains(src):
		return s.slaac(src)
	}
	return containsAny(s.routed, src)
}

// slaac decides on an address in the advertised prefix the first time the
// client sends from it, and remembers: at most MaxSLAAC accepted, each
// also granted by the gateway (Claimer), never one of the gateway's.
func (s *Segment) slaac(a netip.Addr) bool {
	if ok, seen := s.accepted[a]; seen {
		return ok
	}
	ok := s.nAccept < MaxSLAAC && !slices.Contains(s.local6, a) && a != s.prefix6.Addr() &&
		(s.claims == nil || s.claims.Claim(a))
	if ok {
		s.nAccept++
		s.accepted[a] = true
		s.log.Info("ethernet client's SLAAC address accepted", "addr", a, "slaac_addresses", s.nAccept)
		return true
	}
	if s.stats.SLAACRefused.Add(1) == 1 {
		s.log.Warn("ethernet client's address refused: another key's, the gateway's, or past the bound", "addr", a, "bound", MaxSLAAC)
	}
	if len(s.accepted)-s.nAccept < maxRefused {
		s.accepted[a] = false
	}
	return false
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

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
	ihl := int(p0(p)&0xf) * 4
	if len(p) < 20 || p[0]>>4 != 4 || ihl < 20 || ihl > len(p) {
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

func p0(p []byte) byte {
	if len(p) == 0 {
		return 0
	}
	return p[0]
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
	if p[6] == protoICMPv6 && len(p) > 40 && p[40] >= icmpRouterSolicitation && p[40] <= icmpRedirect {
		s.nd(src, p, now)
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

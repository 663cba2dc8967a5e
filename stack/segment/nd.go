package segment

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/ndp"
)

const protoICMPv6 = 58

// ICMPv6 neighbour discovery types (RFC 4861).
const (
	icmpRouterSolicitation    = 133
	icmpRouterAdvertisement   = 134
	icmpNeighborSolicitation  = 135
	icmpNeighborAdvertisement = 136
	icmpRedirect              = 137
)

var allNodes = netip.MustParseAddr("ff02::1")

// nd handles one neighbour discovery message from the client. Router
// advertisements and redirects from a client are dropped (RA guard): the
// gateway is the segment's only router.
func (s *Segment) nd(src mac, p []byte, now time.Time) {
	plen := int(binary.BigEndian.Uint16(p[4:6]))
	// Every ND message is at least 8 bytes (RFC 4861 4.1-4.5); the length
	// is checked before any byte of the body is read.
	if plen < 8 || 40+plen > len(p) {
		s.stats.DropsMalformed.Add(1)
		return
	}
	body := p[40 : 40+plen]
	srcIP := netip.AddrFrom16([16]byte(p[8:24]))
	dstIP := netip.AddrFrom16([16]byte(p[24:40]))
	// RFC 4861 6.1, 7.1: hop limit 255 proves the sender is on the link.
	if p[7] != 255 || body[1] != 0 || pseudoChecksum(srcIP, dstIP, protoICMPv6, body) != 0 {
		s.stats.DropsMalformed.Add(1)
		return
	}
	if !s.ndSource(srcIP) {
		s.stats.DropsSource.Add(1)
		return
	}
	switch body[0] {
	case icmpRouterSolicitation:
		s.ra.solicited(now, srcIP)
	case icmpNeighborSolicitation:
		s.neighborSolicitation(src, srcIP, body)
	case icmpRouterAdvertisement, icmpRedirect:
		s.stats.DropsRAGuard.Add(1)
	}
	// Neighbour advertisements: the client's answers and announcements;
	// the stack needs no link addresses, so nobody listens.
}

// ndSource is what neighbour discovery may come from: the unspecified
// address (duplicate address detection), link-local, or an address the
// client may send from.
func (s *Segment) ndSource(a netip.Addr) bool {
	if a.IsUnspecified() || a.IsLinkLocalUnicast() {
		return true
	}
	return s.source6(a, netip.Addr{})
}

// neighborSolicitation answers for the gateway's own IPv6 addresses, its
// link-local one among them, and for nothing else.
func (s *Segment) neighborSolicitation(src mac, srcIP netip.Addr, body []byte) {
	m, err := ndp.ParseMessage(body)
	ns, ok := m.(*ndp.NeighborSolicitation)
	if err != nil || !ok {
		s.stats.DropsMalformed.Add(1)
		return
	}
	for _, o := range ns.Options {
		if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Source && string(l.Addr) != string(src[:]) {
			s.stats.DropsForeignMAC.Add(1)
			return
		}
	}
	t := ns.TargetAddress
	if t != s.linkLoc && !slices.Contains(s.local6, t) {
		return // the client's own DAD, or another address: not ours
	}
	// RFC 4861 7.2.4: to the solicitor, or all nodes for DAD.
	dst, solicited := srcIP, true
	if srcIP.IsUnspecified() {
		dst, solicited = allNodes, false
	}
	na := &ndp.NeighborAdvertisement{
		Router: true, Solicited: solicited, Override: true, TargetAddress: t,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: s.gwMAC[:]}},
	}
	if s.sendND(na, t, dst) {
		s.stats.NeighborAdverts.Add(1)
	}
}

// sendND marshals m into an IPv6 packet from src to dst and queues it.
func (s *Segment) sendND(m ndp.Message, src, dst netip.Addr) bool {
	body, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		s.log.Error("neighbour discovery message not built", "type", m.Type(), "err", err)
		return false
	}
	s.send(ipv6Packet(src, dst, protoICMPv6, 255, body))
	return true
}

// ipv6Packet puts a header in front of body.
func ipv6Packet(src, dst netip.Addr, next byte, hopLimit byte, body []byte) []byte {
	p := make([]byte, 40+len(body))
	p[0] = 6 << 4
	binary.BigEndian.PutUint16(p[4:6], uint16(len(body)))
	p[6], p[7] = next, hopLimit
	s16, d16 := src.As16(), dst.As16()
	copy(p[8:24], s16[:])
	copy(p[24:40], d16[:])
	copy(p[40:], body)
	return p
}

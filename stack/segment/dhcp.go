package segment

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// DHCP's ports (RFC 2131 4.1).
const (
	dhcpServerPort = 67
	dhcpClientPort = 68
)

// dhcpIn hands the DHCP message in p, an IPv4 packet of ihl header bytes
// that dhcpRequest took, to the server, and sends its answer.
func (s *Segment) dhcpIn(p []byte, ihl int, now time.Time) {
	total := min(int(binary.BigEndian.Uint16(p[2:4])), len(p))
	udp := p[ihl:max(total, ihl)]
	if len(udp) < 8 {
		s.stats.DropsMalformed.Add(1)
		return
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8 || ulen > len(udp) {
		s.stats.DropsMalformed.Add(1)
		return
	}
	if s.dhcp == nil {
		s.stats.DropsDHCP.Add(1)
		return
	}
	r, ok, err := s.dhcp(udp[8:ulen], now)
	if err != nil {
		s.stats.DropsDHCP.Add(1)
		s.log.Debug("DHCP message not answered", "err", err)
		return
	}
	if !ok {
		return
	}
	s.stats.DHCPReplies.Add(1)
	s.send(udpPacket4(s.serverAddr(), r.Dst, dhcpServerPort, dhcpClientPort, r.Payload))
}

// serverAddr is the gateway's IPv4 address on the lease's network: the
// DHCP server's identifier and the router it hands out.
func (s *Segment) serverAddr() netip.Addr {
	for _, a := range s.local4 {
		if s.lease.Contains(a) {
			return a
		}
	}
	if len(s.local4) > 0 {
		return s.local4[0]
	}
	return netip.IPv4Unspecified()
}

// udpPacket4 builds an IPv4 UDP datagram, both checksums filled in.
func udpPacket4(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[8], p[9] = 64, 17 // TTL, UDP
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	binary.BigEndian.PutUint16(p[10:12], checksum4(p[:20]))
	u := p[20:]
	binary.BigEndian.PutUint16(u[0:2], sport)
	binary.BigEndian.PutUint16(u[2:4], dport)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	copy(u[8:], payload)
	c := pseudoChecksum(src, dst, 17, u)
	if c == 0 {
		c = 0xffff // RFC 768: zero means no checksum
	}
	binary.BigEndian.PutUint16(u[6:8], c)
	return p
}

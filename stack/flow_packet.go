package stack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// flowKey is one TCP connection as the application opened it.
type flowKey struct{ src, dst netip.AddrPort }

// tcpPacket is what the terminator reads of a tun packet: whether it is
// TCP, its connection, and whether it opens one (SYN without ACK).
type tcpPacket struct {
	key    flowKey
	isTCP  bool
	opens  bool
	seq    uint32 // the SYN's sequence number, for a reset's ACK
	hasKey bool   // false for a later IPv4 fragment: no TCP header to read
}

// parseTCP reads p's IP and TCP headers without allocating. Only TCP
// right behind the IP header is TCP here: an IPv6 packet with extension
// headers goes on as a packet, as any other protocol does.
func parseTCP(p []byte) tcpPacket {
	var t tcpPacket
	var l4 []byte
	switch header.IPVersion(p) {
	case header.IPv4Version:
		if len(p) < header.IPv4MinimumSize {
			return t
		}
		ip := header.IPv4(p)
		hl := int(ip.HeaderLength())
		if ip.Protocol() != uint8(header.TCPProtocolNumber) || hl < header.IPv4MinimumSize || len(p) < hl {
			return t
		}
		t.isTCP = true
		if ip.FragmentOffset() != 0 {
			return t // gVisor reassembles it
		}
		l4 = p[hl:]
		if len(l4) < header.TCPMinimumSize {
			return t
		}
		t.key.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[12:16])), header.TCP(l4).SourcePort())
		t.key.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[16:20])), header.TCP(l4).DestinationPort())
	case header.IPv6Version:
		if len(p) < header.IPv6MinimumSize+header.TCPMinimumSize || header.IPv6(p).NextHeader() != uint8(header.TCPProtocolNumber) {
			return t
		}
		t.isTCP = true
		l4 = p[header.IPv6MinimumSize:]
		t.key.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(p[8:24])), header.TCP(l4).SourcePort())
		t.key.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(p[24:40])), header.TCP(l4).DestinationPort())
	default:
		return t
	}
	t.hasKey = true
	flags := header.TCP(l4).Flags()
	t.opens = flags&header.TCPFlagSyn != 0 && flags&(header.TCPFlagAck|header.TCPFlagRst) == 0
	t.seq = header.TCP(l4).SequenceNumber()
	return t
}

// replyTTL is the hop limit of the packets the terminator makes itself.
const replyTTL = 64

// resetFor builds, behind headroom bytes, the reset a host that refuses
// the connection answers a SYN with: from the SYN's destination, ACKing
// its sequence number.
func resetFor(syn tcpPacket, headroom int) []byte {
	src, dst := syn.key.dst, syn.key.src
	ipLen := header.IPv4MinimumSize
	if src.Addr().Is6() {
		ipLen = header.IPv6MinimumSize
	}
	b := make([]byte, headroom+ipLen+header.TCPMinimumSize)
	p := b[headroom:]
	writeIP(p, src.Addr(), dst.Addr(), header.TCPProtocolNumber, header.TCPMinimumSize)
	tcp := header.TCP(p[ipLen:])
	tcp.Encode(&header.TCPFields{
		SrcPort:    src.Port(),
		DstPort:    dst.Port(),
		AckNum:     syn.seq + 1,
		DataOffset: header.TCPMinimumSize,
		Flags:      header.TCPFlagRst | header.TCPFlagAck,
	})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addrTo(src.Addr()), addrTo(dst.Addr()), header.TCPMinimumSize)
	tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
	return b
}

// unreachableFor builds, behind headroom bytes, the ICMP or ICMPv6
// "destination unreachable" a router sends for the packet orig it could
// not deliver: host unreachable (IPv4) or address unreachable (IPv6),
// quoting as much of orig as the minimum MTU allows. It comes from the
// destination itself: the tun has no router address to send it from, and
// a host matches an ICMP error by the connection it quotes.
func unreachableFor(orig []byte, syn tcpPacket, headroom int) []byte {
	src, dst := syn.key.dst.Addr(), syn.key.src.Addr()
	if src.Is4() {
		quote := orig[:min(len(orig), 576-header.IPv4MinimumSize-header.ICMPv4MinimumSize)]
		b := make([]byte, headroom+header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(quote))
		p := b[headroom:]
		writeIP(p, src, dst, header.ICMPv4ProtocolNumber, header.ICMPv4MinimumSize+len(quote))
		icmp := header.ICMPv4(p[header.IPv4MinimumSize:])
		icmp.SetType(header.ICMPv4DstUnreachable)
		icmp.SetCode(header.ICMPv4HostUnreachable)
		copy(icmp[header.ICMPv4MinimumSize:], quote)
		icmp.SetChecksum(header.ICMPv4Checksum(icmp[:header.ICMPv4MinimumSize], checksum.Checksum(quote, 0)))
		return b
	}
	quote := orig[:min(len(orig), header.IPv6MinimumMTU-header.IPv6MinimumSize-header.ICMPv6ErrorHeaderSize)]
	b := make([]byte, headroom+header.IPv6MinimumSize+header.ICMPv6ErrorHeaderSize+len(quote))
	p := b[headroom:]
	writeIP(p, src, dst, header.ICMPv6ProtocolNumber, header.ICMPv6ErrorHeaderSize+len(quote))
	icmp := header.ICMPv6(p[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6DstUnreachable)
	icmp.SetCode(header.ICMPv6AddressUnreachable)
	copy(icmp[header.ICMPv6ErrorHeaderSize:], quote)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: icmp[:header.ICMPv6ErrorHeaderSize], Src: addrTo(src), Dst: addrTo(dst),
		PayloadCsum: checksum.Checksum(quote, 0), PayloadLen: len(quote),
	}))
	return b
}

// writeIP writes an IPv4 or IPv6 header for a payload of n bytes at the
// start of p.
func writeIP(p []byte, src, dst netip.Addr, proto tcpip.TransportProtocolNumber, n int) {
	if src.Is4() {
		ip := header.IPv4(p)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(header.IPv4MinimumSize + n),
			TTL:         replyTTL,
			Protocol:    uint8(proto),
			SrcAddr:     addrTo(src),
			DstAddr:     addrTo(dst),
		})
		ip.SetChecksum(^ip.CalculateChecksum())
		return
	}
	ip := header.IPv6(p)
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(n),
		TransportProtocol: proto,
		HopLimit:          replyTTL,
		SrcAddr:           addrTo(src),
		DstAddr:           addrTo(dst),
	})
}

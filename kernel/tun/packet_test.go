package tun

import (
	"encoding/binary"
	"net/netip"
)

// Packets built by hand, so the tests check the device against the wire
// format and not against the kernel's idea of it.

// checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudoSum sums the pseudo-header of an upper-layer checksum.
func pseudoSum(src, dst netip.Addr, proto byte, length int) uint32 {
	var sum uint32
	for _, a := range [][]byte{src.AsSlice(), dst.AsSlice()} {
		for i := 0; i < len(a); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(a[i:]))
		}
	}
	return sum + uint32(proto) + uint32(length)
}

// udp returns a UDP header and payload with its checksum set.
func udp(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	copy(b[8:], payload)
	sum := checksum(b, pseudoSum(src.Addr(), dst.Addr(), 17, len(b)))
	if sum == 0 {
		sum = 0xffff // RFC 768: zero means "no checksum"
	}
	binary.BigEndian.PutUint16(b[6:], sum)
	return b
}

// ipv4 returns an IPv4 packet, TTL 64, with header checksum.
func ipv4(src, dst netip.Addr, proto byte, id uint16, df bool, body []byte) []byte {
	b := make([]byte, 20+len(body))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], id)
	if df {
		b[6] = 0x40
	}
	b[8] = 64
	b[9] = proto
	copy(b[12:], src.AsSlice())
	copy(b[16:], dst.AsSlice())
	binary.BigEndian.PutUint16(b[10:], checksum(b[:20], 0))
	copy(b[20:], body)
	return b
}

// ipv6 returns an IPv6 packet, hop limit 64.
func ipv6(src, dst netip.Addr, proto byte, flow uint32, body []byte) []byte {
	b := make([]byte, 40+len(body))
	binary.BigEndian.PutUint32(b[0:], 6<<28|flow&0xfffff)
	binary.BigEndian.PutUint16(b[4:], uint16(len(body)))
	b[6] = proto
	b[7] = 64
	copy(b[8:], src.AsSlice())
	copy(b[24:], dst.AsSlice())
	copy(b[40:], body)
	return b
}

func udp4(src, dst netip.AddrPort, id uint16, df bool, payload []byte) []byte {
	return ipv4(src.Addr(), dst.Addr(), 17, id, df, udp(src, dst, payload))
}

func udp6(src, dst netip.AddrPort, flow uint32, payload []byte) []byte {
	return ipv6(src.Addr(), dst.Addr(), 17, flow, udp(src, dst, payload))
}

// echo4 returns an ICMP echo request or reply.
func echo4(src, dst netip.Addr, typ byte, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[2:], checksum(b, 0))
	return ipv4(src, dst, 1, 0, false, b)
}

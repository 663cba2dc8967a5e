package segment

import (
	"encoding/binary"
	"net/netip"
)

// sum adds b to the ones' complement sum acc (RFC 1071).
func sum(acc uint32, b []byte) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return ^uint16(acc)
}

// checksum4 is the Internet checksum of an IPv4 header.
func checksum4(h []byte) uint16 { return fold(sum(0, h)) }

// pseudoChecksum is an upper-layer checksum over the IPv4 or IPv6 pseudo
// header (RFC 768, RFC 8200 8.1) and b; over a datagram whose checksum
// field is filled in, it is 0 when the checksum is right.
func pseudoChecksum(src, dst netip.Addr, proto byte, b []byte) uint16 {
	acc := sum(0, src.AsSlice())
	acc = sum(acc, dst.AsSlice())
	acc += uint32(len(b)) + uint32(proto)
	return fold(sum(acc, b))
}

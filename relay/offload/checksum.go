package offload

import (
	"encoding/binary"
	"math/bits"
)

// sum is the Internet checksum's one's complement sum of b (RFC 1071),
// folded to 16 bits, as if b were read as big-endian 16-bit words.
//
// It reads little-endian 64-bit words instead and swaps the result once:
// 2^16 ≡ 1 (mod 2^16-1), so a 64-bit load is the sum of its four 16-bit
// words, and a byte swap is multiplication by 2^8 (mod 2^16-1), which
// commutes with the sum (RFC 1071 §2(B)). On amd64 that makes each load a
// plain move and the loop about four times faster than 16 bits at a time.
func sum(b []byte) uint16 {
	var acc, c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, c = bits.Add64(acc, uint64(binary.LittleEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		// A trailing odd byte is the high half of a big-endian word padded
		// with zero, hence the low half of a little-endian one.
		acc, c = bits.Add64(acc, uint64(b[0]), c)
	}
	acc, c = bits.Add64(acc, 0, c)
	acc += c // cannot carry again: acc is 0 if c is 1
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>16 + acc&0xffff
	acc = acc>>16 + acc&0xffff
	return bits.ReverseBytes16(uint16(acc))
}

// add is one's complement addition: the carry out of bit 15 wraps around.
func add(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// finish turns a sum over the whole checked range into the value to store.
// A computed checksum of 0 is sent as 0xffff, the other zero of one's
// complement arithmetic, as the kernel's skb_checksum_help does: for UDP a
// 0 means "no checksum" (and is forbidden over IPv6), for TCP both verify.
func finish(s uint16) uint16 {
	if c := ^s; c != 0 {
		return c
	}
	return 0xffff
}

// addrSum is the part of the TCP/UDP pseudo header that does not change
// between segments of one packet: both addresses and the protocol number.
func addrSum(ip []byte, v6 bool, proto uint8) uint16 {
	var s uint16
	if v6 {
		s = sum(ip[8:40])
	} else {
		s = sum(ip[12:20])
	}
	return add(s, uint16(proto))
}

// withLen adds a transport length to an addrSum. IPv6 pseudo headers carry
// a 32-bit length; the high half only matters beyond 64 KiB.
func withLen(s uint16, n int) uint16 {
	return add(add(s, uint16(n)), uint16(n>>16))
}

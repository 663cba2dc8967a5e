package offload

import (
	"encoding/binary"
	"testing"
)

// This file builds real packets for the tests, with checksums computed the
// slow, obvious way (RFC 1071, 16 bits at a time, over an explicit pseudo
// header), independently of the package's own arithmetic.

type spec struct {
	v6, udp      bool
	src, dst     []byte // 4 or 16 bytes; defaults below
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	window       uint16
	opts         []byte // TCP options, a multiple of 4 bytes
	id           uint16
	tos, ttl     uint8
	noDF         bool
	ipOpts       []byte // IPv4 options, a multiple of 4 bytes
	payload      []byte
}

var (
	src4 = []byte{10, 0, 0, 1}
	dst4 = []byte{10, 0, 0, 2}
	src6 = []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	dst6 = []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 2}
	// tsOpt is NOP NOP timestamps, as Linux sends on every segment.
	tsOpt = []byte{1, 1, 8, 10, 0, 1, 0xe2, 0x40, 0x12, 0x34, 0x56, 0x78}
)

// rfc1071 is the one's complement sum of b as big-endian words, folded.
func rfc1071(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// pseudoHdr is the TCP/UDP pseudo header as bytes (RFC 793, RFC 8200 §8.1).
func pseudoHdr(src, dst []byte, proto uint8, l4len int) []byte {
	var b []byte
	b = append(b, src...)
	b = append(b, dst...)
	if len(src) == 4 {
		b = append(b, 0, proto, byte(l4len>>8), byte(l4len))
	} else {
		b = append(b, byte(l4len>>24), byte(l4len>>16), byte(l4len>>8), byte(l4len), 0, 0, 0, proto)
	}
	return b
}

func (s spec) addrs() (src, dst []byte) {
	src, dst = s.src, s.dst
	if src == nil {
		src, dst = src4, dst4
		if s.v6 {
			src, dst = src6, dst6
		}
	}
	return src, dst
}

func (s spec) proto() uint8 {
	if s.udp {
		return 17
	}
	return 6
}

// build returns the packet s describes, every checksum valid.
func build(s spec) []byte {
	src, dst := s.addrs()
	var l4 []byte
	if s.udp {
		l4 = make([]byte, 8, 8+len(s.payload))
		binary.BigEndian.PutUint16(l4[0:], s.sport)
		binary.BigEndian.PutUint16(l4[2:], s.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(s.payload)))
	} else {
		l4 = make([]byte, 20+len(s.opts), 20+len(s.opts)+len(s.payload))
		binary.BigEndian.PutUint16(l4[0:], s.sport)
		binary.BigEndian.PutUint16(l4[2:], s.dport)
		binary.BigEndian.PutUint32(l4[4:], s.seq)
		binary.BigEndian.PutUint32(l4[8:], s.ack)
		l4[12] = byte((20 + len(s.opts)) / 4 << 4)
		l4[13] = s.flags
		binary.BigEndian.PutUint16(l4[14:], s.window)
		copy(l4[20:], s.opts)
	}
	l4 = append(l4, s.payload...)
	c := ^rfc1071(append(pseudoHdr(src, dst, s.proto(), len(l4)), l4...))
	if s.udp && c == 0 {
		c = 0xffff
	}
	at := 16
	if s.udp {
		at = 6
	}
	binary.BigEndian.PutUint16(l4[at:], c)

	ttl := s.ttl
	if ttl == 0 {
		ttl = 64
	}
	var ip []byte
	if s.v6 {
		ip = make([]byte, 40, 40+len(l4))
		ip[0] = 6<<4 | s.tos>>4
		ip[1] = s.tos << 4
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6] = s.proto()
		ip[7] = ttl
		copy(ip[8:], src)
		copy(ip[24:], dst)
	} else {
		ihl := 20 + len(s.ipOpts)
		ip = make([]byte, ihl, ihl+len(l4))
		ip[0] = 0x40 | byte(ihl/4)
		ip[1] = s.tos
		binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(l4)))
		copy(ip[20:], s.ipOpts)
		binary.BigEndian.PutUint16(ip[4:], s.id)
		if !s.noDF {
			ip[6] = 0x40
		}
		ip[8] = ttl
		ip[9] = s.proto()
		copy(ip[12:], src)
		copy(ip[16:], dst)
		binary.BigEndian.PutUint16(ip[10:], ^rfc1071(ip))
	}
	return append(ip, l4...)
}

// l3len is the IP header length of a packet build made.
func l3len(p []byte) int {
	if p[0]>>4 == 6 {
		return 40
	}
	return int(p[0]&15) * 4
}

// checkSums fails t unless p's IPv4 header checksum and TCP/UDP checksum
// verify, computed with rfc1071 over an explicit pseudo header.
func checkSums(t *testing.T, p []byte, proto uint8) {
	t.Helper()
	l3 := l3len(p)
	var src, dst []byte
	if p[0]>>4 == 6 {
		src, dst = p[8:24], p[24:40]
	} else {
		if got := rfc1071(p[:l3]); got != 0xffff {
			t.Fatalf("IPv4 header checksum does not verify (sum %#04x)", got)
		}
		src, dst = p[12:16], p[16:20]
	}
	if got := rfc1071(append(pseudoHdr(src, dst, proto, len(p)-l3), p[l3:]...)); got != 0xffff {
		t.Fatalf("transport checksum does not verify (sum %#04x)", got)
	}
}

// gso turns a packet build made into what a tun reads with offloads: the
// checksum field holding the folded pseudo-header sum, as the kernel leaves
// it, and a header whose HdrLen is the kernel's hint (here the whole first
// segment, as for forwarded packets), not the header length.
func gso(s spec, gsoSize int) ([]byte, Hdr) {
	p := build(s)
	src, dst := s.addrs()
	l3 := l3len(p)
	h := Hdr{Flags: FlagNeedsCsum, GSOSize: uint16(gsoSize), CsumStart: uint16(l3)}
	hl := l3 + 8
	if s.udp {
		h.GSOType, h.CsumOffset = GSOUDPL4, 6
	} else {
		h.GSOType, h.CsumOffset = GSOTCPv4, 16
		if s.v6 {
			h.GSOType = GSOTCPv6
		}
		hl = l3 + 20 + len(s.opts)
	}
	h.HdrLen = uint16(min(len(p), hl+gsoSize))
	at := l3 + int(h.CsumOffset)
	binary.BigEndian.PutUint16(p[at:], rfc1071(pseudoHdr(src, dst, s.proto(), len(p)-l3)))
	return p, h
}

// payload returns n bytes that differ from segment to segment.
func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>8) ^ seed
	}
	return b
}

// bufs returns n buffers of size bytes each.
func bufs(n, size int) [][]byte {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, size)
	}
	return b
}

// Ethernet frames for the tests: locally administered MACs, the second
// byte of the destination varied by the caller.
var (
	macDst = []byte{0x02, 0, 0, 0, 0, 0x02}
	macSrc = []byte{0x02, 0, 0, 0, 0, 0x01}
)

// eth puts p behind an Ethernet header to MAC macDst with its last byte
// plus dst, of the type p's version names (IPv4 for anything else).
func eth(p []byte, dst byte) []byte {
	f := make([]byte, ethHdrLen, ethHdrLen+len(p))
	copy(f, macDst)
	f[5] += dst
	copy(f[6:], macSrc)
	typ := uint16(etherIPv4)
	if len(p) > 0 && p[0]>>4 == 6 {
		typ = etherIPv6
	}
	binary.BigEndian.PutUint16(f[12:], typ)
	return append(f, p...)
}

// ethAll is eth for each packet, to the same MAC.
func ethAll(pkts [][]byte) [][]byte {
	f := make([][]byte, len(pkts))
	for i, p := range pkts {
		f[i] = eth(p, 0)
	}
	return f
}

// vlan inserts an 802.1Q tag with VLAN id vid into frame f.
func vlan(f []byte, vid uint16) []byte {
	t := make([]byte, 0, len(f)+vlanTag)
	t = append(t, f[:12]...)
	t = binary.BigEndian.AppendUint16(t, ether8021Q)
	t = binary.BigEndian.AppendUint16(t, vid)
	return append(t, f[12:]...)
}

// gsoEth is gso behind an Ethernet header, optionally tagged: what a tap
// reads, its header's offsets counted from the frame's first byte.
func gsoEth(s spec, gsoSize int, tagged bool) ([]byte, Hdr) {
	p, h := gso(s, gsoSize)
	f := eth(p, 0)
	if tagged {
		f = vlan(f, 7)
	}
	l2 := len(f) - len(p)
	h.CsumStart += uint16(l2)
	h.HdrLen += uint16(l2)
	return f, h
}

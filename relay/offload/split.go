package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors from Segments and Split. Returned errors wrap one of these, so
// errors.Is tells a caller whether to drop the packet (ErrMalformed,
// ErrUnsupported) or fix its own buffers (ErrShortBuffer).
var (
	ErrMalformed   = errors.New("offload: malformed packet")
	ErrUnsupported = errors.New("offload: unsupported GSO type")
	ErrShortBuffer = errors.New("offload: buffer too small")
)

const (
	protoTCP = 6
	protoUDP = 17

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80

	// csumTCP and csumUDP are offsetof(check) in the TCP and UDP headers,
	// the only CsumOffset values the kernel accepts for GSO.
	csumTCP = 16
	csumUDP = 6

	// maxIP is the largest IPv4 total length, and the largest IPv6 payload
	// length without a jumbogram option.
	maxIP = 65535
)

// layout is what parse learned of a GSO packet: enough to cut it without
// looking at the header again.
// Offsets count from the packet's first byte, the Ethernet header's on a
// tap.
type layout struct {
	v6    bool
	proto uint8
	l2    int // where the IP header starts: 0 on a tun, 14 or 18 on a tap
	l3    int // l2 plus the IP header with IPv6 extension headers: the transport offset
	hdr   int // l3 plus the TCP or UDP header: what every segment repeats
	gso   int // payload bytes per segment
	segs  int
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// parse checks pkt, a packet of link, against h before Split touches it.
// The header comes from the kernel and is trusted for what it means (which
// offload, where the checksum goes) but not for bounds: every offset is
// checked against the packet, so a bad header is an error, never a panic
// or a read past pkt.
func parse(link Link, pkt []byte, h Hdr) (layout, error) {
	if len(pkt) == 0 {
		return layout{}, malformed("empty packet")
	}
	if int(h.HdrLen) > len(pkt) {
		return layout{}, malformed("hdr_len %d beyond the %d-byte packet", h.HdrLen, len(pkt))
	}
	typ := h.GSOType &^ GSOECN
	if typ == GSONone {
		if h.Flags&FlagNeedsCsum != 0 {
			if at := int(h.CsumStart) + int(h.CsumOffset); at+2 > len(pkt) {
				return layout{}, malformed("checksum at %d+%d beyond the %d-byte packet", h.CsumStart, h.CsumOffset, len(pkt))
			}
		}
		return layout{segs: 1}, nil
	}

	var l layout
	l2, etherVersion, ok := link.ipStart(pkt, true)
	if !ok {
		return layout{}, malformed("GSO type %d on a frame that carries no IPv4 or IPv6 packet", h.GSOType)
	}
	ip := pkt[l2:]
	if len(ip) == 0 {
		return layout{}, malformed("no IP header in the %d-byte frame", len(pkt))
	}
	if etherVersion != 0 && ip[0]>>4 != etherVersion {
		return layout{}, malformed("IPv%d packet in a frame of Ethernet type IPv%d", ip[0]>>4, etherVersion)
	}
	l.l2 = l2
	switch typ {
	case GSOTCPv4:
		l.proto = protoTCP
	case GSOTCPv6:
		l.v6, l.proto = true, protoTCP
	case GSOUDPL4:
		l.v6, l.proto = ip[0]>>4 == 6, protoUDP
	case GSOUDP:
		return layout{}, fmt.Errorf("%w: UFO (%d): fragmenting one datagram is not done here", ErrUnsupported, h.GSOType)
	default:
		return layout{}, fmt.Errorf("%w: %d", ErrUnsupported, h.GSOType)
	}

	if l.v6 {
		if ip[0]>>4 != 6 {
			return layout{}, malformed("GSO type %d on a packet that is not IPv6", h.GSOType)
		}
		if len(ip) < 40 {
			return layout{}, malformed("IPv6 header beyond the %d-byte packet", len(ip))
		}
		if pl := int(binary.BigEndian.Uint16(ip[4:])); pl != 0 && pl != len(ip)-40 {
			return layout{}, malformed("IPv6 payload length %d, packet has %d", pl, len(ip)-40)
		}
		// Hop-by-hop and destination options do not change the pseudo
		// header; a routing header would (its last address is the one the
		// checksum covers) and a fragment header cannot be segmented, so
		// those are refused rather than sent with a wrong checksum.
		nh, off := ip[6], 40
		for nh == 0 || nh == 60 {
			if off+8 > len(ip) {
				return layout{}, malformed("IPv6 extension header beyond the packet")
			}
			nh, off = ip[off], off+(int(ip[off+1])+1)*8
		}
		if nh != l.proto {
			return layout{}, malformed("IPv6 next header %d, GSO type %d wants %d", nh, h.GSOType, l.proto)
		}
		l.l3 = l2 + off
	} else {
		if ip[0]>>4 != 4 {
			return layout{}, malformed("GSO type %d on a packet that is not IPv4", h.GSOType)
		}
		if len(ip) < 20 {
			return layout{}, malformed("IPv4 header beyond the %d-byte packet", len(ip))
		}
		ihl := int(ip[0]&0x0f) * 4
		if ihl < 20 || ihl > len(ip) {
			return layout{}, malformed("IPv4 header length %d", ihl)
		}
		// A zero total length is what the kernel writes past 64 KiB (BIG
		// TCP); any other disagreement means the caller's length is wrong.
		if tl := int(binary.BigEndian.Uint16(ip[2:])); tl != 0 && tl != len(ip) {
			return layout{}, malformed("IPv4 total length %d, packet has %d", tl, len(ip))
		}
		if ip[6]&0x3f != 0 || ip[7] != 0 {
			return layout{}, malformed("IPv4 fragment")
		}
		if ip[9] != l.proto {
			return layout{}, malformed("IPv4 protocol %d, GSO type %d wants %d", ip[9], h.GSOType, l.proto)
		}
		l.l3 = l2 + ihl
	}
	if int(h.CsumStart) != l.l3 {
		return layout{}, malformed("csum_start %d, transport header at %d", h.CsumStart, l.l3)
	}
	want := csumUDP
	if l.proto == protoTCP {
		want = csumTCP
	}
	if h.Flags&FlagNeedsCsum != 0 && int(h.CsumOffset) != want {
		return layout{}, malformed("csum_offset %d, want %d", h.CsumOffset, want)
	}
	if l.proto == protoTCP {
		if l.l3+20 > len(pkt) {
			return layout{}, malformed("TCP header beyond the packet")
		}
		thl := int(pkt[l.l3+12]>>4) * 4
		if thl < 20 || l.l3+thl > len(pkt) {
			return layout{}, malformed("TCP header length %d", thl)
		}
		l.hdr = l.l3 + thl
	} else {
		if l.l3+8 > len(pkt) {
			return layout{}, malformed("UDP header beyond the packet")
		}
		l.hdr = l.l3 + 8
	}
	if h.GSOSize == 0 {
		return layout{}, malformed("gso_size 0")
	}
	l.gso = int(h.GSOSize)
	payload := len(pkt) - l.hdr
	l.segs = max(1, (payload+l.gso-1)/l.gso)
	// Each segment must fit the 16-bit lengths it will carry.
	seg := l.hdr + min(l.gso, payload) - l.l2
	if (!l.v6 && seg > maxIP) || seg-(l.l3-l.l2) > maxIP || (l.v6 && seg-40 > maxIP) {
		return layout{}, malformed("gso_size %d makes %d-byte segments", l.gso, seg)
	}
	return l, nil
}

// Segments says how many packets Split will make of pkt, a packet of link
// that h describes (1 for GSONone), so a caller can find enough buffers
// first.
func Segments(link Link, pkt []byte, h Hdr) (int, error) {
	l, err := parse(link, pkt, h)
	return l.segs, err
}

// Split writes segments first, first+1, … of pkt into outs[i][offset:] and
// their lengths into sizes[i], as many as there are outs for; it returns how
// many it wrote. A caller with fewer outs than Segments calls again with
// first advanced by n. pkt is only read, so that retry sees it unchanged.
//
// A frame of link Ethernet has its Ethernet header, VLAN tag included,
// copied in front of every segment.
//
// Every segment leaves complete: IPv4 header checksum, TCP or UDP checksum,
// length fields, IPv4 id incremented per segment and TCP sequence advanced,
// FIN and PSH only on the last segment and CWR only on the first, as the
// kernel's own software GSO (tcp_gso_segment) does. Transport checksums are
// computed from scratch rather than from the partial sum the kernel left
// (it is only there when FlagNeedsCsum is set, and costs nothing to redo
// since the segment is being read anyway).
//
// For GSONone, Split copies pkt into outs[0]; with FlagNeedsCsum it also
// completes the checksum. That works for any packet, even an Ethernet frame
// from a tap, because the kernel already stored the pseudo-header sum in
// the checksum field: summing from CsumStart to the end, that field
// included, is the whole checksum, and only its complement remains to be
// written.
//
// An error means nothing was written (n is 0): the packet is malformed, the
// offload unsupported, or outs[i] or sizes too short for what was asked.
func Split(link Link, pkt []byte, h Hdr, first int, outs [][]byte, sizes []int, offset int) (n int, err error) {
	l, err := parse(link, pkt, h)
	if err != nil {
		return 0, err
	}
	if first < 0 || first > l.segs {
		return 0, fmt.Errorf("offload: first segment %d of %d", first, l.segs)
	}
	if offset < 0 {
		return 0, fmt.Errorf("offload: negative offset %d", offset)
	}
	n = min(l.segs-first, len(outs))
	if len(sizes) < n {
		return 0, fmt.Errorf("%w: sizes has %d entries for %d segments", ErrShortBuffer, len(sizes), n)
	}
	if n == 0 {
		return 0, nil
	}

	if h.GSOType&^GSOECN == GSONone {
		if len(outs[0]) < offset+len(pkt) {
			return 0, fmt.Errorf("%w: outs[0] has %d bytes, needs %d+%d", ErrShortBuffer, len(outs[0]), offset, len(pkt))
		}
		o := outs[0][offset : offset+len(pkt)]
		copy(o, pkt)
		if h.Flags&FlagNeedsCsum != 0 {
			cs := int(h.CsumStart)
			at := cs + int(h.CsumOffset)
			binary.BigEndian.PutUint16(o[at:], finish(sum(o[cs:])))
		}
		sizes[0] = len(pkt)
		return 1, nil
	}

	payload := len(pkt) - l.hdr
	for i := range n {
		seg := first + i
		need := offset + l.hdr + min(l.gso, payload-seg*l.gso)
		if len(outs[i]) < need {
			return 0, fmt.Errorf("%w: outs[%d] has %d bytes, segment %d needs %d", ErrShortBuffer, i, len(outs[i]), seg, need)
		}
	}

	base := addrSum(pkt[l.l2:], l.v6, l.proto)
	id := binary.BigEndian.Uint16(pkt[l.l2+4:])
	seq := uint32(0)
	if l.proto == protoTCP {
		seq = binary.BigEndian.Uint32(pkt[l.l3+4:])
	}
	for i := range n {
		seg := first + i
		start := l.hdr + seg*l.gso
		end := min(start+l.gso, len(pkt))
		size := l.hdr + end - start
		o := outs[i][offset : offset+size]
		copy(o, pkt[:l.hdr])
		copy(o[l.hdr:], pkt[start:end])

		ip := o[l.l2:]
		if l.v6 {
			binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
		} else {
			binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
			binary.BigEndian.PutUint16(ip[4:], id+uint16(seg))
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:], ^sum(ip[:l.l3-l.l2]))
		}
		t := o[l.l3:]
		csumAt := csumUDP
		if l.proto == protoTCP {
			csumAt = csumTCP
			binary.BigEndian.PutUint32(t[4:], seq+uint32(seg)*uint32(l.gso))
			if seg != l.segs-1 {
				t[13] &^= tcpFIN | tcpPSH
			}
			if seg != 0 {
				t[13] &^= tcpCWR
			}
		} else {
			binary.BigEndian.PutUint16(t[4:], uint16(len(t)))
		}
		t[csumAt], t[csumAt+1] = 0, 0
		binary.BigEndian.PutUint16(t[csumAt:], finish(add(withLen(base, len(t)), sum(t))))
		sizes[i] = size
	}
	return n, nil
}

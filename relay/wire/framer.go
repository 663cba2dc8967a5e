package wire

import (
	"encoding/binary"
	"errors"

	"github.com/sshvpn/sshvpn/relay"
)

// The framer recovers datagrams from a byte stream. OpenSSH sends exactly one
// datagram per SSH_MSG_CHANNEL_DATA (PROTOCOL §2.3), but x/crypto/ssh's
// Channel.Read returns the bytes of several queued messages at once, and its
// Channel.Write splits a write the peer's window cannot hold (golang/go#70029). So
// each datagram is re-framed from its own headers. These are pure functions
// that never allocate, fuzzed in fuzz_test.go; they become unnecessary once
// x/crypto/ssh can read one message at a time (golang/go#70029).

// MaxFrame is the largest packet the framer accepts: OpenSSH reads a tun
// device into a 16 KiB buffer (CHAN_RBUF in channels.c), so no stock peer
// sends a larger datagram. An ethernet frame may be MaxFrame bytes; an IP
// packet may be too, behind its 4-byte address family. (OpenSSH itself fits
// the address family into the same buffer, so its IP packets stop 4 bytes
// short; accepting up to MaxFrame is lenient and still fits a buffer of
// Headroom+MaxFrame.)
const MaxFrame = 16384

// ErrShort means the bytes hold only the start of a datagram. A caller that
// may read more waits for more; at a known message boundary the datagram
// is truncated and dropped.
var ErrShort = errors.New("wire: incomplete datagram")

// ErrUnknownLength means an ethernet frame's type does not tell its length
// (neither IPv4, IPv6, ARP nor an 802.3 length). A caller that knows where
// the message ends takes the whole message as the frame.
var ErrUnknownLength = errors.New("wire: ethernet type of unknown length")

var (
	errFrameTooLong = &relay.DropError{Reason: relay.DropOversized, Err: errors.New("datagram larger than MaxFrame")}
	errZeroMAC      = &relay.DropError{Reason: relay.DropMalformed, Err: errors.New("all-zero destination MAC")}
	err8023Len      = &relay.DropError{Reason: relay.DropMalformed, Err: errors.New("ethernet type field neither a type nor an 802.3 length")}
	errEtherIP      = &relay.DropError{Reason: relay.DropMalformed, Err: errors.New("ethernet type and IP version disagree")}
)

// Ethernet types and limits (IEEE 802.3, 802.1Q, RFC 826).
const (
	etherIPv4   = 0x0800
	etherARP    = 0x0806
	etherIPv6   = 0x86dd
	etherVLAN   = 0x8100 // 802.1Q customer tag
	etherQinQ   = 0x88a8 // 802.1ad service tag
	etherMinTyp = 0x0600 // smaller values are 802.3 lengths
	max8023Len  = 1500   // 1501..1535 are neither lengths nor types
	maxVLANTags = 2
	macLen      = 6
	arpFixedLen = 8  // hardware and protocol types and sizes, operation
	minFrameLen = 60 // the shortest frame on the wire, less its FCS
)

// SplitL3 recovers one point-to-point datagram from the front of b: the
// address family word plus the IP packet, whose length comes from the IPv4
// total length or the IPv6 payload length and is validated as in DecodeL3.
// frame is a prefix of b (its capacity capped) and rest the bytes after it.
//
// It returns ErrShort when b holds only a prefix of a valid datagram, and a
// *relay.DropError when b cannot start a datagram or states one larger than
// MaxFrame; then frame is nil and rest is b.
func SplitL3(b []byte) (frame, rest []byte, err error) {
	n, err := l3Len(b)
	if err != nil {
		return nil, b, err
	}
	return cut(b, n, afLen+MaxFrame)
}

// SplitL2 recovers one ethernet frame from the front of b, as SplitL3 does
// for point-to-point datagrams. The length follows from the ethernet type,
// after up to two 802.1Q/802.1ad tags: IPv4 and IPv6 from the IP header,
// ARP from its address sizes, an 802.3 length field as given. For any other
// type it returns ErrUnknownLength.
//
// Padding. Senders pad frames shorter than 60 bytes with zeros (the ethernet
// minimum, less the FCS), and a bridged frame keeps its padding, so a frame
// whose stated length L is below 60 is extended over the zero bytes that
// follow it up to 60 when every byte from L to 60, or to the end of b if b
// ends first, is zero. A zero byte there cannot start the next frame
// because SplitL2 refuses a frame whose destination MAC is all zeros (no
// station has that address), so six zero bytes are padding. When b ends
// within fewer than six zero bytes after a short frame, they may be padding
// or the start of the next frame, and SplitL2 returns ErrShort to see more.
// When b ends within six or more, the rest of the padding may still be on
// its way; a caller that reads more before splitting avoids cutting it in
// two.
func SplitL2(b []byte) (frame, rest []byte, err error) {
	n, err := l2Len(b)
	if err != nil {
		return nil, b, err
	}
	if _, _, err := cut(b, n, MaxFrame); err != nil {
		return nil, b, err
	}
	if n, err = padded(b, n); err != nil {
		return nil, b, err
	}
	return cut(b, n, MaxFrame)
}

// cut splits b after its first n bytes, a stated length that must not exceed
// limit. The oversize check comes first so a bogus length is refused at
// once instead of waiting for bytes that never come.
func cut(b []byte, n, limit int) (frame, rest []byte, err error) {
	if n > limit {
		return nil, b, errFrameTooLong
	}
	if n > len(b) {
		return nil, b, ErrShort
	}
	return b[:n:n], b[n:], nil
}

// l2Len returns the stated length of the ethernet frame at the front of b,
// without padding.
func l2Len(b []byte) (int, error) {
	if err := checkDestination(b); err != nil {
		return 0, err
	}
	hdr, etype, err := skipTags(b)
	if err != nil {
		return 0, err
	}
	n, err := payloadLen(etype, b[hdr:])
	return hdr + n, err
}

// checkDestination refuses an all-zero destination MAC, as soon as b holds
// a non-zero byte of it or all six bytes.
func checkDestination(b []byte) error {
	for _, c := range b[:min(len(b), macLen)] {
		if c != 0 {
			return nil
		}
	}
	if len(b) < macLen {
		return ErrShort
	}
	return errZeroMAC
}

// skipTags returns the header length up to and including the ethernet type,
// and that type, past up to two VLAN tags. A third tag is unusual enough to
// be left to the caller as ErrUnknownLength.
func skipTags(b []byte) (hdr int, etype uint16, err error) {
	off := 2 * macLen
	for tags := 0; ; tags++ {
		if len(b) < off+2 {
			return 0, 0, ErrShort
		}
		etype = binary.BigEndian.Uint16(b[off:])
		if etype != etherVLAN && etype != etherQinQ {
			return off + 2, etype, nil
		}
		if tags == maxVLANTags {
			return 0, 0, ErrUnknownLength
		}
		off += vlanTagLen
	}
}

// payloadLen returns the length of the payload p of an ethernet type.
func payloadLen(etype uint16, p []byte) (int, error) {
	switch {
	case etype == etherIPv4:
		return ipLenAs(p, 4)
	case etype == etherIPv6:
		return ipLenAs(p, 6)
	case etype == etherARP:
		return arpLen(p)
	case etype <= max8023Len:
		return int(etype), nil
	case etype < etherMinTyp:
		return 0, err8023Len
	}
	return 0, ErrUnknownLength
}

// ipLenAs is ipLen for a packet whose version the ethernet type announced.
func ipLenAs(p []byte, version byte) (int, error) {
	if len(p) == 0 {
		return 0, ErrShort
	}
	if p[0]>>4 != version {
		return 0, errEtherIP
	}
	return ipLen(p)
}

// arpLen reads the hardware and protocol address sizes (RFC 826): the
// packet is 8 fixed bytes then two of each address.
func arpLen(p []byte) (int, error) {
	if len(p) < 6 {
		return 0, ErrShort
	}
	return arpFixedLen + 2*(int(p[4])+int(p[5])), nil
}

// padded extends a frame of stated length n over the zero padding that
// follows it in b (see SplitL2). It returns ErrShort when b ends inside
// fewer than six zero bytes after a short frame: they may be padding, or the
// start of the next frame's destination MAC, and only more bytes tell.
func padded(b []byte, n int) (int, error) {
	if n >= minFrameLen {
		return n, nil
	}
	end := min(minFrameLen, len(b))
	for _, c := range b[n:end] {
		if c != 0 {
			return n, nil
		}
	}
	if end < minFrameLen && end > n && end-n < macLen {
		return 0, ErrShort
	}
	return end, nil
}

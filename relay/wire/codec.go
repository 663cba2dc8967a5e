package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sshvpn/sshvpn/relay"
)

// The tun@openssh.com data encoding (OpenSSH PROTOCOL §2.3): every
// SSH_MSG_CHANNEL_DATA carries one packet. In point-to-point mode the IP
// packet follows a 4-byte big-endian address family in OpenBSD numbering,
// whatever the operating systems at either end (port-tun.c translates); in
// ethernet mode the message is the bare Ethernet frame, without a header.

// Address families on the wire of a point-to-point channel. We send 2 and 24
// like OpenSSH and also accept Linux's own AF_INET6 (10), which some peers
// put on the wire untranslated (veepin, for one).
const (
	afInet       = 2  // AF_INET, the same on every system
	afInet6      = 24 // OpenBSD's AF_INET6, what OpenSSH sends
	afInet6Linux = 10 // Linux's AF_INET6, accepted on input only

	afLen = 4 // the address family word in front of an IP packet
)

// Header sizes from IEEE 802.3 and 802.1Q, used to bound ethernet frames.
const (
	ethHeaderLen  = 14 // destination and source MAC, ethertype
	vlanTagLen    = 4  // 802.1Q tag: TPID and TCI
	ipv6HeaderLen = 40
)

// Why a packet cannot be encoded or decoded. They are fixed values so that
// the codec and the framer never allocate, even on a peer's garbage.
var (
	errEmpty          = &relay.DropError{Reason: relay.DropMalformed, Err: errors.New("empty packet")}
	errNotIP          = &relay.DropError{Reason: relay.DropFamily, Err: errors.New("not an IPv4 or IPv6 packet")}
	errFamily         = &relay.DropError{Reason: relay.DropFamily, Err: errors.New("unknown address family")}
	errFamilyMismatch = &relay.DropError{Reason: relay.DropFamily, Err: errors.New("address family does not match the IP version")}
	errIHL            = &relay.DropError{Reason: relay.DropMalformed, Err: errors.New("IPv4 header length below 20 bytes")}
	errIPv4Len        = &relay.DropError{Reason: relay.DropMalformed, Err: errors.New("IPv4 total length shorter than its header")}
	errJumbo          = &relay.DropError{Reason: relay.DropMalformed, Err: errors.New("IPv6 payload length 0 (jumbogram)")}
	errTruncated      = &relay.DropError{Reason: relay.DropTruncated, Err: errors.New("shorter than its header says")}
	errTrailing       = &relay.DropError{Reason: relay.DropMalformed, Err: errors.New("bytes after the IP packet its header states")}
	errFrameShort     = &relay.DropError{Reason: relay.DropTruncated, Err: errors.New("shorter than an Ethernet header")}
	errFrameLong      = &relay.DropError{Reason: relay.DropOversized, Err: errors.New("frame larger than the MTU")}
)

// EncodeL3 frames the IP packet at buf[offset:offset+size] for a
// point-to-point channel: it writes the address family word in place into
// the headroom buf[offset-4:offset], chosen by the packet's IP version, and
// returns buf[offset-4:offset+size]. Nothing is copied.
//
// An empty or non-IP packet gives a *relay.DropError (relay.DropMalformed, relay.DropFamily);
// a caller that passes too little headroom gets a plain error.
func EncodeL3(buf []byte, offset, size int) (frame []byte, err error) {
	if offset < afLen || size < 0 || offset > len(buf)-size {
		return nil, fmt.Errorf("wire: encode L3: packet at [%d:+%d] of a %d-byte buffer needs %d bytes of headroom",
			offset, size, len(buf), afLen)
	}
	if size == 0 {
		return nil, errEmpty
	}
	var af uint32
	switch buf[offset] >> 4 {
	case 4:
		af = afInet
	case 6:
		af = afInet6
	default:
		return nil, errNotIP
	}
	binary.BigEndian.PutUint32(buf[offset-afLen:], af)
	return buf[offset-afLen : offset+size], nil
}

// DecodeL3 validates one whole point-to-point message and returns the IP
// packet it carries: msg[4:] trimmed to the length the IP header states, so
// trailing bytes after the packet are ignored. The address family must be
// one we accept and agree with the IP version (relay.DropFamily); a packet shorter
// than its header says is relay.DropTruncated; an impossible header is
// relay.DropMalformed.
func DecodeL3(msg []byte) (pkt []byte, err error) {
	if len(msg) < afLen {
		return nil, errTruncated
	}
	n, err := l3Len(msg)
	switch {
	case err == ErrShort: // unwrapped; errors.Is would allocate on a *relay.DropError
		return nil, errTruncated
	case err != nil:
		return nil, err
	case n > len(msg):
		return nil, errTruncated
	case n < len(msg):
		return nil, errTrailing
	}
	return msg[afLen:n:n], nil
}

// DecodeL2 validates one whole ethernet message for a Device whose MTU is
// mtu. The message is the frame, padding and all, as OpenSSH writes it to
// its tap: it must hold at least the 14-byte header and what its own headers
// state (DropTruncated), at most the MTU plus the header and one 802.1Q tag
// (DropOversized), and a destination and type SplitL2 would accept
// (DropMalformed). A type whose length the headers do not tell passes.
func DecodeL2(frame []byte, mtu int) error {
	if len(frame) < ethHeaderLen {
		return errFrameShort
	}
	if len(frame) > mtu+ethHeaderLen+vlanTagLen {
		return errFrameLong
	}
	n, err := l2Len(frame)
	switch {
	case err == ErrUnknownLength: // unwrapped; errors.Is would allocate on a *DropError
		return nil
	case err == ErrShort:
		return errTruncated
	case err != nil:
		return err
	case n > len(frame):
		return errTruncated
	}
	return nil
}

// l3Len returns the length of the point-to-point datagram at the front of b:
// the address family word plus the IP packet's own length. It returns
// ErrShort while b holds too little of the headers to tell.
func l3Len(b []byte) (int, error) {
	if err := checkFamily(b); err != nil {
		return 0, err
	}
	if len(b) == afLen {
		return 0, ErrShort
	}
	if !familyMatches(binary.BigEndian.Uint32(b), b[afLen]>>4) {
		return 0, errFamilyMismatch
	}
	n, err := ipLen(b[afLen:])
	return afLen + n, err
}

// checkFamily accepts the address family word at the front of b, or the
// part of it b holds: its first three bytes are zero for every family we
// accept, so garbage is refused as early as its first byte.
func checkFamily(b []byte) error {
	for _, c := range b[:min(len(b), afLen-1)] {
		if c != 0 {
			return errFamily
		}
	}
	if len(b) < afLen {
		return ErrShort
	}
	switch b[afLen-1] {
	case afInet, afInet6, afInet6Linux:
		return nil
	}
	return errFamily
}

func familyMatches(af uint32, version byte) bool {
	switch af {
	case afInet:
		return version == 4
	case afInet6, afInet6Linux:
		return version == 6
	}
	return false
}

// ipLen returns the length an IP packet states in its own header: the IPv4
// total length, or the 40-byte IPv6 header plus its payload length. It needs
// the first 4 (IPv4) or 6 (IPv6) bytes and returns ErrShort before that.
func ipLen(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, ErrShort
	}
	switch p[0] >> 4 {
	case 4:
		return ipv4Len(p)
	case 6:
		return ipv6Len(p)
	}
	return 0, errNotIP
}

func ipv4Len(p []byte) (int, error) {
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 {
		return 0, errIHL
	}
	if len(p) < 4 {
		return 0, ErrShort
	}
	total := int(binary.BigEndian.Uint16(p[2:]))
	if total < ihl {
		return 0, errIPv4Len
	}
	return total, nil
}

// ipv6Len refuses a payload length of 0, which announces a jumbogram
// (RFC 2675): its real length sits in a hop-by-hop option and it could not
// fit a tunnel datagram anyway.
func ipv6Len(p []byte) (int, error) {
	if len(p) < 6 {
		return 0, ErrShort
	}
	payload := int(binary.BigEndian.Uint16(p[4:]))
	if payload == 0 {
		return 0, errJumbo
	}
	return ipv6HeaderLen + payload, nil
}

package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/offload"
)

// StreamChannelType is the tunnel channel two sshvpn endpoints use instead
// of tun@openssh.com. tun@openssh.com sends one SSH message per packet,
// and x/crypto/ssh can neither read nor write a message at a time without
// reaching into its internals (relay/sshchan/xcrypto.go). This channel is a plain byte
// stream of length-framed packets instead: a Write carries a whole batch
// of packets in as few SSH messages as the peer's packet size allows,
// frames may exceed any SSH message (GSO super-packets up to 64 KiB), and
// there is no message boundary to keep, so no window drift.
//
// A client opens it only toward a server whose version string says sshvpn;
// a gateway that does not know it (an older sshvpn) rejects the open with
// SSH_OPEN_UNKNOWN_CHANNEL_TYPE and the client opens tun@openssh.com
// instead: one round trip, no timeout.
const StreamChannelType = "tun-stream@sshvpn"

// TunnelChannelType is StreamChannelType for a framed tunnel and
// ChannelType for any other, for messages.
func TunnelChannelType(framed bool) string {
	if framed {
		return StreamChannelType
	}
	return ChannelType
}

// StreamOpen is the type-specific data of a StreamChannelType open: the
// tun@openssh.com fields and a flags word.
type StreamOpen struct {
	OpenRequest
	// GSO says the opener's device reads and writes GSO super-packets
	// whole: the gateway may send them as they are, and should open a
	// device that gives them too.
	GSO bool
}

const (
	streamOpenLen  = openLen + 4
	streamOpenGSO  = 1 << 0
	streamOpenMask = streamOpenGSO
)

// Marshal encodes o as channel open data.
func (o StreamOpen) Marshal() []byte {
	var flags uint32
	if o.GSO {
		flags |= streamOpenGSO
	}
	return binary.BigEndian.AppendUint32(o.OpenRequest.Marshal(), flags)
}

// ParseStreamOpen decodes channel open data. Unknown flags are ignored:
// they are what a later client may offer, and offering is not asking.
func ParseStreamOpen(data []byte) (StreamOpen, error) {
	if len(data) != streamOpenLen {
		return StreamOpen{}, fmt.Errorf("malformed %s open: %d bytes of data, want %d (mode, unit and flags)", StreamChannelType, len(data), streamOpenLen)
	}
	r, err := ParseOpenRequest(data[:openLen])
	if err != nil {
		return StreamOpen{}, err
	}
	flags := binary.BigEndian.Uint32(data[openLen:])
	return StreamOpen{OpenRequest: r, GSO: flags&streamOpenGSO != 0}, nil
}

// A stream frame is a 4-byte header, flags (1 byte) and the payload's
// length (3 bytes, big endian), then the payload: an IP packet
// (point-to-point) or an Ethernet frame, behind a virtio-net header when
// FrameGSO is set.
const (
	FrameHeader = 4
	// FrameGSO marks a payload that starts with an offload.Hdr: a GSO
	// super-packet, or a packet whose checksum is left to complete.
	FrameGSO = 1 << 0
	// frameKnown are the flags this version reads; a frame with others is
	// skipped whole, so a later version can add kinds of frame.
	frameKnown = FrameGSO
)

// MaxStreamPacket is the largest packet a stream frame carries, a GSO
// super-packet or the largest IPv6 packet: the MTU of a stream channel.
const MaxStreamPacket = offload.MaxPacket

// MaxStreamPayload bounds a frame's length field.
const MaxStreamPayload = offload.HdrLen + MaxStreamPacket

// ErrFrameLength means a frame's length field is zero or larger than
// MaxStreamPayload. The stream cannot be resynchronised after it: the
// channel must close.
var ErrFrameLength = errors.New("wire: stream frame length out of range")

// PutFrameHeader writes a frame header for a payload of n bytes into
// b[:FrameHeader].
func PutFrameHeader(b []byte, flags byte, n int) {
	b[0] = flags
	b[1], b[2], b[3] = byte(n>>16), byte(n>>8), byte(n)
}

// NextFrame takes one frame from the front of b. It returns ErrShort when
// b holds only part of one (read more), ErrFrameLength when the length is
// out of range (close the stream), and otherwise the flags, the payload
// and the bytes after the frame. A frame with flags this version does not
// know is returned with known false: skip it.
func NextFrame(b []byte) (flags byte, payload, rest []byte, known bool, err error) {
	if len(b) < FrameHeader {
		return 0, nil, b, false, ErrShort
	}
	n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if n == 0 || n > MaxStreamPayload {
		return 0, nil, b, false, ErrFrameLength
	}
	if len(b) < FrameHeader+n {
		return 0, nil, b, false, ErrShort
	}
	end := FrameHeader + n
	return b[0], b[FrameHeader:end:end], b[end:], b[0]&^frameKnown == 0, nil
}

// CheckStreamPacket validates one packet taken from a stream frame, as
// DecodeL3 and DecodeL2 do for tun@openssh.com messages: in point-to-point
// mode an IPv4 or IPv6 packet whose length field states its size exactly,
// in ethernet mode a frame that DecodeL2 accepts at mtu.
func CheckStreamPacket(mode relay.Mode, pkt []byte, mtu int) error {
	if mode == relay.Ethernet {
		return DecodeL2(pkt, mtu)
	}
	if len(pkt) > mtu {
		return errFrameTooLong
	}
	n, err := ipLen(pkt)
	switch {
	case err == ErrShort || err == nil && n > len(pkt):
		return errTruncated
	case err != nil:
		return err
	case n < len(pkt):
		return errTrailing
	}
	return nil
}

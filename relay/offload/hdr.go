package offload

import (
	"encoding/binary"
	"errors"
)

// HdrLen is sizeof(struct virtio_net_hdr): the tun puts one in front of
// every packet once IFF_VNET_HDR is set, whether or not it is GSO.
const HdrLen = 10

// MaxPacket is the largest packet behind a header: the kernel's GSO limit
// is 64 KiB, and an IPv6 packet's payload length stops at 65535 behind its
// 40-byte header.
const MaxPacket = 40 + 65535

// Empty reports a header that asks nothing of its packet: no GSO, no
// checksum to complete. FlagDataValid asks nothing either: a tun sets it
// on a packet whose checksum a NIC verified (CHECKSUM_UNNECESSARY, as
// from most physical NICs and forwarded unchanged), and ignores it on
// write. b holds at least HdrLen bytes.
func Empty(b []byte) bool {
	if b[0]&^FlagDataValid != 0 {
		return false
	}
	for _, c := range b[1:HdrLen] {
		if c != 0 {
			return false
		}
	}
	return true
}

// Link is what comes in front of the IP header in the packets Split,
// Segments and a Coalescer are given.
type Link uint8

const (
	// IP is a tun's packet: the IP header from the first byte.
	IP Link = iota
	// Ethernet is a tap's frame: a 14-byte Ethernet header in front of
	// the IP packet (Split also takes one 802.1Q or 802.1ad tag in it).
	// A virtio-net header's CsumStart and HdrLen count from the frame's
	// first byte: the tap hands out and takes in the skb from its MAC
	// header on (tun_put_user, virtio_net_hdr_to_skb before
	// eth_type_trans).
	Ethernet
)

func (l Link) String() string {
	if l == Ethernet {
		return "ethernet"
	}
	return "ip"
}

// Ethernet header facts.
const (
	ethHdrLen   = 14
	vlanTag     = 4
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	ether8021Q  = 0x8100
	ether8021AD = 0x88a8
)

// ipStart returns where the IP packet starts in pkt, a packet of link l,
// and the IP version its Ethernet type names (0 for a tun's packet,
// whose version is its first nibble). tagged lets one VLAN tag stand in
// front of the type. ok is false for a frame that carries no IPv4 or
// IPv6 packet, or is too short to say.
func (l Link) ipStart(pkt []byte, tagged bool) (start int, version byte, ok bool) {
	if l != Ethernet {
		return 0, 0, true
	}
	if len(pkt) < ethHdrLen {
		return 0, 0, false
	}
	start = ethHdrLen
	typ := binary.BigEndian.Uint16(pkt[12:])
	if tagged && (typ == ether8021Q || typ == ether8021AD) {
		if len(pkt) < ethHdrLen+vlanTag {
			return 0, 0, false
		}
		start += vlanTag
		typ = binary.BigEndian.Uint16(pkt[16:])
	}
	switch typ {
	case etherIPv4:
		return start, 4, true
	case etherIPv6:
		return start, 6, true
	}
	return 0, 0, false
}

// Hdr is struct virtio_net_hdr (include/uapi/linux/virtio_net.h).
//
// HdrLen is only a hint from the kernel (skb_headlen, how much of the packet
// was linear), not the length of the headers: for forwarded packets it can
// cover the whole first segment. Split therefore ignores it beyond checking
// it lies within the packet, and finds the header length in the TCP header.
type Hdr struct {
	Flags, GSOType                         uint8
	HdrLen, GSOSize, CsumStart, CsumOffset uint16
}

// Hdr.Flags bits.
const (
	// FlagNeedsCsum is CHECKSUM_PARTIAL: the 16 bits at CsumStart+CsumOffset
	// hold the folded pseudo-header sum, and whoever finalizes the packet
	// sums from CsumStart to the end and stores the complement there.
	FlagNeedsCsum = 1
	// FlagDataValid is CHECKSUM_UNNECESSARY on the way in to a guest; the
	// tun does not act on it for packets written to it.
	FlagDataValid = 2
)

// Hdr.GSOType values. GSOECN is a bit or-ed into the others: the first
// segment carries CWR, and segmentation must clear it on the rest.
const (
	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3 // UFO: IP fragmentation of one datagram; not supported
	GSOTCPv6 = 4
	GSOUDPL4 = 5 // USO: a train of equal-size UDP datagrams
	GSOECN   = 0x80
)

// ErrShortHdr is returned by Decode for fewer than HdrLen bytes.
var ErrShortHdr = errors.New("offload: virtio_net_hdr shorter than 10 bytes")

// Decode reads h from b[:HdrLen]. The kernel writes the header in host byte
// order (the tun's vnet_le/vnet_be settings are left at their default).
func (h *Hdr) Decode(b []byte) error {
	if len(b) < HdrLen {
		return ErrShortHdr
	}
	h.Flags = b[0]
	h.GSOType = b[1]
	h.HdrLen = binary.NativeEndian.Uint16(b[2:])
	h.GSOSize = binary.NativeEndian.Uint16(b[4:])
	h.CsumStart = binary.NativeEndian.Uint16(b[6:])
	h.CsumOffset = binary.NativeEndian.Uint16(b[8:])
	return nil
}

// Encode writes h into b[:HdrLen]; it panics if b is shorter, as a slice
// index would, because every caller reserves the room by construction.
func (h Hdr) Encode(b []byte) {
	_ = b[HdrLen-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.NativeEndian.PutUint16(b[2:], h.HdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.GSOSize)
	binary.NativeEndian.PutUint16(b[6:], h.CsumStart)
	binary.NativeEndian.PutUint16(b[8:], h.CsumOffset)
}

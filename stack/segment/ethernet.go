package segment

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// HeaderLen is an Ethernet header without a VLAN tag: destination,
// source, EtherType. Read writes it in front of each packet, in the
// caller's headroom; Write strips it.
const HeaderLen = 14

// EtherTypes the segment looks at.
const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100 // 802.1Q
	etherTypeQinQ = 0x88a8 // 802.1ad
	etherTypeQ91  = 0x9100 // pre-802.1ad double tagging, still seen
)

// DefaultMAC is the gateway's MAC on every segment: locally administered
// (bit 1 of the first octet) and unicast, "sshvp" in ASCII after 02. Each
// segment holds one client and the gateway, so all may share it.
var DefaultMAC = net.HardwareAddr{0x02, 0x73, 0x73, 0x68, 0x76, 0x70}

// DefaultLinkLocal is the gateway's link-local address on every segment,
// the router address clients route through (default via fe80::1), short
// enough to type.
var DefaultLinkLocal = netip.MustParseAddr("fe80::1")

// mac is a MAC address as a comparable value.
type mac [6]byte

var broadcastMAC = mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func (m mac) multicast() bool { return m[0]&1 != 0 }

func (m mac) String() string { return net.HardwareAddr(m[:]).String() }

// packMAC packs a MAC into a uint64 with bit 63 set, so that an atomic
// zero means "not learnt yet" even for the all-zero MAC.
func packMAC(m mac) uint64 {
	var b [8]byte
	copy(b[2:], m[:])
	return binary.BigEndian.Uint64(b[:]) | 1<<63
}

func unpackMAC(v uint64) (m mac, ok bool) {
	if v&(1<<63) == 0 {
		return m, false
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	copy(m[:], b[2:])
	return m, true
}

// putHeader writes an Ethernet header into b.
func putHeader(b []byte, dst, src mac, etherType uint16) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], etherType)
}

// ipv4MulticastMAC is RFC 1112's mapping: 01:00:5e and the group's low
// 23 bits.
func ipv4MulticastMAC(dst []byte) mac {
	return mac{0x01, 0x00, 0x5e, dst[1] & 0x7f, dst[2], dst[3]}
}

// ipv6MulticastMAC is RFC 2464's mapping: 33:33 and the group's low 32
// bits.
func ipv6MulticastMAC(dst []byte) mac {
	return mac{0x33, 0x33, dst[12], dst[13], dst[14], dst[15]}
}

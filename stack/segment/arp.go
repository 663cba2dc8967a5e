package segment

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// arpLen is an ARP packet for IPv4 over Ethernet (RFC 826).
const arpLen = 28

const (
	arpRequest = 1
	arpReply   = 2
)

// arp answers a request for one of the gateway's own IPv4 addresses, and
// nothing else: never a client's, so no client learns a way to another
// through the gateway's MAC. The sender's MAC must be the frame's.
func (s *Segment) arp(src mac, p []byte) {
	if len(p) < arpLen || binary.BigEndian.Uint16(p[0:2]) != 1 || binary.BigEndian.Uint16(p[2:4]) != etherTypeIPv4 ||
		p[4] != 6 || p[5] != 4 {
		s.stats.DropsMalformed.Add(1)
		return
	}
	if mac(p[8:14]) != src {
		s.stats.DropsForeignMAC.Add(1)
		return
	}
	target := netip.AddrFrom4([4]byte(p[24:28]))
	if binary.BigEndian.Uint16(p[6:8]) != arpRequest || !slices.Contains(s.local4, target) {
		return // the client's own probes and announcements, or not ours
	}
	var r [arpLen]byte
	copy(r[0:6], p[0:6]) // hardware and protocol types and sizes
	binary.BigEndian.PutUint16(r[6:8], arpReply)
	copy(r[8:14], s.gwMAC[:])
	copy(r[14:18], p[24:28]) // sender: the address asked for
	copy(r[18:28], p[8:18])  // target: the requester
	s.stats.ARPReplies.Add(1)
	s.send(r[:])
}

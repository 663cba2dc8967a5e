package segment

import (
	"log/slog"
	"sync/atomic"
)

// Stats are one segment's counters. Drops are counted per reason; the
// frames the segment answers itself are counted by what it sent back.
type Stats struct {
	// From the client.
	DropsForeignMAC atomic.Uint64 // a source MAC not the client's, or multicast (port security)
	DropsTagged     atomic.Uint64 // 802.1Q and 802.1ad tagged frames
	DropsEtherType  atomic.Uint64 // neither IPv4, IPv6 nor ARP
	DropsMalformed  atomic.Uint64 // too short, bad header, bad ND checksum or hop limit
	DropsSource     atomic.Uint64 // an IP source the client may not use
	DropsForeignDst atomic.Uint64 // unicast to a MAC that is not the gateway's
	DropsRAGuard    atomic.Uint64 // router advertisements and redirects from the client
	DropsDHCP       atomic.Uint64 // DHCP messages the server refused, or no server
	// SLAACRefused counts addresses in the advertised prefix refused
	// (another key's, the gateway's, or past MaxSLAAC), once each.
	SLAACRefused atomic.Uint64
	// Multicast counts multicast and broadcast the segment serves nobody
	// (mDNS, LLMNR, IGMP and MLD reports): not errors, not passed on.
	Multicast atomic.Uint64

	// To the client.
	DropsNoClientMAC  atomic.Uint64 // unicast before the client's MAC was learnt
	DropsOutMalformed atomic.Uint64 // neither IP nor ARP: a bug if ever seen
	DropsInjectFull   atomic.Uint64 // the segment's own packets the queue refused

	// The segment's own answers.
	ARPReplies, NeighborAdverts, RouterAdverts, DHCPReplies atomic.Uint64
	// RSDeferred counts solicitations answered later, by one
	// advertisement, for RFC 4861's rate limit.
	RSDeferred atomic.Uint64
}

// LogValue implements slog.LogValuer: the counters that are not zero.
func (s *Stats) LogValue() slog.Value {
	var attrs []slog.Attr
	for _, c := range []struct {
		name string
		v    *atomic.Uint64
	}{
		{"drops_foreign_mac", &s.DropsForeignMAC}, {"drops_tagged", &s.DropsTagged},
		{"drops_ethertype", &s.DropsEtherType}, {"drops_malformed", &s.DropsMalformed},
		{"drops_source", &s.DropsSource}, {"drops_foreign_dst", &s.DropsForeignDst},
		{"drops_ra_guard", &s.DropsRAGuard}, {"drops_dhcp", &s.DropsDHCP},
		{"slaac_refused", &s.SLAACRefused}, {"multicast", &s.Multicast},
		{"drops_no_client_mac", &s.DropsNoClientMAC}, {"drops_out_malformed", &s.DropsOutMalformed},
		{"drops_inject_full", &s.DropsInjectFull},
		{"arp_replies", &s.ARPReplies}, {"neighbor_adverts", &s.NeighborAdverts},
		{"router_adverts", &s.RouterAdverts}, {"dhcp_replies", &s.DHCPReplies}, {"rs_deferred", &s.RSDeferred},
	} {
		if v := c.v.Load(); v != 0 {
			attrs = append(attrs, slog.Uint64(c.name, v))
		}
	}
	return slog.GroupValue(attrs...)
}

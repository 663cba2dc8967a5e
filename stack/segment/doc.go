// Package segment turns the rootless gateway's per-client layer-3 stack
// into an Ethernet segment, for stock clients that open an ethernet tunnel
// (ssh -o Tunnel=ethernet -w 0:any) onto a tap. The segment holds exactly
// two stations: the client and the gateway, its router. It never imports
// gVisor: the stack underneath is a relay.Device that can also queue a raw
// packet of the segment's own (Injector).
//
//   - segment.go: Segment, the relay.Device; Config; what Write keeps for
//     itself and what it passes on with the Ethernet header stripped, in
//     place; Read writing the header in place in front of the stack's
//     packets.
//   - ethernet.go: Ethernet header fields, the gateway's MAC and how IP
//     destinations map to multicast and broadcast MACs.
//   - source.go: the source address checks (the lease, the key's stable
//     IPv6 address, link-local, SLAAC addresses claimed through Claimer).
//   - arp.go: ARP replies for the gateway's own IPv4 addresses only.
//   - nd.go: neighbour solicitations for the gateway's IPv6 addresses and
//     router solicitations; RA guard.
//   - ra.go: router advertisements, their contents and their RFC 4861
//     schedule (one timer per segment, on a Clock tests replace).
//   - dhcp.go: DHCPv4 handed to a DHCP server (package stack/dhcpd in the
//     gateway), its replies sent back as IPv4+UDP packets.
//   - checksum.go: the Internet checksum, for the packets built here.
//   - stats.go: the counters, drops per reason.
//
// Port security: the first unicast source MAC the tunnel carries is the
// client's; frames from any other, and 802.1Q/802.1ad tagged frames, are
// dropped and counted. The gateway answers ARP and neighbour solicitations
// for its own addresses and never for anyone else's, so a client cannot
// learn a route to another client through the segment, and the stack's
// egress policy denies the subnets to whatever is routed through the
// gateway.
package segment

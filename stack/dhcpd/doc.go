// Package dhcpd is the rootless gateway's DHCPv4 server for Ethernet
// tunnels: each client's tunnel is an Ethernet segment of its own, with the
// gateway as its one router and one address to lease, the client key's
// stable IPv4 address (the one it gets over a layer-3 tunnel too, whatever
// MAC it uses). The segment hands Server.Handle every message the client
// sends to UDP port 67 and sends back the Reply, addressed as RFC 2131 4.1
// says.
//
// It is ours rather than insomniacslk/dhcp's server4, whose wire format it
// uses: server4 needs a socket and spends a goroutine and a buffer per
// packet, and the servers built on it (gvisor-tap-vsock's) answer no NAK,
// DECLINE or INFORM. Here a lease is one address and a small state machine
// (RFC 2131 4.3: SELECTING, INIT-REBOOT, RENEWING, REBINDING, RELEASE,
// DECLINE, INFORM), called per message without a socket, so it is tested
// message by message and fuzzed.
//
//	config.go  Config, its checks and defaults (DefaultLeaseTime)
//	server.go  Server, Handle: parse, then dispatch by message type; Stats
//	answer.go  what each message type gets, by the client's state
//	reply.go   Reply: options, and where a reply goes (RFC 2131 4.1)
//	lease.go   the one lease: held until when, by which MAC, logged when news
package dhcpd

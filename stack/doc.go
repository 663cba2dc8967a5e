// Package stack holds sshvpn's gVisor userspace TCP/IP stacks, each a
// relay.Device, with no privilege and nothing changed on the host.
//
// On the gateway it is the rootless backend: each tunnel, point-to-point
// or ethernet, gets a stack of its own whose forwarders re-originate the
// client's TCP, UDP and ping from the gateway process's ordinary sockets,
// under an egress policy and per-client limits.
//
// On the client, Local is the stack of a rootless client with no device:
// it owns the tunnel's addresses, as a kernel tun would, and gives the
// client process's own proxies sockets through the tunnel.
//
//   - gateway.go: Gateway, the relay.Opener: subnets, the gateway's and
//     clients' addresses, one client stack per tunnel.
//   - policy.go: the egress policy and DNS a reload (SetRules, SetDNS)
//     changes, and each client's policy rebuilt on the gateway's.
//   - client.go: one client's stack, its Limits and Stats; Close ends
//     everything the client holds at once.
//   - group.go: the per-client owner of goroutines and host sockets.
//   - endpoint.go, codel.go: the link between the SSH channel and the
//     stack, its outbound queue with a fast lane and CoDel.
//   - forward_tcp.go, forward_udp.go: TCP (dialled before the handshake
//     completes) and UDP flows.
//   - icmp.go, pinger.go: echo requests through one unprivileged ping
//     socket per client and family, never a fake reply; pingsockets.go:
//     whether the host allows them, looked for again while it does not.
//   - dns.go: the gateway's DNS on its virtual addresses (dnsproxy), judged
//     by the client's policy.
//   - stream.go: direct-tcpip (ssh -L, -D, -W) under the same policy.
//   - memory.go: what a client's flows hold, against Limits.Memory.
//   - tune.go: the stack's TCP settings, and why.
//   - local.go: Local, the client's stack: its NIC, addresses, routes
//     and Update; local_dial.go its TCP dial, whose errors wrap errnos;
//     local_udp.go its dual-family UDP socket; local_dns.go its lookups
//     through the tunnel's name servers, never the host's.
//   - flow.go: FlowTerminator, the kernel client's --transport flow: a
//     relay.Device in front of its tun that terminates TCP in a stack of
//     its own and carries each connection as a stream Dial opens;
//     flow_splice.go the handshake after the dial and the two copies;
//     flow_packet.go the headers it reads and the resets and ICMP
//     unreachables it writes.
//   - ethernet.go: an ethernet tunnel: the same stack behind a segment
//     (package segment) with a DHCP server (package dhcpd), its MTU, its
//     status text, and the SLAAC addresses each key holds.
//
// Sub-packages: dnsproxy (the caching DNS forwarder), egress (the policy),
// hostaddr (the host's own addresses, followed as they change), segment
// (an Ethernet segment in front of a client's stack), dhcpd (its DHCPv4
// server).
package stack

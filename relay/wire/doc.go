// Package wire is the tun@openssh.com format: how packets, the channel
// open and sshvpn's tunnel-config request look on the wire. It is pure (no
// I/O, no SSH library), allocation-free on the packet path, and fuzzed.
//
//   - codec.go: a packet in one SSH message (OpenSSH PROTOCOL §2.3): in
//     point-to-point mode a 4-byte address family in OpenBSD numbering, then
//     the IP packet; in ethernet mode the bare frame.
//   - framer.go: recovers datagrams from a byte stream by their own headers,
//     for the transports that do not keep message boundaries.
//   - open.go: the channel open's mode and unit.
//   - tunnelconfig.go: the tunnel-config@sshvpn request that tells an sshvpn
//     client its addresses.
package wire

// Package relay carries packets between SSH channels and packet devices.
//
// It speaks OpenSSH's tun@openssh.com channel (PROTOCOL §2.3): a channel
// opened with a tunnel mode (point-to-point or ethernet) and a unit number,
// whose every SSH_MSG_CHANNEL_DATA holds exactly one packet. In
// point-to-point mode the packet is preceded by a 4-byte address family in
// OpenBSD numbering (2 for IPv4, 24 for IPv6); in ethernet mode it is the bare
// frame.
//
// Everything that moves packets is a Device. Channel adapts an ssh.Channel,
// the kernel and stack packages adapt tun/tap devices and the userspace
// stack, and Pump joins two Devices in both directions.
package relay

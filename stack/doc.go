// Package stack will hold the rootless backend: a gVisor userspace TCP/IP
// stack as a relay.Device, with NAT forwarders for TCP, UDP and ICMP echo,
// DNS, and DHCP and router advertisements on layer-2 tunnels
// (DESIGN.md §4). Until it lands, sshvpn serve has only --backend kernel.
package stack

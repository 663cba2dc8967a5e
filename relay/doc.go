// Package relay is sshvpn's packet core: what every backend and every
// transport shares, and nothing else. It imports the standard library only,
// so the kernel and userspace backends link no SSH code.
//
//   - device.go: Device, the batched packet interface everything that moves
//     packets implements (an SSH channel, a kernel tun/tap, the userspace
//     stack), and DropError for packets a Write refuses one by one.
//   - stats.go: DropReason and Counters, per direction.
//   - pump.go: Pump joins two Devices in both directions, a batch at a time,
//     without allocating.
//   - mode.go: the tunnel modes (point-to-point, ethernet) and AnyUnit.
//   - tunnel.go: what a backend provides for one tunnel (Opener, Tunnel,
//     TunnelConfig).
//
// The SSH side lives in sub-packages: wire (the tun@openssh.com format,
// pure), sshchan (an SSH channel as a Device), gateway (the server),
// reconnect (the client's supervisor), keepalive and sshclient.
package relay

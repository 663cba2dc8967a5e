// Package gateway is sshvpn's SSH server: it authenticates clients as sshd
// would, accepts tun@openssh.com channels under sshd's rules, and hands each
// tunnel to a backend (relay.Opener), pumping packets between the two.
//
//   - server.go: Server, accepting connections, bounding handshakes,
//     keepalives toward clients.
//   - conn.go: one authenticated connection, its channels and tunnels.
//   - session.go: the session channel that shows a stock client its
//     tunnel's status, so `ssh -w` works without -N.
//   - policy.go: PermitTunnel and the key's tunnel= and restrict options.
//   - authkeys.go: authorized_keys, read as sshd reads it.
//   - hostkey.go: the gateway's host key, made on first start.
package gateway

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
//   - certs.go: user certificates signed by a cert-authority line's CA,
//     judged and their options merged with the line's as sshd does.
//   - hostkey.go: the gateway's host key, made on first start.
//   - load.go: how many connections and tunnels it carries now, cheaply.
package gateway

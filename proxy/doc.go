// Package proxy is the local listener side of the rootless client: a
// SOCKS5 (RFC 1928, with RFC 1929 passwords and UDP ASSOCIATE), SOCKS4 and
// SOCKS4a, and HTTP proxy (CONNECT and absolute URIs) on one port, and ssh
// -L style port forwards. It knows nothing of SSH or of a network stack:
// each TCP flow goes to a DialFunc with the destination exactly as the
// client named it (so names resolve at the far end, never here), and UDP
// to a Datagrams.
//
//   - server.go: Config, Server and Serve; one connection's handshake
//     reader, dial and splice.
//   - accept.go: the accept loop Server and Forward share: MaxConns, the
//     handshake budget (the oldest connection still in its handshake gives
//     way to a new one), refusal replies, and the owner that closes every
//     connection and waits for every goroutine when Serve returns.
//   - parse.go: pure parsers of SOCKS4/4a/5 requests and the SOCKS5 UDP
//     header (fuzzed).
//   - socks5.go, socks4.go: the two SOCKS dialogues.
//   - udp.go: one UDP ASSOCIATE: two sockets, two loops, no allocation per
//     datagram; at most maxAssociations per listener.
//   - sockowner_linux.go: who owns a loopback socket, from /proc/net
//     (sockowner_other.go: nobody knows, elsewhere).
//   - fileowner_unix.go: the credentials file's owner check.
//   - http.go: the HTTP front: CONNECT, and absolute-URI requests through a
//     net/http Transport that dials only through DialFunc.
//   - splice.go: copying both ways with half-close, from pooled buffers.
//   - forward.go: Forward, ssh -L.
//   - errors.go: the sentinel errors a DialFunc wraps and how each
//     protocol reports them.
//   - stats.go: Stats, the counters of a Server or Forward.
//   - spec.go: ParseDynamic and ParseLocal, ssh's -D and -L grammar.
//   - credentials.go: Credentials and LoadCredentials.
//
// Who may use a UDP association: RFC 1928 ties it to the client's address,
// and most clients name port 0, so the association locks onto the first
// source port that arrives from the control connection's IP. On loopback
// every local user shares that IP, so on Linux the association locks only
// onto a source whose socket belongs to the same uid as the control
// connection's client socket (read once, from /proc/net). Off loopback a
// datagram is trusted on its source address alone, which anyone on the
// same LAN can forge: with -g, a SOCKS5 UDP association is only as safe as
// the network between the client and this host.
package proxy

// Package sshchantest plays stock tun@openssh.com peers whose receivers
// keep their window as they like, over real SSH on real sockets, so that
// tests can prove sshvpn's sender carries on toward each.
//
// RFC 4254 leaves to the receiver when it returns window, and the
// implementations differ in what one datagram costs: OpenSSH returns
// window after 96 KiB consumed or half its window gone, and counts len+4
// per datagram; asyncssh returns it only when less than half is left, and
// counts len-4 (it strips the address family word first). A Peer receives
// with any such Policy, checks that the sender never sent more than its
// own count of the window allowed (as OpenSSH's "rcvd too much data" and
// asyncssh's "Window exceeded" do), and sends with sshvpn's own Channel.
//
// A Peer is a relay.Device: pump it to a kernel tun (as ssh -w does) or
// to an in-memory device.
//
//   - policy.go: Policy and the receivers played.
//   - peer.go: Peer, its window and its checks.
//   - conn.go: Dial (the peer as an SSH client) and Accept (as a server).
package sshchantest

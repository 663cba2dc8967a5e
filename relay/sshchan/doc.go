// Package sshchan carries a tunnel over one SSH channel: Channel is a
// tun@openssh.com channel as a relay.Device, one packet per SSH message.
//
// It is the only package that reaches into golang.org/x/crypto/ssh's
// internals (xcrypto.go, golang/go#70029): the public API cannot write a
// datagram as exactly one message, charge the window the way the peer does,
// or read one message at a time. When those internals move, New fails
// closed for every peer but sshvpn, and TestChanShimMatchesXCrypto fails.
//
//   - device.go: NewDevice, one side of a tunnel channel (framed or
//     tun@openssh.com) as a relay.Device, sized to its path; gateway and
//     client both make theirs with it.
//   - channel.go: Channel, its Config and the peer kinds.
//   - xcrypto.go: the shim, with its layout checks, and Disconnect.
//   - sendwindow.go: what Channel may send: the peer's window as the peer
//     counts it, and the in-flight cap with its patience.
//   - peerwindow.go: learning what a datagram costs the peer's window from
//     the adjusts it sends.
//   - receiver.go: Receiver, a channel's messages without x/crypto's window
//     policy, for test peers (sshchantest) that keep one of their own.
//   - stream.go: re-framing the byte stream, toward an sshvpn peer only.
package sshchan

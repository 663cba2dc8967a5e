package wire_test

import (
	"fmt"

	"github.com/sshvpn/sshvpn/relay/wire"
)

// SplitL3 recovers point-to-point datagrams from bytes in which
// x/crypto/ssh has run several SSH messages together.
func ExampleSplitL3() {
	ipv4 := []byte{0x45, 0, 0, 20, 16: 198, 18, 0, 1}
	ipv6 := []byte{0x60, 0, 0, 0, 0, 8, 17, 64, 47: 0}
	var stream []byte
	stream = append(stream, 0, 0, 0, 2) // AF_INET
	stream = append(stream, ipv4...)
	stream = append(stream, 0, 0, 0, 24) // OpenBSD's AF_INET6
	stream = append(stream, ipv6...)
	stream = append(stream, 0, 0, 0, 2, 0x45, 0) // the start of a third

	for {
		frame, rest, err := wire.SplitL3(stream)
		if err != nil {
			fmt.Println(err)
			break
		}
		pkt, _ := wire.DecodeL3(frame)
		fmt.Printf("%d-byte datagram: IPv%d packet of %d bytes\n", len(frame), pkt[0]>>4, len(pkt))
		stream = rest
	}
	// Output:
	// 24-byte datagram: IPv4 packet of 20 bytes
	// 52-byte datagram: IPv6 packet of 48 bytes
	// wire: incomplete datagram
}

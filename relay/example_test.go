package relay_test

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// A Pump joins two Devices: here fakes stand for a tun device and an SSH
// channel. Packets injected into one come out of the other.
func ExamplePump() {
	tun, channel := relaytest.New(1500, 32), relaytest.New(1500, 32)
	var up, down relay.Counters
	pump := relay.NewPump(tun, channel, &up, &down, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pump.Run(ctx) }()

	ping := make([]byte, 84)
	ping[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(ping[2:], 84)
	tun.Inject(ping)
	pkt, _ := channel.Recv(ctx)
	fmt.Printf("channel got %d bytes of IPv%d\n", len(pkt), pkt[0]>>4)

	cancel()
	fmt.Println("Run:", <-done)
	s := up.Snapshot()
	fmt.Printf("up: %d packets, %d bytes, %d dropped\n", s.Packets, s.Bytes, s.Dropped())
	// Output:
	// channel got 84 bytes of IPv4
	// Run: <nil>
	// up: 1 packets, 84 bytes, 0 dropped
}

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
		frame, rest, err := relay.SplitL3(stream)
		if err != nil {
			fmt.Println(err)
			break
		}
		pkt, _ := relay.DecodeL3(frame)
		fmt.Printf("%d-byte datagram: IPv%d packet of %d bytes\n", len(frame), pkt[0]>>4, len(pkt))
		stream = rest
	}
	// Output:
	// 24-byte datagram: IPv4 packet of 20 bytes
	// 52-byte datagram: IPv6 packet of 48 bytes
	// relay: incomplete datagram
}

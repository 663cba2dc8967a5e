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

package stack

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// TCP buffer limits of each client's stack. gVisor's default ceiling of
// 4 MiB, without receive-buffer moderation, held an upload at 40 ms RTT to
// 320 Mbit/s. Once the SSH window and the hosts' send buffers no longer
// bound that path, buffers of up to 16 MiB gave 1.5-1.7 Gbit/s between two
// sshvpn endpoints and 32 MiB, Linux's own tcp_rmem ceiling, 2.3 (bench,
// wan40). 16 MiB it is: with 32 the gateway's peak RSS on the LAN rows
// rose from 118 to 214 MiB, as a download from a fast LAN fills what the
// stack lets a connection hold. Only connections that need them grow
// them (moderation), and what they hold counts toward
// --max-client-memory, which resets the largest connections of a client
// over its share.
const (
	tcpBufDefault = 1 << 20
	tcpBufMax     = 16 << 20
)

// tuneTCP sets the choices the measurements in bench/README.md made.
// Congestion control stays gVisor's default, reno: cubic measured no
// better here (the SSH window, not the congestion window, bounds a long
// path), and reno has no cubic growth to overflow after a long idle time.
// RACK loss detection stays on, its default: turning it off measured no
// better.
func tuneTCP(s *stack.Stack) error {
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: tcpBufDefault, Max: tcpBufMax}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: tcpBufDefault, Max: tcpBufMax}
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	for _, o := range []tcpip.SettableTransportProtocolOption{&rcv, &snd, &mod} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("stack: TCP buffer option %T: %s", o, err)
		}
	}
	return nil
}

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
// Congestion control stays gVisor's default, reno: cubic's HyStart leaves
// slow start on the first queueing delay, and between two sshvpn endpoints
// a download at 40 ms then ran at 560 Mbit/s instead of reno's 1,670
// (bench, wan40, 3 rounds each); reno has no cubic growth to overflow
// after a long idle time either.
//
// RACK loss detection is off. With it, a burst of drops at the outbound
// queue (a slow start overshooting it) left gVisor's SACK recovery sending
// nothing until the retransmission timer ran out; once timed out in
// recovery it re-entered recovery at every further timeout with ssthresh
// at 2, retransmitting one segment per RTO: downloads at 40 ms stalled at
// 0.1-25 Mbit/s in 2 to 4 rounds of 6 (TestSlowPathDownload). Off,
// SACK recovery (RFC 6675) retransmits what three SACKed segments above
// mark lost at once. Same run, 4 rounds each, download at 40 ms with 1 %
// loss: 18 → 51 Mbit/s through a stock client, 550 → 813 between two
// sshvpn endpoints; at 40 ms, 237 → 309; on the LAN no change. The price:
// RACK's tail loss probe goes with it, so a flow whose last segments are
// lost waits for the retransmission timer (200 ms at least) to resend
// them.
func tuneTCP(s *stack.Stack) error {
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: tcpBufDefault, Max: tcpBufMax}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: tcpBufDefault, Max: tcpBufMax}
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	rack := tcpip.TCPRecovery(0)
	for _, o := range []tcpip.SettableTransportProtocolOption{&rcv, &snd, &mod, &rack} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("stack: TCP option %T: %s", o, err)
		}
	}
	return nil
}

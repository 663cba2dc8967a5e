package stack

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// TCP buffer limits of each client's stack. gVisor's default ceiling of
// 4 MiB, without receive-buffer moderation, holds a long path's upload to
// a fraction of what the tunnel carries; 32 MiB, Linux's own tcp_rmem
// ceiling, gains a little more and nearly doubles the gateway's peak RSS
// (bench/README.md, "Choices these figures made"). Only connections that
// need them grow them (moderation), and what they hold counts toward
// --max-client-memory, which resets the largest connections of a client
// over its share.
const (
	tcpBufDefault = 1 << 20
	tcpBufMax     = 16 << 20
)

// tuneTCP sets the choices the measurements in bench/README.md made.
// Congestion control stays gVisor's default, reno: cubic's HyStart leaves
// slow start on the first queueing delay, a third of reno's throughput at
// 40 ms between two sshvpn endpoints (bench/README.md); reno has no cubic
// growth to overflow after a long idle time either.
//
// RACK loss detection is off. With it, a burst of drops at the outbound
// queue (a slow start overshooting it) left gVisor's SACK recovery sending
// nothing until the retransmission timer ran out; once timed out in
// recovery it re-entered recovery at every further timeout with ssthresh
// at 2, retransmitting one segment per RTO, and downloads at 40 ms stalled
// (TestSlowPathDownload). Off, SACK recovery (RFC 6675) retransmits what
// three SACKed segments above mark lost at once (the runs:
// bench/README.md). The price:
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

// newTunnelStack makes a stack for one tunnel, the gateway's per-client
// one or the client's own: IPv4 and IPv6, TCP with SACK and the settings
// above, UDP and ICMP, and ep as its one NIC. On error nothing is left.
func newTunnelStack(ep *endpoint) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("stack: enable TCP SACK: %s", err)
	}
	if err := tuneTCP(s); err != nil {
		s.Destroy()
		return nil, err
	}
	if err := s.CreateNICWithOptions(nicID, ep, stack.NICOptions{Name: "tunnel"}); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("stack: create NIC: %s", err)
	}
	return s, nil
}

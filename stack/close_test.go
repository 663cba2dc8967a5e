package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/sshvpn/sshvpn/relay"
)

// closeWait is how long a test lets a client's Close run before it calls
// it stuck: what it must not wait for takes an hour or two minutes here.
const closeWait = 10 * time.Second

// closeWithin closes tun from a goroutine and fails the test when Close
// has not returned after closeWait; then unstick ends what Close waits for,
// so that the test ends too.
func closeWithin(t *testing.T, tun relay.Tunnel, what string, unstick func()) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		tun.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(closeWait):
		t.Errorf("Close still waits after %v: %s", closeWait, what)
		unstick()
		<-closed
	}
}

// TestCloseCancelsDial: a client's Close ends its dials in flight at once,
// TCP's and UDP's. The dial here returns only when its context is
// cancelled, and its timeout is an hour: Close returns only if the dial ran
// under a context that Close cancels.
func TestCloseCancelsDial(t *testing.T) {
	dst := netip.MustParseAddrPort("198.18.0.7:80")
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, p *peer)
	}{
		{"tcp", func(t *testing.T, p *peer) { go p.dialTCP(t, dst) }},
		{"udp", func(t *testing.T, p *peer) { p.dialUDP(t, dst).Write([]byte("x")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dialing := make(chan context.Context, 1)
			stuck := make(chan struct{})
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				dialing <- ctx
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-stuck:
					return nil, errors.New("the test ended the dial")
				}
			}
			g := newGatewayWith(t, Config{Dial: dial})
			g.cfg.Limits.DialTimeout = time.Hour
			tun := open(t, g, "SHA256:dial")
			tc.start(t, newPeer(t, tun))
			var ctx context.Context
			select {
			case ctx = <-dialing:
			case <-time.After(closeWait):
				t.Fatal("the client's first packet started no dial")
			}
			closeWithin(t, tun, "a dial is in flight", func() { close(stuck) })
			if err := ctx.Err(); !errors.Is(err, context.Canceled) {
				t.Errorf("the dial's context: %v, want cancelled by Close", err)
			}
			st := tun.(*tunnel).Stats()
			if n, m, u := st.TCPEstablished.Load(), st.TCPInFlight.Load(), st.UDPFlows.Load(); n != 0 || m != 0 || u != 0 {
				t.Errorf("after Close: %d TCP established, %d in flight, %d UDP flows; want 0", n, m, u)
			}
		})
	}
}

// TestCloseAbortsHandshake: a client that sends a SYN and never answers the
// SYN-ACK holds a host connection the dial opened. That connection is the
// client's group's from the moment the dial returns it, and Close closes it
// and ends the handshake, which would otherwise wait two minutes.
func TestCloseAbortsHandshake(t *testing.T) {
	ln, accepted := acceptOne(t)
	dialed := make(chan net.Conn, 1)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, ln.Addr().String())
		if err == nil {
			dialed <- c
		}
		return c, err
	}
	tun := open(t, newGatewayWith(t, Config{Dial: dial}), "SHA256:half-open")
	client := netip.AddrPortFrom(tun.Config().Addresses[0].Addr(), 40000)
	dst := netip.MustParseAddrPort("198.18.0.7:80")
	fromStack := readPackets(tun)
	if _, err := tun.Write([][]byte{tcpSYN4(client, dst)}, 0); err != nil {
		t.Fatal(err)
	}
	waitForPacket(t, fromStack, "the SYN-ACK", func(b []byte) bool {
		tcp := header.TCP(header.IPv4(b).Payload())
		return tcp.Flags() == header.TCPFlagSyn|header.TCPFlagAck
	})
	var host net.Conn
	select {
	case host = <-dialed:
	case <-time.After(closeWait):
		t.Fatal("no dial")
	}
	if !tun.(*tunnel).group.tracks(host) {
		t.Error("the host connection is not the client's group's while its handshake waits")
	}
	peer := <-accepted
	defer peer.Close()
	closeWithin(t, tun, "a handshake waits for the client's ACK", tun.(*tunnel).abortEndpoints)
	peer.SetReadDeadline(time.Now().Add(closeWait))
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the host connection after Close: %v, want closed (EOF)", err)
	}
	st := tun.(*tunnel).Stats()
	if n, m := st.TCPEstablished.Load(), st.TCPInFlight.Load(); n != 0 || m != 0 {
		t.Errorf("after Close: %d established, %d in flight; want 0", n, m)
	}
}

// TestHandshakeTimeout: a client that sends a SYN and never answers the
// SYN-ACK loses the handshake and the host connection after the dial
// timeout (2 s here), not after gVisor's two minutes of retransmits.
func TestHandshakeTimeout(t *testing.T) {
	ln, accepted := acceptOne(t)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, ln.Addr().String())
	}
	tun := open(t, newGatewayWith(t, Config{Dial: dial}), "SHA256:silent-client")
	client := netip.AddrPortFrom(tun.Config().Addresses[0].Addr(), 40000)
	fromStack := readPackets(tun)
	if _, err := tun.Write([][]byte{tcpSYN4(client, netip.MustParseAddrPort("198.18.0.7:80"))}, 0); err != nil {
		t.Fatal(err)
	}
	var peer net.Conn
	select {
	case peer = <-accepted:
	case <-time.After(closeWait):
		t.Fatal("no host connection")
	}
	defer peer.Close()
	peer.SetReadDeadline(time.Now().Add(closeWait))
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("the host connection of a handshake the client never finished: %v, want closed (EOF) after the dial timeout", err)
	}
	st := tun.(*tunnel).Stats()
	waitFor(t, "the handshake's slot back", func() bool { return st.TCPInFlight.Load() == 0 && st.TCPEstablished.Load() == 0 })
	if n := st.TCPCreateFailed.Load(); n != 1 {
		t.Errorf("%d handshakes failed, want 1", n)
	}
	waitForPacket(t, fromStack, "a reset for the client", func(b []byte) bool {
		return header.TCP(header.IPv4(b).Payload()).Flags()&header.TCPFlagRst != 0
	})
}

// tracks reports whether c is among the connections Close closes.
func (g *group) tracks(c io.Closer) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.conns[c]
	return ok
}

// readPackets reads what tun's stack sends the client, until tun closes.
func readPackets(tun relay.Tunnel) <-chan []byte {
	ch := make(chan []byte, 64)
	go func() {
		defer close(ch)
		bufs, sizes := [][]byte{make([]byte, 65535)}, []int{0}
		for {
			n, err := tun.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			if n == 1 {
				ch <- append([]byte(nil), bufs[0][:sizes[0]]...)
			}
		}
	}()
	return ch
}

// waitForPacket waits for a packet that match accepts.
func waitForPacket(t *testing.T, ch <-chan []byte, what string, match func([]byte) bool) {
	t.Helper()
	deadline := time.After(closeWait)
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("the tunnel closed before %s", what)
			}
			if match(b) {
				return
			}
		case <-deadline:
			t.Fatalf("no %s after %v", what, closeWait)
		}
	}
}

// tcpSYN4 is a SYN from src to dst, as a client's kernel sends it.
func tcpSYN4(src, dst netip.AddrPort) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.TCPMinimumSize)
	ip := header.IPv4(b)
	s, d := addrTo(src.Addr()), addrTo(dst.Addr())
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: s, DstAddr: d})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(b[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1000, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagSyn, WindowSize: 65535})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, s, d, header.TCPMinimumSize)
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
	return b
}

// acceptOne listens on loopback until the test ends and hands over the
// first connection it accepts: the host side of the flow a test dials.
func acceptOne(t *testing.T) (net.Listener, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	return ln, accepted
}

package stack

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// requirePing skips where this process may not open ping sockets: the
// gateway then answers no echo, which TestEchoNoFake covers.
func requirePing(t *testing.T) {
	t.Helper()
	if !PingAvailable(false) {
		t.Skip("no unprivileged ping sockets: widen sysctl net.ipv4.ping_group_range to cover this process's group to run it")
	}
}

// TestEcho pings through the stack: the echo goes out of a host ping
// socket (to loopback: pingTarget stands for a real destination, which
// the peer's stack could not address) and the host's reply comes back
// from the address the peer pinged, with its ident and payload.
func TestEcho(t *testing.T) {
	requirePing(t)
	g := newGateway(t, "127.0.0.1/icmp")
	dst := netip.MustParseAddr("198.18.0.7")
	g.pingTarget = func(a netip.Addr) netip.Addr {
		if a == dst {
			return netip.MustParseAddr("127.0.0.1")
		}
		return a
	}
	tun := open(t, g, "SHA256:ping")
	p := newPeer(t, tun)
	reply := p.ping4(t, dst, 0x4242, 7, []byte("ping payload"), 5*time.Second)
	if reply == nil {
		t.Fatal("no echo reply")
	}
	h := header.ICMPv4(reply)
	if h.Type() != header.ICMPv4EchoReply || h.Sequence() != 7 || string(h.Payload()) != "ping payload" {
		t.Errorf("reply type %d seq %d payload %q", h.Type(), h.Sequence(), h.Payload())
	}
	if n := tun.(*tunnel).Stats().ICMPReplies.Load(); n != 1 {
		t.Errorf("%d replies counted, want 1", n)
	}
}

// TestEchoNoFake: an echo the policy denies (or that no host answers)
// gets no reply at all; gVisor, promiscuous, would otherwise answer for
// any address.
func TestEchoNoFake(t *testing.T) {
	g := newGateway(t)
	tun := open(t, g, "SHA256:noping")
	p := newPeer(t, tun)
	if reply := p.ping4(t, netip.MustParseAddr("100.77.0.9"), 1, 2, []byte("x"), 300*time.Millisecond); reply != nil {
		t.Fatalf("a reply for another client's address, which the policy denies: %x", reply)
	}
	// The echo may still be on its way in (a loaded host): wait for it to
	// be judged, then count.
	st := tun.(*tunnel).Stats()
	waitFor(t, "the echo to be judged", func() bool { return st.ICMPDenied.Load() > 0 })
	if n := st.ICMPDenied.Load(); n != 1 {
		t.Errorf("%d echoes denied, want 1", n)
	}
	// The gateway's own address answers: that reply is true.
	if reply := p.ping4(t, gw4, 1, 3, []byte("x"), 5*time.Second); reply == nil {
		t.Error("no reply from the gateway's own address")
	}
}

// ping4 sends one echo from the peer's stack through an ICMP endpoint and
// returns the reply's ICMP message, or nil after wait.
func (p *peer) ping4(t *testing.T, dst netip.Addr, ident, seq uint16, payload []byte, wait time.Duration) []byte {
	t.Helper()
	var wq waiter.Queue
	ep, err := p.s.NewEndpoint(icmp.ProtocolNumber4, header.IPv4ProtocolNumber, &wq)
	if err != nil {
		t.Fatalf("peer icmp endpoint: %s", err)
	}
	defer ep.Close()
	if err := ep.Bind(tcpip.FullAddress{Port: ident}); err != nil {
		t.Fatalf("bind: %s", err)
	}
	msg := make(header.ICMPv4, header.ICMPv4MinimumSize+len(payload))
	msg.SetType(header.ICMPv4Echo)
	msg.SetSequence(seq)
	copy(msg.Payload(), payload)
	r := bytes.NewReader(msg)
	to := tcpip.FullAddress{NIC: nicID, Addr: addrTo(dst)}
	if _, err := ep.Write(r, tcpip.WriteOptions{To: &to}); err != nil {
		t.Fatalf("send echo: %s", err)
	}
	we, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	deadline := time.After(wait)
	for {
		var buf bytes.Buffer
		if _, err := ep.Read(&buf, tcpip.ReadOptions{}); err == nil {
			return buf.Bytes()
		}
		select {
		case <-ch:
		case <-deadline:
			return nil
		}
	}
}

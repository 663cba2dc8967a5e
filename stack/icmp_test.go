package stack

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// pingNSEnv marks a test binary that requirePing runs again in a network
// namespace of its own.
const pingNSEnv = "SSHVPN_TEST_PING_NETNS"

// requirePing makes sure t runs where this process may open ping sockets.
// Where it may not (net.ipv4.ping_group_range "1 0", Debian's default),
// root runs t again in a network namespace of its own, whose sysctl is its
// own to widen, and reports that run: true means t ran there and the
// caller returns. Others skip, or fail under CI=true.
func requirePing(t *testing.T) (ranElsewhere bool) {
	t.Helper()
	if PingAvailable(false) {
		return false
	}
	if os.Getenv(pingNSEnv) != "" {
		t.Fatal("no ping sockets even in the test's own network namespace")
	}
	if os.Geteuid() != 0 {
		why := "no unprivileged ping sockets: widen sysctl net.ipv4.ping_group_range to cover this process's group, or run as root"
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	cmd := exec.Command("unshare", "--net", "sh", "-c",
		`ip link set lo up && sysctl -qw net.ipv4.ping_group_range="0 2147483647" && exec "$0" "$@"`,
		os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), pingNSEnv+"=1")
	out, err := cmd.CombinedOutput()
	switch {
	case err == nil && bytes.Contains(out, []byte("--- PASS: "+t.Name())):
		t.Logf("ran in a network namespace of its own, where ping sockets are allowed:\n%s", out)
		return true
	case err == nil && bytes.Contains(out, []byte("--- SKIP: "+t.Name())):
		t.Skipf("skipped in its own network namespace:\n%s", out)
	}
	t.Fatalf("in a network namespace of its own, for ping sockets: %v\n%s", err, out)
	return true
}

// TestEcho pings through the stack, both families: the echo goes out of a
// host ping socket (to loopback: pingTarget stands for a real
// destination, which the peer's stack could not address) and the host's
// reply comes back from the address the peer pinged, with its ident,
// sequence and payload. The pinger's own sequence numbers start where the
// client's do not, so a reply sent with the wrong ones fails.
func TestEcho(t *testing.T) {
	if requirePing(t) {
		return
	}
	for _, tc := range []struct {
		name         string
		rule         string
		dst, loop    netip.Addr
		v6           bool
		wantReplyTyp uint8
	}{
		{"ipv4", "127.0.0.1/icmp", netip.MustParseAddr("198.18.0.7"), netip.MustParseAddr("127.0.0.1"), false, uint8(header.ICMPv4EchoReply)},
		{"ipv6", "::1/icmp", netip.MustParseAddr("2001:2::7"), netip.IPv6Loopback(), true, uint8(header.ICMPv6EchoReply)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, tc.rule)
			if tc.v6 && !g.ping.available(true) {
				t.Skip("no IPv6 ping sockets here")
			}
			g.pingTarget = func(a netip.Addr) netip.Addr {
				if a == tc.dst {
					return tc.loop
				}
				return a
			}
			tun := open(t, g, "SHA256:ping")
			p := newPeer(t, tun)
			ep := p.pingEndpoint(t, tc.v6, 0x4242)
			for seq := uint16(7); seq < 10; seq++ {
				payload := []byte("ping payload " + string(rune('a'+seq)))
				ep.send(t, tc.dst, seq, payload)
				reply := ep.recv(5 * time.Second)
				if reply == nil {
					t.Fatalf("no echo reply to sequence %d", seq)
				}
				typ, rseq, rpayload := reply[0], uint16(reply[6])<<8|uint16(reply[7]), reply[8:]
				if typ != tc.wantReplyTyp || rseq != seq || !bytes.Equal(rpayload, payload) {
					t.Errorf("reply type %d seq %d payload %q, want type %d seq %d payload %q", typ, rseq, rpayload, tc.wantReplyTyp, seq, payload)
				}
			}
			// Counted once queued: the peer may read a reply first.
			st := tun.(*tunnel).Stats()
			waitFor(t, "three replies counted", func() bool { return st.ICMPReplies.Load() >= 3 })
			if n := st.ICMPReplies.Load(); n != 3 {
				t.Errorf("%d replies counted, want 3", n)
			}
			if n := st.ICMPInFlight.Load(); n != 0 {
				t.Errorf("%d echoes still in flight after their replies", n)
			}
		})
	}
}

// TestEchoNoFake: an echo the policy denies (or that no host answers)
// gets no reply at all; gVisor, promiscuous, would otherwise answer for
// any address.
func TestEchoNoFake(t *testing.T) {
	g := newGateway(t)
	tun := open(t, g, "SHA256:noping")
	p := newPeer(t, tun)
	ep := p.pingEndpoint(t, false, 1)
	ep.send(t, netip.MustParseAddr("100.77.0.9"), 2, []byte("x"))
	st := tun.(*tunnel).Stats()
	waitFor(t, "the echo to be judged", func() bool { return st.ICMPDenied.Load() > 0 })
	if reply := ep.recv(300 * time.Millisecond); reply != nil {
		t.Fatalf("a reply for another client's address, which the policy denies: %x", reply)
	}
	if n := st.ICMPDenied.Load(); n != 1 {
		t.Errorf("%d echoes denied, want 1", n)
	}
	// The gateway's own address answers: that reply is true.
	ep.send(t, gw4, 3, []byte("x"))
	if reply := ep.recv(5 * time.Second); reply == nil {
		t.Error("no reply from the gateway's own address")
	}
}

// silentPings stand in for a client's ping sockets when the hosts pinged
// never answer: reads are those of a loopback UDP socket that nobody
// writes to, so deadlines are the kernel's own, and sends are counted.
type silentPings struct {
	sent atomic.Int64
	mu   sync.Mutex
	open []*silentPing
}

type silentPing struct {
	*net.UDPConn
	sent *atomic.Int64
}

func (s *silentPing) send(msg []byte, dst netip.Addr) error { s.sent.Add(1); return nil }

func (s *silentPing) recv(b []byte) (int, netip.Addr, error) {
	n, from, err := s.ReadFromUDPAddrPort(b)
	return n, from.Addr(), err
}

func (s *silentPings) listen(v6 bool) (pingConn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	p := &silentPing{UDPConn: c, sent: &s.sent}
	s.mu.Lock()
	s.open = append(s.open, p)
	s.mu.Unlock()
	return p, nil
}

func (s *silentPings) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.open {
		p.Close()
	}
}

// closed reports whether every socket the client opened is closed.
func (s *silentPings) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.open {
		if err := p.SetReadDeadline(time.Time{}); err == nil {
			return false
		}
	}
	return true
}

// silentGateway is a gateway whose clients' pings go to hosts that never
// answer, and wait for them for wait.
func silentGateway(t *testing.T, wait time.Duration) (*Gateway, *silentPings) {
	t.Helper()
	g := newGateway(t)
	pings := &silentPings{}
	g.ping, g.listenPing, g.pingTimeout = newPingSockets(func(bool) bool { return true }, g.cfg.Logger), pings.listen, wait
	return g, pings
}

var silentHost = netip.MustParseAddr("198.18.0.99")

// TestEchoInFlightCapped: echoes past Limits.ICMPInFlight are dropped and
// counted, and never reach a socket; when the ones in flight expire, the
// client may send again. One socket carries them all.
func TestEchoInFlightCapped(t *testing.T) {
	g, pings := silentGateway(t, time.Hour)
	g.cfg.Limits.ICMPInFlight = 4
	tun := open(t, g, "SHA256:flood")
	p := newPeer(t, tun)
	ep := p.pingEndpoint(t, false, 1)
	for seq := range uint16(10) {
		ep.send(t, silentHost, seq, []byte("flood"))
	}
	st := tun.(*tunnel).Stats()
	waitFor(t, "ten echoes judged", func() bool { return pings.sent.Load()+int64(st.ICMPInFlightFull.Load()) == 10 })
	if n, full, inFlight := pings.sent.Load(), st.ICMPInFlightFull.Load(), st.ICMPInFlight.Load(); n != 4 || full != 6 || inFlight != 4 {
		t.Errorf("%d echoes sent, %d dropped at the limit, %d in flight; want 4, 6, 4", n, full, inFlight)
	}
	pings.mu.Lock()
	defer pings.mu.Unlock()
	if n := len(pings.open); n != 1 {
		t.Errorf("%d ping sockets, want 1", n)
	}
}

// TestEchoMemoryCharged: each echo in flight is charged to Limits.Memory,
// so a client at its limit has further echoes refused (counted), and the
// charge comes back when an echo expires unanswered.
func TestEchoMemoryCharged(t *testing.T) {
	g, pings := silentGateway(t, 300*time.Millisecond)
	payload := bytes.Repeat([]byte("m"), 1000)
	perEcho := int64(echoCost + len(payload))
	g.cfg.Limits.Memory = int64(pingerCost+g.cfg.MTU) + 3*perEcho + perEcho/2
	tun := open(t, g, "SHA256:memory")
	p := newPeer(t, tun)
	ep := p.pingEndpoint(t, false, 1)
	for seq := range uint16(6) {
		ep.send(t, silentHost, seq, payload)
	}
	st := tun.(*tunnel).Stats()
	waitFor(t, "six echoes judged", func() bool { return pings.sent.Load()+int64(st.MemoryLimited.Load()) == 6 })
	if n, limited := pings.sent.Load(), st.MemoryLimited.Load(); n != 3 || limited != 3 {
		t.Errorf("%d echoes sent, %d refused for memory; want 3 and 3", n, limited)
	}
	waitFor(t, "the three to expire", func() bool { return st.ICMPNoReply.Load() == 3 && st.ICMPInFlight.Load() == 0 })
	for seq := range uint16(3) {
		ep.send(t, silentHost, 10+seq, payload)
	}
	waitFor(t, "three more echoes sent once the charge came back", func() bool { return pings.sent.Load() == 6 })
	if n := st.MemoryLimited.Load(); n != 3 {
		t.Errorf("%d refused for memory after the expiry, want still 3", n)
	}
}

// TestEchoCloseReleases: the client's ping socket and its reader go with
// the client, echoes in flight or not.
func TestEchoCloseReleases(t *testing.T) {
	g, pings := silentGateway(t, time.Hour)
	tun := open(t, g, "SHA256:close")
	p := newPeer(t, tun)
	ep := p.pingEndpoint(t, false, 1)
	ep.send(t, silentHost, 1, []byte("x"))
	st := tun.(*tunnel).Stats()
	waitFor(t, "the echo in flight", func() bool { return st.ICMPInFlight.Load() == 1 })
	closeWithin(t, tun, "the pinger's reader still runs", pings.closeAll)
	if !pings.closed() {
		t.Error("the client's ping socket outlived it")
	}
}

// pingEP is an ICMP endpoint of the peer's stack: its echoes carry the
// ident it is bound to.
type pingEP struct {
	ep tcpip.Endpoint
	wq waiter.Queue
	v6 bool
}

func (p *peer) pingEndpoint(t *testing.T, v6 bool, ident uint16) *pingEP {
	t.Helper()
	e := &pingEP{v6: v6}
	proto, netProto := icmp.ProtocolNumber4, header.IPv4ProtocolNumber
	if v6 {
		proto, netProto = icmp.ProtocolNumber6, header.IPv6ProtocolNumber
	}
	ep, err := p.s.NewEndpoint(proto, netProto, &e.wq)
	if err != nil {
		t.Fatalf("peer icmp endpoint: %s", err)
	}
	t.Cleanup(ep.Close)
	if err := ep.Bind(tcpip.FullAddress{Port: ident}); err != nil {
		t.Fatalf("bind: %s", err)
	}
	e.ep = ep
	return e
}

// send sends one echo request to dst.
func (e *pingEP) send(t *testing.T, dst netip.Addr, seq uint16, payload []byte) {
	t.Helper()
	msg := make([]byte, 8+len(payload))
	msg[0] = byte(header.ICMPv4Echo)
	if e.v6 {
		msg[0] = byte(header.ICMPv6EchoRequest)
	}
	msg[6], msg[7] = byte(seq>>8), byte(seq)
	copy(msg[8:], payload)
	to := tcpip.FullAddress{NIC: nicID, Addr: addrTo(dst)}
	if _, err := e.ep.Write(bytes.NewReader(msg), tcpip.WriteOptions{To: &to}); err != nil {
		t.Fatalf("send echo: %s", err)
	}
}

// recv returns the next reply's ICMP message, or nil after wait.
func (e *pingEP) recv(wait time.Duration) []byte {
	we, ch := waiter.NewChannelEntry(waiter.ReadableEvents)
	e.wq.EventRegister(&we)
	defer e.wq.EventUnregister(&we)
	deadline := time.After(wait)
	for {
		var buf bytes.Buffer
		if _, err := e.ep.Read(&buf, tcpip.ReadOptions{}); err == nil {
			return buf.Bytes()
		}
		select {
		case <-ch:
		case <-deadline:
			return nil
		}
	}
}

// TestEchoAllocs checks what the pinger claims: an echo costs no
// allocation on its way out (its table entry reuses the map's room, its
// request the pinger's buffer) nor when it expires.
func TestEchoAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are not exact under -race")
	}
	g, pings := silentGateway(t, time.Hour)
	tun := open(t, g, "SHA256:allocs")
	p := tun.(*tunnel).pinger(false)
	payload := make([]byte, 56)
	cycle := func() {
		p.send(echo{to: silentHost}, payload)
		p.expire(time.Now().Add(2 * time.Hour))
	}
	cycle() // the map's first entry
	if got := testing.AllocsPerRun(100, cycle); got != 0 {
		t.Errorf("an echo sent and expired: %v allocations, want none", got)
	}
	if n := pings.sent.Load(); n != 101+1 {
		t.Errorf("%d echoes sent, want 102", n)
	}
}

// TestPingSocketAllocs: a ping socket's non-blocking send allocates
// nothing (its address and its one callback are the socket's own).
func TestPingSocketAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are not exact under -race")
	}
	if requirePing(t) {
		return
	}
	// No reader: loopback's replies wait in the socket, unread.
	conn, err := listenPing(false)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := []byte{byte(header.ICMPv4Echo), 0, 0, 0, 0, 0, 0, 1, 'x'}
	loop := netip.MustParseAddr("127.0.0.1")
	if got := testing.AllocsPerRun(100, func() {
		if err := conn.send(msg, loop); err != nil {
			t.Fatal(err)
		}
	}); got != 0 {
		t.Errorf("a ping socket's send: %v allocations, want none", got)
	}
}

// TestEchoPolicyAndSize: where ping sockets are available, an echo the
// egress policy denies still reaches no socket, and one whose reply could
// not reach the client whole (larger than the MTU) is dropped unsent.
func TestEchoPolicyAndSize(t *testing.T) {
	g, pings := silentGateway(t, time.Hour)
	tun := open(t, g, "SHA256:policy")
	p := newPeer(t, tun)
	ep := p.pingEndpoint(t, false, 1)
	st := tun.(*tunnel).Stats()
	ep.send(t, netip.MustParseAddr("100.77.0.9"), 1, []byte("x")) // another client's address
	waitFor(t, "the denied echo judged", func() bool { return st.ICMPDenied.Load() == 1 })
	ep.send(t, silentHost, 2, bytes.Repeat([]byte("b"), int(g.cfg.MTU)-20)) // the reply's IP header takes it past the MTU
	waitFor(t, "the oversized echo judged", func() bool { return st.DropsTooBig.Load() == 1 })
	ep.send(t, silentHost, 3, []byte("x"))
	waitFor(t, "the allowed echo sent", func() bool { return pings.sent.Load() == 1 })
	if n := pings.sent.Load(); n != 1 {
		t.Errorf("%d echoes reached a socket, want 1: the allowed one", n)
	}
}

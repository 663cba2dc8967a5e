package stack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/dnsproxy"
)

// udpEcho answers each datagram on a loopback address of network with
// "echo:" and the datagram, until the test ends.
func udpEcho(t *testing.T, network, addr string) netip.AddrPort {
	t.Helper()
	srv, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("no %s loopback here: %v", network, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	wg.Go(func() {
		b := make([]byte, 2048)
		for {
			n, a, err := srv.ReadFrom(b)
			if err != nil {
				return
			}
			srv.WriteTo(append([]byte("echo:"), b[:n]...), a)
		}
	})
	return srv.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestLocalUDP: one socket from ListenUDP echoes through the gateway's
// stack over IPv4 and IPv6, each reply from its real source; deadlines
// end a read that nothing answers.
func TestLocalUDP(t *testing.T) {
	srv4 := udpEcho(t, "udp4", "127.0.0.1:0")
	srv6 := udpEcho(t, "udp6", "[::1]:0")
	l, _ := localThrough(t, newGateway(t, "127.0.0.1/udp", "::1/udp"), "SHA256:local-udp")
	pc, err := l.ListenUDP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, 2048)
	for i, dst := range []netip.AddrPort{netip.AddrPortFrom(gw4, srv4.Port()), netip.AddrPortFrom(gw6, srv6.Port()),
		netip.AddrPortFrom(gw4, srv4.Port()), netip.AddrPortFrom(gw6, srv6.Port())} {
		msg := "ping " + dst.String() + string(rune('0'+i))
		if _, err := pc.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(dst)); err != nil {
			t.Fatalf("write to %s: %v", dst, err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read the echo from %s: %v", dst, err)
		}
		if string(buf[:n]) != "echo:"+msg || from.(*net.UDPAddr).AddrPort() != dst {
			t.Errorf("read %q from %s, want %q from %s", buf[:n], from, "echo:"+msg, dst)
		}
	}
	pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := pc.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read with nothing sent: %v, want the deadline", err)
	}
	pc.SetReadDeadline(time.Time{})
	pc.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := pc.WriteTo([]byte("late"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw4, srv4.Port()))); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write past the deadline: %v, want the deadline", err)
	}
}

// TestLocalUDPNoFamily: a socket of an IPv4-only tunnel refuses an IPv6
// destination at once, saying why.
func TestLocalUDPNoFamily(t *testing.T) {
	l := localV4(t)
	pc, err := l.ListenUDP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, err = pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[2001:2::1]:53")))
	if err == nil || !strings.Contains(err.Error(), "no IPv6 address on the tunnel") {
		t.Errorf("write to IPv6: %v, want an error saying the tunnel has no IPv6 address", err)
	}
}

// zoneResolver answers A and AAAA for any name under .test, 200 A
// records for big.test (more than a UDP answer holds), and NXDOMAIN
// for missing.test, over UDP and TCP on one loopback port.
func zoneResolver(t *testing.T) netip.AddrPort {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg).SetReply(q)
		name := q.Question[0].Name
		switch {
		case name == "missing.test.":
			m.Rcode = dns.RcodeNameError
		case name == "big.test." && q.Question[0].Qtype == dns.TypeA:
			for i := range 200 {
				rr, _ := dns.NewRR(name + " 60 IN A 198.18.1." + strconv.Itoa(i))
				m.Answer = append(m.Answer, rr)
			}
		case q.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR(name + " 60 IN A 198.18.0.1")
			m.Answer = append(m.Answer, rr)
		case q.Question[0].Qtype == dns.TypeAAAA && name != "big.test.":
			rr, _ := dns.NewRR(name + " 60 IN AAAA 2001:2::1")
			m.Answer = append(m.Answer, rr)
		}
		if w.LocalAddr().Network() == "udp" { // as a real server, which never sends more than asked
			size := dns.MinMsgSize
			if opt := q.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp4", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
			started := make(chan struct{})
			s.NotifyStartedFunc = func() { close(started) }
			go s.ActivateAndServe()
			<-started
			t.Cleanup(func() { s.Shutdown() })
		}
		return pc.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	t.Fatal("no port free for both UDP and TCP on 127.0.0.1")
	return netip.AddrPort{}
}

// TestLocalLookupHost resolves through the gateway stack's DNS, which
// forwards to a resolver on loopback: both families, a truncated answer
// asked again over TCP, a name that does not exist, and an address
// literal that needs no question.
func TestLocalLookupHost(t *testing.T) {
	proxy, err := dnsproxy.New(dnsproxy.Config{Upstreams: []netip.AddrPort{zoneResolver(t)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	g, err := New(Config{DNSProxy: proxy, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	l, tun := localThrough(t, g, "SHA256:local-dns")
	if len(tun.Config().DNS) != 2 {
		t.Fatalf("the gateway told name servers %v, want two", tun.Config().DNS)
	}
	ctx := context.Background()
	got, err := l.LookupHost(ctx, "host.test")
	want := []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:2::1")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("host.test: %v, %v; want %v", got, err, want)
	}
	if got, err := l.LookupHost(ctx, "big.test"); err != nil || len(got) != 200 {
		t.Errorf("big.test: %d addresses, %v; want all 200 (over TCP)", len(got), err)
	}
	var de *net.DNSError
	if _, err := l.LookupHost(ctx, "missing.test"); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("missing.test: %v, want a DNSError that is not found", err)
	}
	queries := proxy.Stats()
	if got, err := l.LookupHost(ctx, "2001:2::7"); err != nil || !slices.Equal(got, []netip.Addr{netip.MustParseAddr("2001:2::7")}) {
		t.Errorf("a literal: %v, %v", got, err)
	}
	if proxy.Stats() != queries {
		t.Error("a literal was asked for")
	}
}

// TestLocalLookupNoServer: a tunnel without name servers refuses to
// resolve rather than ask the host's resolver.
func TestLocalLookupNoServer(t *testing.T) {
	l, err := NewLocal(LocalConfig{Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")},
		DNS: []netip.Addr{netip.MustParseAddr("2001:2::53")}}) // of a family it has no address of
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.LookupHost(context.Background(), "localhost")
	if !errors.Is(err, errNoNameServer) || !strings.Contains(err.Error(), "told no name server") {
		t.Errorf("lookup without a name server: %v", err)
	}
}

// switchboard carries packets between a Local and one gateway tunnel
// after another, as reconnect's Pump does across reconnects: the Local
// stays, the tunnel changes.
type switchboard struct {
	l   *Local
	cur atomic.Pointer[relay.Tunnel]
	wg  sync.WaitGroup
}

func newSwitchboard(t *testing.T, l *Local) *switchboard {
	sb := &switchboard{l: l}
	sb.wg.Go(func() {
		sb.pump(l.Read, func(b [][]byte, off int) (int, error) {
			if tun := sb.cur.Load(); tun != nil {
				(*tun).Write(b, off)
			}
			return len(b), nil
		})
	})
	t.Cleanup(func() { l.Close(); sb.wg.Wait() })
	return sb
}

// attach makes tun the tunnel the Local's packets go to, and carries
// tun's to the Local until tun closes.
func (sb *switchboard) attach(tun relay.Tunnel) {
	sb.cur.Store(&tun)
	sb.wg.Go(func() { sb.pump(tun.Read, sb.l.Write) })
}

func (sb *switchboard) pump(read readFunc, write writeFunc) {
	p := &peer{}
	p.wg.Add(1)
	p.pump(read, write)
}

// TestLocalUpdate: after a reconnect brings another address, Update moves
// the stack to it: a connection from the old address is reset, and new
// flows leave from the new one, which the gateway takes (it would drop a
// packet from the old one as spoofed).
func TestLocalUpdate(t *testing.T) {
	srv := tcpListener(t, "tcp4", "127.0.0.1:0")
	g := newGateway(t, "127.0.0.1")
	first := open(t, g, "SHA256:local-update-1")
	l, err := NewLocal(LocalConfig{MTU: first.MTU(), Addresses: first.Config().Addresses})
	if err != nil {
		t.Fatal(err)
	}
	sb := newSwitchboard(t, l)
	sb.attach(first)
	dst := netip.AddrPortFrom(gw4, srv.Port())
	old, err := l.DialTCP(context.Background(), dst)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	second := open(t, g, "SHA256:local-update-2")
	if first.Config().Addresses[0] == second.Config().Addresses[0] {
		t.Fatal("two keys got one address")
	}
	first.Close()
	sb.attach(second)
	if err := l.Update(second.Config().Addresses, nil); err != nil {
		t.Fatal(err)
	}
	old.SetReadDeadline(time.Now().Add(2 * time.Second))
	var timeout net.Error
	if _, err := old.Read(make([]byte, 1)); err == nil || errors.As(err, &timeout) && timeout.Timeout() { // gonet's timeout is no os.ErrDeadlineExceeded
		t.Errorf("a connection from the old address after Update: %v, want reset at once", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.DialTCP(ctx, dst)
	if err != nil {
		t.Fatalf("dial after Update: %v", err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != second.Config().Addresses[0].Addr() {
		t.Errorf("a new connection leaves from %s, want %s", got, second.Config().Addresses[0].Addr())
	}
	c.Write([]byte("hello"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 100)
	n, _ := c.Read(b)
	if string(b[:n]) != "got:hello" {
		t.Errorf("read %q after Update", b[:n])
	}
	if err := l.Update(nil, nil); err == nil {
		t.Error("Update to no address accepted")
	}
}

package stack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// TestAddresses: a key's address is stable (across tunnels and gateways),
// in the upper half of each subnet, and not another key's.
func TestAddresses(t *testing.T) {
	g1, g2 := newGateway(t), newGateway(t)
	a := open(t, g1, "SHA256:alice").Config()
	again := open(t, g2, "SHA256:alice").Config()
	b := open(t, g1, "SHA256:bob").Config()
	if len(a.Addresses) != 2 {
		t.Fatalf("addresses %v, want one per default subnet", a.Addresses)
	}
	for i, p := range a.Addresses {
		sub := []netip.Prefix{DefaultSubnet4, DefaultSubnet6}[i]
		if p.Bits() != sub.Bits() || !sub.Contains(p.Addr()) {
			t.Errorf("address %s not in %s", p, sub)
		}
		if p != again.Addresses[i] {
			t.Errorf("key's address %s on one gateway, %s on another", p, again.Addresses[i])
		}
		if p == b.Addresses[i] {
			t.Errorf("two keys share %s", p)
		}
		if upper := relay.AddOffset(sub.Addr(), 1<<(min(hostBits(sub), 63)-1)); p.Addr().Less(upper) {
			t.Errorf("address %s below the subnet's upper half (%s)", p, upper)
		}
	}
	want := relay.TunnelConfig{Device: "netstack", MTU: 1500, Gateways: []netip.Addr{gw4, gw6}}
	if a.Device != want.Device || a.MTU != want.MTU || len(a.Gateways) != 2 || a.Gateways[0] != gw4 || a.Gateways[1] != gw6 {
		t.Errorf("config %+v, want %+v", a, want)
	}
}

// TestAddressCollision: when the stable address is another key's, the
// next one is taken; when that key leaves, its address is free again.
func TestAddressCollision(t *testing.T) {
	g := newGateway(t)
	g.subnets = []netip.Prefix{netip.MustParsePrefix("10.9.0.0/30")} // .1 gateway, .2 the only client
	g.gateways = []netip.Addr{netip.MustParseAddr("10.9.0.1")}
	first, err := g.claim("SHA256:a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.claim("SHA256:b"); err == nil {
		t.Fatal("a second key got an address in a full subnet")
	}
	g.release(first)
	if _, err := g.claim("SHA256:b"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestStatus(t *testing.T) {
	g, err := New(Config{
		Routes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		DNS:    []netip.Addr{gw4},
	})
	if err != nil {
		t.Fatal(err)
	}
	tun := open(t, g, "SHA256:status")
	s := tun.Status()
	cfg := tun.Config()
	for _, want := range []string{
		"    dev=tunN   # the tun ssh opened on your side",
		"ip link set $dev mtu 16380 up",
		"ip addr add " + cfg.Addresses[0].String() + " dev $dev",
		"ip -6 addr add " + cfg.Addresses[1].String() + " dev $dev",
		"ip route add 10.1.0.0/16 dev $dev",
		"name server 100.77.0.1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("status lacks %q:\n%s", want, s)
		}
	}
	// The gateway cannot know the client's device: it names none.
	if strings.Contains(s, "tun0") || strings.Contains(s, "tap") {
		t.Errorf("status names a device of the client's:\n%s", s)
	}
}

func TestOpenRefuses(t *testing.T) {
	g := newGateway(t)
	_, err := g.Open(context.Background(), relay.TunnelRequest{Mode: 3, Key: "SHA256:mode3"})
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("mode 3 tunnel: %v, want ErrUnsupported", err)
	}
	for _, cfg := range []Config{
		{Subnets: []netip.Prefix{DefaultSubnet4, netip.MustParsePrefix("10.0.0.0/8")}},
		{Subnets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/31")}},
		{Gateways: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
		{MTU: 1000},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestLimits: past the established and UDP flow limits, new flows are
// refused (TCP reset, UDP dropped) and counted, while the ones in place go
// on.
func TestLimits(t *testing.T) {
	srv := tcpListener(t, "tcp4", "127.0.0.1:0")
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	g := newGateway(t, "127.0.0.1")
	g.cfg.Limits.TCPEstablished, g.cfg.Limits.UDPFlows = 1, 1
	tun := open(t, g, "SHA256:limits")
	p := newPeer(t, tun)
	st := tun.(*tunnel).Stats()
	c, err := p.dialTCP(t, netip.AddrPortFrom(gw4, srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c2, err := p.dialTCP(t, netip.AddrPortFrom(gw4, srv.Port())); err == nil {
		c2.Close()
		t.Error("a second connection past TCPEstablished=1")
	}
	if n := st.TCPLimited.Load(); n != 1 {
		t.Errorf("TCPLimited %d, want 1", n)
	}
	port := silent.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	p.dialUDP(t, netip.AddrPortFrom(gw4, port)).Write([]byte("one"))
	waitFor(t, "the first flow", func() bool { return st.UDPFlows.Load() == 1 })
	p.dialUDP(t, netip.AddrPortFrom(gw4, port)).Write([]byte("two")) // another source port: a second flow
	waitFor(t, "the refusal", func() bool { return st.UDPLimited.Load() == 1 })
	time.Sleep(10 * time.Millisecond)
	if n := st.UDPFlows.Load(); n != 1 {
		t.Errorf("%d UDP flows, want 1", n)
	}
	// sshvpn status sees the same through relay.Reporter.
	r := tun.(relay.Reporter).Report()
	if f := r.Flows; f == nil || f.Used != 2 || f.Limit != 2 || f.Refused != 2 {
		t.Errorf("reported flows %+v, want 2 of 2 used and 2 refused", f)
	}
	if m := r.Memory; m == nil || m.Limit != DefaultLimits.Memory || m.Used < 0 {
		t.Errorf("reported memory %+v, want the default limit", m)
	}
}

// A gateway told no MTU takes the largest packets its peers carry: 16380
// from a stock client, 64 KiB on the framed channel; one told an MTU uses
// it for both.
func TestMTUDefaults(t *testing.T) {
	for _, tt := range []struct{ mtu, framed, wantMTU, wantFramed int }{
		{0, 0, DefaultMTU, DefaultFramedMTU},
		{9000, 0, 9000, 9000},
		{0, 20000, DefaultMTU, 20000},
	} {
		g, err := New(Config{MTU: tt.mtu, FramedMTU: tt.framed})
		if err != nil {
			t.Fatal(err)
		}
		if g.cfg.MTU != tt.wantMTU || g.cfg.FramedMTU != tt.wantFramed {
			t.Errorf("MTU %d, FramedMTU %d: got %d and %d, want %d and %d", tt.mtu, tt.framed, g.cfg.MTU, g.cfg.FramedMTU, tt.wantMTU, tt.wantFramed)
		}
	}
}

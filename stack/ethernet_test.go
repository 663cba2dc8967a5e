package stack

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/segment"
)

var tapMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}

func openEthernet(t *testing.T, g *Gateway, key string) relay.Tunnel {
	t.Helper()
	tun, err := g.Open(context.Background(), relay.TunnelRequest{Mode: relay.Ethernet, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

func frame(dst net.HardwareAddr, et tcpip.NetworkProtocolNumber, payload []byte) []byte {
	b := make([]byte, relay.Headroom+header.EthernetMinimumSize+len(payload))
	header.Ethernet(b[relay.Headroom:]).Encode(&header.EthernetFields{DstAddr: tcpip.LinkAddress(dst), SrcAddr: tcpip.LinkAddress(tapMAC), Type: et})
	copy(b[relay.Headroom+header.EthernetMinimumSize:], payload)
	return b
}

func ip4(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(proto),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4())})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], payload)
	return b
}

// readUntil reads frames from tun until match takes one, or fails.
func readUntil(t *testing.T, tun relay.Tunnel, what string, match func(f []byte) bool) []byte {
	t.Helper()
	found := make(chan []byte, 1)
	go func() {
		bufs, sizes := make([][]byte, tun.BatchSize()), make([]int, tun.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, relay.Headroom+header.EthernetMinimumSize+tun.MTU()+4)
		}
		for {
			n, err := tun.Read(bufs, sizes, relay.Headroom)
			if err != nil {
				close(found)
				return
			}
			for i := range n {
				if f := bufs[i][relay.Headroom : relay.Headroom+sizes[i]]; match(f) {
					found <- append([]byte(nil), f...)
					return
				}
			}
		}
	}()
	select {
	case f, ok := <-found:
		if !ok {
			t.Fatalf("%s: tunnel closed", what)
		}
		return f
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing in 5 s", what)
	}
	return nil
}

func write(t *testing.T, tun relay.Tunnel, frames ...[]byte) {
	t.Helper()
	if _, err := tun.Write(frames, relay.Headroom); err != nil {
		t.Fatal(err)
	}
}

// TestEthernetTunnel: a stock client's first minutes on an ethernet
// tunnel, through the real stack: DHCP hands out the key's address, ARP
// finds the gateway, a ping to it comes back framed to the client's MAC,
// and the router advertisement carries the stack's MTU.
func TestEthernetTunnel(t *testing.T) {
	g := newGateway(t)
	tun := openEthernet(t, g, "SHA256:tap")
	cfg := tun.Config()
	lease := cfg.Addresses[0]
	if tun.MTU() != 1500 || cfg.MTU != 1500 {
		t.Errorf("MTU %d, config %d; want the gateway's 1500", tun.MTU(), cfg.MTU)
	}

	disc, err := dhcpv4.NewDiscovery(tapMAC)
	if err != nil {
		t.Fatal(err)
	}
	u := make([]byte, header.UDPMinimumSize+len(disc.ToBytes()))
	header.UDP(u).Encode(&header.UDPFields{SrcPort: 68, DstPort: 67, Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], disc.ToBytes())
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpip.AddrFrom4([4]byte{}), tcpip.AddrFrom4(bcast.As4()), uint16(len(u)))
	header.UDP(u).SetChecksum(^checksum.Checksum(u, xsum))
	write(t, tun, frame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, header.IPv4ProtocolNumber, ip4(netip.IPv4Unspecified(), bcast, header.UDPProtocolNumber, u)))
	offer := readUntil(t, tun, "DHCP offer", func(f []byte) bool {
		return header.Ethernet(f).Type() == header.IPv4ProtocolNumber && header.IPv4(f[14:]).Protocol() == uint8(header.UDPProtocolNumber)
	})
	m, err := dhcpv4.FromBytes(header.UDP(header.IPv4(offer[14:]).Payload()).Payload())
	if err != nil {
		t.Fatal(err)
	}
	if m.MessageType() != dhcpv4.MessageTypeOffer || !m.YourIPAddr.Equal(lease.Addr().AsSlice()) || len(m.GetOneOption(dhcpv4.OptionInterfaceMTU)) != 2 {
		t.Fatalf("offer %s", m.Summary())
	}

	arp := make([]byte, header.ARPSize)
	a := header.ARP(arp)
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), tapMAC)
	copy(a.ProtocolAddressSender(), lease.Addr().AsSlice())
	copy(a.ProtocolAddressTarget(), gw4.AsSlice())
	write(t, tun, frame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, header.ARPProtocolNumber, arp))
	reply := readUntil(t, tun, "ARP reply", func(f []byte) bool { return header.Ethernet(f).Type() == header.ARPProtocolNumber })
	gwMAC := net.HardwareAddr(header.ARP(reply[14:]).HardwareAddressSender())
	if gwMAC.String() != segment.DefaultMAC.String() {
		t.Fatalf("gateway MAC %s", gwMAC)
	}

	echo := make([]byte, header.ICMPv4MinimumSize+4)
	ic := header.ICMPv4(echo)
	ic.SetType(header.ICMPv4Echo)
	ic.SetIdent(7)
	ic.SetSequence(1)
	ic.SetChecksum(^checksum.Checksum(echo, 0))
	write(t, tun, frame(gwMAC, header.IPv4ProtocolNumber, ip4(lease.Addr(), gw4, header.ICMPv4ProtocolNumber, echo)))
	pong := readUntil(t, tun, "echo reply", func(f []byte) bool {
		return header.Ethernet(f).Type() == header.IPv4ProtocolNumber && header.IPv4(f[14:]).Protocol() == uint8(header.ICMPv4ProtocolNumber)
	})
	if e := header.Ethernet(pong); e.DestinationAddress() != tcpip.LinkAddress(tapMAC) || e.SourceAddress() != tcpip.LinkAddress(gwMAC) ||
		header.ICMPv4(header.IPv4(pong[14:]).Payload()).Type() != header.ICMPv4EchoReply {
		t.Errorf("echo reply frame % x", pong[:40])
	}
	// A source the client was not given: dropped before the stack.
	write(t, tun, frame(gwMAC, header.IPv4ProtocolNumber, ip4(relay.AddOffset(lease.Addr(), 1), gw4, header.ICMPv4ProtocolNumber, echo)))
	if got := tun.(*l2Tunnel).Stats().DropsSource.Load(); got != 1 {
		t.Errorf("DropsSource = %d, want 1", got)
	}
	for _, want := range []string{"ethernet, MTU 1500", "DHCP gives you " + lease.String() + ", router " + gw4.String() + "\n",
		"SLAAC address in " + cfg.Addresses[1].Masked().String(), "dev=tapN   # the tap ssh opened", "ip link set $dev up", "udhcpc -i $dev", "accept_ra=2"} {
		if !strings.Contains(tun.Status(), want) {
			t.Errorf("status lacks %q:\n%s", want, tun.Status())
		}
	}
}

// TestEthernetStatus checks the commands a stock client is shown, and
// their order: the SSH connection pinned outside the tunnel first,
// accept_ra=2 before the link comes up, DHCP after; with --route networks
// no IPv6 default route and a route per network; without IPv6, no IPv6
// commands.
func TestEthernetStatus(t *testing.T) {
	local := &net.TCPAddr{IP: net.ParseIP("198.18.9.1"), Port: 22}
	routes := []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16"), netip.MustParsePrefix("2001:2:9::/48")}
	pin := "ip route add 198.18.9.1/32 $(ip route get 198.18.9.1 | grep -oE 'via [^ ]+|dev [^ ]+')"
	tests := []struct {
		name       string
		cfg        Config
		local      net.Addr
		order      []string // each after the one before
		want, lack []string
	}{
		{"no routes", Config{}, local,
			[]string{pin, "net.ipv6.conf.$dev.accept_ra=2\n", "ip link set $dev up", "udhcpc -i $dev"},
			nil, []string{"accept_ra_defrtr", "route replace", "option 121"}},
		{"routes", Config{Routes: routes}, local,
			[]string{pin, "net.ipv6.conf.$dev.accept_ra=2\n", "accept_ra_defrtr=0", "ip link set $dev up", "udhcpc -i $dev",
				"ip route replace 198.19.0.0/16 via 100.77.0.1 dev $dev", "ip -6 route replace 2001:2:9::/48 via fe80::1 dev $dev"},
			[]string{"classless static routes (option 121: a client that takes it adds no default route)"}, nil},
		{"IPv6 to the gateway", Config{}, &net.TCPAddr{IP: net.ParseIP("2001:2:9::1"), Port: 22},
			[]string{"ip -6 route add 2001:2:9::1/128 $(ip -6 route get 2001:2:9::1 | grep", "ip link set $dev up"}, nil, nil},
		{"loopback", Config{}, &net.TCPAddr{IP: net.IPv6loopback, Port: 22}, nil, nil, []string{"route add"}},
		{"no IPv6", Config{Subnets: []netip.Prefix{DefaultSubnet4}, Routes: routes}, local,
			[]string{pin, "ip link set $dev up", "udhcpc -i $dev", "ip route replace 198.19.0.0/16"},
			nil, []string{"accept_ra", "SLAAC", "fe80::1", "2001:2:9::/48"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGatewayWith(t, tt.cfg)
			tun, err := g.Open(context.Background(), relay.TunnelRequest{Mode: relay.Ethernet, Key: "SHA256:tap", Local: tt.local})
			if err != nil {
				t.Fatal(err)
			}
			defer tun.Close()
			s, at := tun.Status(), 0
			for _, w := range tt.order {
				i := strings.Index(s[at:], w)
				if i < 0 {
					t.Fatalf("status lacks %q after byte %d:\n%s", w, at, s)
				}
				at += i + len(w)
			}
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("status lacks %q:\n%s", w, s)
				}
			}
			for _, w := range append(tt.lack, "tap0", "tun0", "tunN") {
				if strings.Contains(s, w) {
					t.Errorf("status has %q:\n%s", w, s)
				}
			}
			if !strings.HasPrefix(s[strings.Index(s, "in one shell:\n")+len("in one shell:\n"):], "    dev=tapN ") {
				t.Errorf("the commands do not start by naming the client's tap:\n%s", s)
			}
		})
	}
}

// TestSLAACClaims: a SLAAC address is one key's; a key holds at most
// MaxSLAACPerKey over all its tunnels; closing gives them back.
func TestSLAACClaims(t *testing.T) {
	g := newGateway(t)
	a := openEthernet(t, g, "SHA256:a").(*l2Tunnel)
	b := openEthernet(t, g, "SHA256:b").(*l2Tunnel)
	addr := func(i int) netip.Addr { return relay.AddOffset(DefaultSubnet6.Addr(), uint64(0x1000+i)) }
	if !a.claims.Claim(addr(0)) || b.claims.Claim(addr(0)) {
		t.Fatal("a SLAAC address went to two keys, or to none")
	}
	if b.claims.Claim(a.tunnel.addrs[1].Addr()) {
		t.Error("key b took key a's stable address")
	}
	// sshvpn status shows each tunnel's SLAAC claims; no lease yet.
	if r := a.Report(); len(r.Claimed) != 1 || r.Claimed[0] != addr(0) || len(r.Leased) != 0 || r.Flows == nil {
		t.Errorf("tunnel a reports %+v, want the claim of %s, no lease, and its stack's flows", r, addr(0))
	}
	if r := b.Report(); len(r.Claimed) != 0 {
		t.Errorf("tunnel b reports claims %v, want none", r.Claimed)
	}
	a2 := openEthernet(t, g, "SHA256:a").(*l2Tunnel)
	for i := 1; i < MaxSLAACPerKey; i++ {
		if !a2.claims.Claim(addr(i)) {
			t.Fatalf("claim %d refused", i)
		}
	}
	if a2.claims.Claim(addr(MaxSLAACPerKey)) || a.claims.Claim(addr(MaxSLAACPerKey+1)) {
		t.Errorf("key a holds more than %d over its two tunnels", MaxSLAACPerKey)
	}
	a.Close()
	a2.Close()
	if !b.claims.Claim(addr(0)) {
		t.Error("key a's address not free after its tunnels closed")
	}
}

// TestSLAACClaimAfterClose: a claim that races the tunnel's Close is
// either given back by it or refused; none stays in the gateway. Run with
// -race: Claim (the segment's Write goroutine) and Close overlap.
func TestSLAACClaimAfterClose(t *testing.T) {
	g := newGateway(t)
	addr := func(i int) netip.Addr { return relay.AddOffset(DefaultSubnet6.Addr(), uint64(0x2000+i)) }
	for round := range 20 {
		a := openEthernet(t, g, "SHA256:a").(*l2Tunnel)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range MaxSLAACPerKey {
				a.claims.Claim(addr(round*MaxSLAACPerKey + i))
			}
		}()
		a.Close()
		<-done
		if a.claims.Claim(addr(0)) {
			t.Fatal("a claim after Close was granted")
		}
		g.mu.Lock()
		held, perKey := len(g.slaac), g.slaacPerKey["SHA256:a"]
		g.mu.Unlock()
		if held != 0 || perKey != 0 {
			t.Fatalf("round %d: the gateway holds %d SLAAC addresses (%d for the key) after Close", round, held, perKey)
		}
	}
}

// CheckEthernet refuses at start what would fail every ethernet tunnel
// at open: routes past what a DHCP reply carries. Point-to-point tunnels
// are not its business.
func TestCheckEthernet(t *testing.T) {
	g, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.CheckEthernet(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	var routes []netip.Prefix
	for i := range 60 {
		routes = append(routes, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24))
	}
	g, err = New(Config{Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.CheckEthernet(); err == nil || !strings.Contains(err.Error(), "routes") {
		t.Fatalf("60 routes: %v", err)
	}
}

package kernel

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// from is a UDP packet from src to the gateway's 198.18.3.1.
func from(src string) []byte {
	p := relaytest.IPv4("x")
	src4, dst4 := netip.MustParseAddr(src).As4(), netip.MustParseAddr("198.18.3.1").As4()
	copy(p[12:], src4[:])
	copy(p[16:], dst4[:])
	return p
}

// Each tunnel of a kernel gateway is a device of its own, up, with the
// gateway's address, a client address routed to it, and a description for
// both kinds of client; what it set up goes when the tunnel closes.
func TestGatewayTunnels(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		u, _ := testUndo(t)
		g, err := NewGateway(GatewayConfig{
			Addrs:  []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24"), netip.MustParsePrefix("2001:2:3::1/64")},
			Routes: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")},
			DNS:    []netip.Addr{netip.MustParseAddr("198.18.2.53")},
			MTU:    1400, Log: u.log(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		before := run(t, "ip", "-o", "link")
		var tunnels []relay.Tunnel
		for range 2 {
			tn, err := g.Open(context.Background(), relay.TunnelRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit})
			if err != nil {
				t.Fatal(err)
			}
			tunnels = append(tunnels, tn)
		}
		c := tunnels[1].Config()
		want := relay.TunnelConfig{Device: "tun1", MTU: 1400,
			Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.3.3/24"), netip.MustParsePrefix("2001:2:3::3/64")},
			Gateways:  []netip.Addr{netip.MustParseAddr("198.18.3.1"), netip.MustParseAddr("2001:2:3::1")},
			Routes:    []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")},
			DNS:       []netip.Addr{netip.MustParseAddr("198.18.2.53")}}
		if c.Device != want.Device || c.MTU != want.MTU || !slices.Equal(c.Addresses, want.Addresses) ||
			!slices.Equal(c.Gateways, want.Gateways) || !slices.Equal(c.Routes, want.Routes) || !slices.Equal(c.DNS, want.DNS) {
			t.Errorf("second tunnel's config %+v, want %+v", c, want)
		}
		if l := run(t, "ip", "-o", "link", "show", "tun1"); !strings.Contains(l, "mtu 1400") {
			t.Errorf("tun1's MTU is not the gateway's 1400: %s", l)
		}
		// The host takes no routing advice from a client's side of the link.
		for _, p := range []string{"accept_ra", "autoconf", "accept_redirects"} {
			if v, _ := os.ReadFile("/proc/sys/net/ipv6/conf/tun1/" + p); strings.TrimSpace(string(v)) != "0" {
				t.Errorf("tun1 %s = %q, want 0", p, v)
			}
		}
		status := tunnels[1].Status()
		for _, w := range []string{"tun1", "MTU 1400", "yours: 198.18.3.3/24", "ip addr add 198.18.3.3/24 dev $dev"} {
			if !strings.Contains(status, w) {
				t.Errorf("status lacks %q:\n%s", w, status)
			}
		}
		if r := run(t, "ip", "route", "get", "198.18.3.3"); !strings.Contains(r, "dev tun1") {
			t.Errorf("the second client's address is not routed to its tunnel: %s", r)
		}

		// The first tunnel may not send from the second's address.
		pkt := append(make([]byte, relay.Headroom), from("198.18.3.3")...)
		n, err := tunnels[0].Write([][]byte{pkt}, relay.Headroom)
		if de, ok := errors.AsType[*relay.DropError](err); n != 0 || !ok || de.Reason != relay.DropSpoofed {
			t.Errorf("spoofed Write = %d, %v; want a spoofed drop", n, err)
		}
		pkt = append(make([]byte, relay.Headroom), from("198.18.3.2")...)
		if n, err := tunnels[0].Write([][]byte{pkt}, relay.Headroom); n != 1 || err != nil {
			t.Errorf("Write from its own address = %d, %v", n, err)
		}

		for _, tn := range tunnels {
			if err := tn.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
		if after := run(t, "ip", "-o", "link"); after != before {
			t.Errorf("links after the tunnels closed:\n%s\nwant:\n%s", after, before)
		}
		if r := run(t, "ip", "route"); strings.Contains(r, "198.18.3.") && !strings.Contains(r, "unreachable 198.18.3.0/24") {
			t.Errorf("routes left behind:\n%s", r)
		}
		// A client that left: its address leads nowhere, not to another
		// tunnel's device.
		if r, _ := exec.Command("ip", "route", "get", "198.18.3.3").CombinedOutput(); !strings.Contains(string(r), "unreachable") &&
			!strings.Contains(string(r), "No route") {
			t.Errorf("the tunnel network after its clients left: %s", r)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if r := run(t, "ip", "route"); strings.Contains(r, "198.18.3.") {
			t.Errorf("routes left after the gateway closed:\n%s", r)
		}
	})
}

// Traffic for a client that left reaches no other client: with the first
// tunnel up and the second gone, the second's address is unreachable, and
// the gateway address carries no prefix route to the first tunnel.
func TestGatewayRoutesNoStrayTraffic(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		g, err := NewGateway(GatewayConfig{Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24")}})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		a, err := g.Open(context.Background(), relay.TunnelRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit, Key: "A"})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := g.Open(context.Background(), relay.TunnelRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit, Key: "B"})
		if err != nil {
			t.Fatal(err)
		}
		addrB := b.Config().Addresses[0].Addr().String()
		if r := run(t, "ip", "route", "get", addrB); !strings.Contains(r, "dev "+b.Config().Device) {
			t.Fatalf("B's address is not routed to B: %s", r)
		}
		b.Close()
		for _, dst := range []string{addrB, "198.18.3.200"} {
			r, _ := exec.Command("ip", "route", "get", dst).CombinedOutput()
			// ip route get says "No route to host" for an unreachable route.
			if strings.Contains(string(r), "dev "+a.Config().Device) || !strings.Contains(string(r), "No route to host") {
				t.Errorf("traffic for %s (no tunnel holds it): %s; want unreachable, never A's device", dst, r)
			}
		}
		if r := run(t, "ip", "route", "show", "dev", a.Config().Device); strings.Contains(r, "198.18.3.0/24") {
			t.Errorf("A's device has a prefix route for the whole tunnel network:\n%s", r)
		}
	})
}

// Configuration that cannot work is refused at start, saying why.
func TestGatewayRefusesUnworkableAddresses(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
		run(t, "ip", "addr", "add", "198.18.0.1/16", "dev", "d0")
		for addr, want := range map[string]string{
			"198.18.3.1/24":   "overlaps 198.18.0.1/16 on d0",
			"198.19.3.1/31":   "no address for a client",
			"198.19.3.1/32":   "no address for a client",
			"2001:2::1/127":   "no address for a client",
			"198.19.3.0/24":   "network's own address",
			"198.19.3.255/24": "broadcast address",
		} {
			_, err := NewGateway(GatewayConfig{Addrs: []netip.Prefix{netip.MustParsePrefix(addr)}})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("--tun-address %s: %v, want %q", addr, err, want)
			}
		}
		if r := run(t, "ip", "route"); strings.Contains(r, "unreachable") {
			t.Errorf("a refused start left routes:\n%s", r)
		}
	})
}

// With NAT and another firewall's forward chain dropping by default, the
// gateway says which chain will drop its traffic.
func TestGatewayWarnsOfForwardDrop(t *testing.T) {
	requireTool(t, "nft")
	inNewNS(t, func() {
		run(t, "nft", "add table inet filter")
		run(t, "nft", "add chain inet filter forward { type filter hook forward priority 0; policy drop; }")
		var logs logBuffer
		g, err := NewGateway(GatewayConfig{Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24")}, NAT: true,
			Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if !strings.Contains(logs.String(), `chain="inet filter forward"`) {
			t.Errorf("no warning naming the dropping chain:\n%s", logs.String())
		}
	})
}

// With NAT, the gateway turns forwarding on and masquerades the tunnel
// network for as long as it runs.
func TestGatewayNAT(t *testing.T) {
	requireTool(t, "nft")
	inNewNS(t, func() {
		u, _ := testUndo(t)
		forward := "/proc/sys/net/ipv4/ip_forward"
		if err := os.WriteFile(forward, []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
		// An uplink that takes router advertisements only while not
		// forwarding must keep taking them.
		run(t, "ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
		os.WriteFile("/proc/sys/net/ipv6/conf/up0/accept_ra", []byte("1"), 0o644)
		g, err := NewGateway(GatewayConfig{Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24"),
			netip.MustParsePrefix("2001:2:3::1/64")}, NAT: true, Log: u.log()})
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := os.ReadFile(forward); strings.TrimSpace(string(v)) != "1" {
			t.Errorf("ip_forward %q while the gateway runs, want 1", v)
		}
		if v, _ := os.ReadFile("/proc/sys/net/ipv6/conf/up0/accept_ra"); strings.TrimSpace(string(v)) != "2" {
			t.Errorf("up0 accept_ra %q with IPv6 forwarding on, want 2", v)
		}
		if rules := run(t, "nft", "list", "ruleset"); !strings.Contains(rules, "198.18.3.0/24") || !strings.Contains(rules, "masquerade") {
			t.Errorf("no masquerade rule for the tunnel network:\n%s", rules)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if v, _ := os.ReadFile(forward); strings.TrimSpace(string(v)) != "0" {
			t.Errorf("ip_forward %q after Close, want 0 as before", v)
		}
		if v, _ := os.ReadFile("/proc/sys/net/ipv6/conf/up0/accept_ra"); strings.TrimSpace(string(v)) != "1" {
			t.Errorf("up0 accept_ra %q after Close, want 1 as before", v)
		}
		if rules := run(t, "nft", "list", "ruleset"); strings.Contains(rules, "198.18.3.0/24") {
			t.Errorf("rules left after Close:\n%s", rules)
		}
	})
}

// A gateway address an interface already holds is refused at start.
func TestGatewayRefusesAnAddressInUse(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
		run(t, "ip", "addr", "add", "198.18.3.1/24", "dev", "d0")
		_, err := NewGateway(GatewayConfig{Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24")}})
		if err == nil || !strings.Contains(err.Error(), "already on d0") {
			t.Fatalf("NewGateway = %v, want an address-in-use refusal naming d0", err)
		}
	})
}

// The client's device takes the gateway's addresses and routes, or the
// user's, and gives them back on Close.
func TestLocalDevice(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		u, _ := testUndo(t)
		gw := &relay.TunnelConfig{MTU: 1400,
			Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.3.2/24")},
			Routes:    []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}}
		l, err := OpenLocal(LocalConfig{Mode: relay.PointToPoint, Unit: relay.AnyUnit,
			Routes: []netip.Prefix{netip.MustParsePrefix("198.18.9.0/24")}, Log: u.log()}, gw)
		if err != nil {
			t.Fatal(err)
		}
		if l.MTU() != 1400 {
			t.Errorf("MTU %d, want the gateway's 1400", l.MTU())
		}
		addrs := run(t, "ip", "-o", "addr", "show", "dev", l.Name())
		if !strings.Contains(addrs, "198.18.3.2/24") {
			t.Errorf("the gateway's address was not applied:\n%s", addrs)
		}
		routes := run(t, "ip", "route")
		for _, w := range []string{"198.18.2.0/24 dev " + l.Name(), "198.18.9.0/24 dev " + l.Name()} {
			if !strings.Contains(routes, w) {
				t.Errorf("routes lack %q:\n%s", w, routes)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if r := run(t, "ip", "route"); strings.Contains(r, "198.18.") {
			t.Errorf("routes left behind:\n%s", r)
		}

		// --address and --peer: a point-to-point pair.
		l, err = OpenLocal(LocalConfig{Mode: relay.PointToPoint, Unit: relay.AnyUnit,
			Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.3.2/24")}, Peer: netip.MustParseAddr("198.18.3.1")}, gw)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs = run(t, "ip", "-o", "addr", "show", "dev", l.Name())
		if !strings.Contains(addrs, "198.18.3.2/32") {
			t.Errorf("--address with --peer is not a host address:\n%s", addrs)
		}
		if r := run(t, "ip", "route", "get", "198.18.3.1"); !strings.Contains(r, "dev "+l.Name()) {
			t.Errorf("the peer is not routed to the tunnel: %s", r)
		}
	})
}

// A tunnel without routes says, at INFO, that it reaches only the gateway
// and how to route more; with routes, it says nothing of the kind.
func TestLocalSaysWhenNothingIsRouted(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		addr := []netip.Prefix{netip.MustParsePrefix("198.18.3.2/24")}
		for _, tc := range []struct {
			name   string
			gw     *relay.TunnelConfig
			routes []netip.Prefix
			want   []string // in the log; nil: no such message at all
		}{
			{"sshvpn gateway, no routes", &relay.TunnelConfig{Addresses: addr},
				nil, []string{"level=INFO", "no routes through the tunnel", "--route NET", "sshvpn serve --route NET"}},
			{"stock sshd", nil, nil, []string{"level=INFO", "no routes through the tunnel", "--route NET"}},
			{"the gateway's routes", &relay.TunnelConfig{Addresses: addr, Routes: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}}, nil, nil},
			{"--route", nil, []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, nil},
		} {
			var buf logBuffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
			cfg := LocalConfig{Mode: relay.PointToPoint, Unit: relay.AnyUnit, Routes: tc.routes, Log: log}
			if tc.gw == nil {
				cfg.Addrs = addr
			}
			l, err := OpenLocal(cfg, tc.gw)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			l.Close()
			line := ""
			for l := range strings.Lines(buf.String()) {
				if strings.Contains(l, "no routes through the tunnel") {
					line = l
				}
			}
			if tc.want == nil && line != "" {
				t.Errorf("%s: %s", tc.name, line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("%s: the no-routes line lacks %q: %q", tc.name, w, line)
				}
			}
			if tc.gw == nil && strings.Contains(line, "sshvpn serve") {
				t.Errorf("%s: a stock sshd is told of sshvpn serve: %q", tc.name, line)
			}
		}
	})
}

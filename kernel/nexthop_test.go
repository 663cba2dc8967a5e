package kernel

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/kernel/tun"
	"github.com/sshvpn/sshvpn/relay"
)

var (
	nhPrefix = netip.MustParsePrefix
	nhAddr   = netip.MustParseAddr
)

// A route through an ethernet tunnel goes via the next hop of its family,
// unless its network is on the link; through a point-to-point tunnel it
// names the device alone.
func TestPlanRoute(t *testing.T) {
	hops := nextHops{v4: nhAddr("198.18.3.1"), v6: nhAddr("2001:2:3::1")}
	onDev := []netip.Prefix{nhPrefix("198.18.3.2/24"), nhPrefix("2001:2:3::2/64")}
	cases := []struct {
		name  string
		mode  relay.Mode
		route string
		addrs []netip.Prefix
		hops  nextHops
		want  routePlan
		ok    bool
	}{
		{"tun: the device", relay.PointToPoint, "198.18.2.0/24", onDev, hops, routePlan{Dst: nhPrefix("198.18.2.0/24")}, true},
		{"tun: no next hop needed", relay.PointToPoint, "198.18.2.0/24", nil, nextHops{}, routePlan{Dst: nhPrefix("198.18.2.0/24")}, true},
		{"tap: via the gateway", relay.Ethernet, "198.18.2.0/24", onDev, hops, routePlan{Dst: nhPrefix("198.18.2.0/24"), Via: nhAddr("198.18.3.1")}, true},
		{"tap: IPv6 via the IPv6 gateway", relay.Ethernet, "2001:2:2::/64", onDev, hops, routePlan{Dst: nhPrefix("2001:2:2::/64"), Via: nhAddr("2001:2:3::1")}, true},
		{"tap: default via the gateway", relay.Ethernet, "0.0.0.0/0", onDev, hops, routePlan{Dst: nhPrefix("0.0.0.0/0"), Via: nhAddr("198.18.3.1")}, true},
		{"tap: masked", relay.Ethernet, "198.18.2.7/24", onDev, hops, routePlan{Dst: nhPrefix("198.18.2.0/24"), Via: nhAddr("198.18.3.1")}, true},
		{"tap: the link's own network", relay.Ethernet, "198.18.3.0/24", onDev, hops, routePlan{Dst: nhPrefix("198.18.3.0/24"), OnLink: true}, true},
		{"tap: a part of the link's network", relay.Ethernet, "198.18.3.128/25", onDev, hops, routePlan{Dst: nhPrefix("198.18.3.128/25")}, true},
		{"tap: a wider network than the link's", relay.Ethernet, "198.18.0.0/16", onDev, hops, routePlan{Dst: nhPrefix("198.18.0.0/16"), Via: nhAddr("198.18.3.1")}, true},
		{"tap: no next hop", relay.Ethernet, "198.18.2.0/24", onDev, nextHops{v6: nhAddr("2001:2:3::1")}, routePlan{Dst: nhPrefix("198.18.2.0/24")}, false},
		{"tap: no IPv6 next hop", relay.Ethernet, "2001:2:2::/64", onDev, nextHops{v4: nhAddr("198.18.3.1")}, routePlan{Dst: nhPrefix("2001:2:2::/64")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := planRoute(c.mode, nhPrefix(c.route), c.addrs, c.hops)
			if got != c.want || ok != c.ok {
				t.Errorf("planRoute(%s) = %+v, %v; want %+v, %v", c.route, got, ok, c.want, c.ok)
			}
		})
	}
}

// The next hops come from --via first, then from the gateway, then from
// --peer; a point-to-point tunnel has none.
func TestLocalNextHops(t *testing.T) {
	gw := &relay.TunnelConfig{Gateways: []netip.Addr{nhAddr("198.18.3.1"), nhAddr("2001:2:3::1")}}
	cases := []struct {
		name     string
		cfg      LocalConfig
		gw       *relay.TunnelConfig
		v4, v6   string
		from4    string
		wantNone bool
	}{
		{"the gateway's", LocalConfig{Mode: relay.Ethernet}, gw, "198.18.3.1", "2001:2:3::1", "the gateway's tunnel configuration", false},
		{"--via first", LocalConfig{Mode: relay.Ethernet, Via: []netip.Addr{nhAddr("198.18.3.9")}}, gw, "198.18.3.9", "2001:2:3::1", "--via", false},
		{"--peer last", LocalConfig{Mode: relay.Ethernet, Peer: nhAddr("198.18.3.7")}, gw, "198.18.3.1", "2001:2:3::1", "the gateway's tunnel configuration", false},
		{"--peer against a stock sshd", LocalConfig{Mode: relay.Ethernet, Peer: nhAddr("198.18.3.7")}, nil, "198.18.3.7", "", "--peer", false},
		{"nothing", LocalConfig{Mode: relay.Ethernet}, nil, "", "", "", true},
		{"point-to-point", LocalConfig{Mode: relay.PointToPoint, Via: []netip.Addr{nhAddr("198.18.3.9")}}, gw, "", "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := &Local{cfg: c.cfg}
			h := l.nextHops(c.gw)
			if c.wantNone {
				if h != (nextHops{}) {
					t.Fatalf("next hops %+v, want none", h)
				}
				return
			}
			if h.v4.String() != c.v4 && !(c.v4 == "" && !h.v4.IsValid()) {
				t.Errorf("IPv4 next hop %v, want %s", h.v4, c.v4)
			}
			if h.v6.String() != c.v6 && !(c.v6 == "" && !h.v6.IsValid()) {
				t.Errorf("IPv6 next hop %v, want %s", h.v6, c.v6)
			}
			if h.from4 != c.from4 {
				t.Errorf("IPv4 next hop from %q, want %q", h.from4, c.from4)
			}
		})
	}
}

// The error for a route with no next hop says what to pass.
func TestNoNextHopError(t *testing.T) {
	for _, c := range []struct {
		route string
		dhcp  bool
		want  []string
	}{
		{"198.18.2.0/24", false, []string{"--route 198.18.2.0/24", "IPv4", "--via", "--dhcp"}},
		{"2001:2:2::/64", false, []string{"--route 2001:2:2::/64", "IPv6", "--via"}},
		{"198.18.2.0/24", true, []string{"lease names no router", "--via"}},
	} {
		msg := noNextHopError(nhPrefix(c.route), c.dhcp).Error()
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("error for %s (dhcp %v) lacks %q: %s", c.route, c.dhcp, w, msg)
			}
		}
	}
}

// The status text a stock client follows: over a tap, every route goes via
// the gateway's address of its family; over a tun, through the device.
func TestGatewayStatusText(t *testing.T) {
	cfg := &GatewayConfig{
		Addrs:  []netip.Prefix{nhPrefix("198.18.3.1/24"), nhPrefix("2001:2:3::1/64")},
		Routes: []netip.Prefix{nhPrefix("198.18.2.0/24"), nhPrefix("2001:2:2::/64")},
		NAT:    true,
	}
	clients := []netip.Prefix{nhPrefix("198.18.3.2/24"), nhPrefix("2001:2:3::2/64")}
	tap := &gatewayTunnel{Tun: &tun.Tun{}, cfg: cfg, clients: clients, guard: &sourceGuard{mode: relay.Ethernet}}
	tunnel := &gatewayTunnel{Tun: &tun.Tun{}, cfg: cfg, clients: clients, guard: &sourceGuard{mode: relay.PointToPoint}}
	for _, c := range []struct {
		name     string
		status   string
		want     []string
		wantNone []string
	}{
		{"tap", tap.Status(), []string{
			"on your side, as root, in one shell:\n    dev=tapN   # the tap ssh opened on your side",
			"    ip link set $dev up\n    ip addr add 198.18.3.2/24 dev $dev\n    ip addr add 2001:2:3::2/64 dev $dev\n",
			"    ip route add 198.18.2.0/24 via 198.18.3.1 dev $dev\n    ip route add 2001:2:2::/64 via 2001:2:3::1 dev $dev\n",
			"ip route add <IPv4 network> via 198.18.3.1 dev $dev\n",
			"ip route add <IPv6 network> via 2001:2:3::1 dev $dev\n",
		}, []string{"tunN", "tun0", "tap0", "<your", "dev $dev\n    ip route add <network> dev"}},
		{"tun", tunnel.Status(), []string{
			"on your side, as root, in one shell:\n    dev=tunN   # the tun ssh opened on your side",
			"    ip link set $dev up\n    ip addr add 198.18.3.2/24 dev $dev\n",
			"    ip route add 198.18.2.0/24 dev $dev\n    ip route add 2001:2:2::/64 dev $dev\n",
			"NAT is on: route any network through it:\n    ip route add <network> dev $dev\n",
		}, []string{"tapN", "tap0", "tun0", "<your", " via "}},
	} {
		for _, w := range c.want {
			if !strings.Contains(c.status, w) {
				t.Errorf("%s status lacks %q:\n%s", c.name, w, c.status)
			}
		}
		for _, w := range c.wantNone {
			if strings.Contains(c.status, w) {
				t.Errorf("%s status has %q:\n%s", c.name, w, c.status)
			}
		}
	}
	// An ethernet tunnel with no gateway address of a family names no
	// route of that family: there is nothing to route it via.
	v4only := &gatewayTunnel{Tun: &tun.Tun{}, guard: &sourceGuard{mode: relay.Ethernet}, clients: clients[:1],
		cfg: &GatewayConfig{Addrs: cfg.Addrs[:1], Routes: cfg.Routes, NAT: true}}
	if s := v4only.Status(); strings.Contains(s, "2001:2:2::/64") || strings.Contains(s, "IPv6 network") {
		t.Errorf("status routes IPv6 with no IPv6 gateway address:\n%s", s)
	}
}

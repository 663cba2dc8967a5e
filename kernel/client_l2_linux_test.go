package kernel

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// An ethernet tunnel's tap routes the gateway's networks and the user's
// via the gateway's addresses, takes SLAAC's addresses but not its
// default route, and gives it all back on Close; a route with no next hop
// is refused, saying what to pass.
func TestLocalEthernet(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		u, _ := testUndo(t)
		// A persistent tap: Close leaves the device, so what it restored
		// can be read.
		run(t, "ip", "tuntap", "add", "dev", "tap5", "mode", "tap")
		sysctls := func() string {
			var b strings.Builder
			for _, s := range slaacSysctls {
				b.WriteString(s.name + "=" + readSysctl(t, "net/ipv6/conf/tap5/"+s.name) + " ")
			}
			return b.String()
		}
		before := sysctls()
		gw := &relay.TunnelConfig{
			Addresses: []netip.Prefix{nhPrefix("198.18.3.2/24"), nhPrefix("2001:2:3::2/64")},
			Gateways:  []netip.Addr{nhAddr("198.18.3.1"), nhAddr("2001:2:3::1")},
			Routes:    []netip.Prefix{nhPrefix("2001:2:2::/64"), nhPrefix("198.18.3.0/24")},
		}
		l, err := OpenLocal(LocalConfig{Mode: relay.Ethernet, Unit: 5, Routes: []netip.Prefix{nhPrefix("198.18.2.0/24")}, Log: u.log()}, gw)
		if err != nil {
			t.Fatal(err)
		}
		routes := run(t, "ip", "route") + run(t, "ip", "-6", "route")
		for _, w := range []string{"198.18.2.0/24 via 198.18.3.1 dev tap5", "2001:2:2::/64 via 2001:2:3::1 dev tap5", "198.18.3.0/24 dev tap5 proto kernel"} {
			if !strings.Contains(routes, w) {
				t.Errorf("routes lack %q:\n%s", w, routes)
			}
		}
		if got, want := sysctls(), "accept_ra_defrtr=0 autoconf=1 accept_ra=2 "; got != want {
			t.Errorf("SLAAC sysctls on tap5: %s, want %s", got, want)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if r := run(t, "ip", "route") + run(t, "ip", "-6", "route"); strings.Contains(r, "via") {
			t.Errorf("routes left behind:\n%s", r)
		}
		if after := sysctls(); after != before {
			t.Errorf("SLAAC sysctls after Close: %s, want %s as before", after, before)
		}

		// A stock sshd tells nothing: a --route needs --via.
		_, err = OpenLocal(LocalConfig{Mode: relay.Ethernet, Unit: 5, Addrs: []netip.Prefix{nhPrefix("198.18.3.2/24")},
			Routes: []netip.Prefix{nhPrefix("198.18.2.0/24")}, Log: u.log()}, nil)
		if err == nil || !strings.Contains(err.Error(), "--via") {
			t.Errorf("an ethernet --route without a next hop: %v, want an error naming --via", err)
		}
		l, err = OpenLocal(LocalConfig{Mode: relay.Ethernet, Unit: 5, Addrs: []netip.Prefix{nhPrefix("198.18.3.2/24")},
			Via: []netip.Addr{nhAddr("198.18.3.1")}, Routes: []netip.Prefix{nhPrefix("198.18.2.0/24")}, Log: u.log()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r := run(t, "ip", "route", "show", "198.18.2.0/24"); !strings.Contains(r, "via 198.18.3.1 dev tap5") {
			t.Errorf("--via not taken: %s", r)
		}
		// --address with IPv6 is the user's choice: no SLAAC.
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = OpenLocal(LocalConfig{Mode: relay.Ethernet, Unit: 5, Addrs: []netip.Prefix{nhPrefix("2001:2:3::2/64")}, Log: u.log()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if got := sysctls(); got != before {
			t.Errorf("SLAAC sysctls with an IPv6 --address: %s, want %s untouched", got, before)
		}
	})
}

package kernel

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/relay"
)

// routingState is every route of every table and every rule, both
// families, as ip(8) prints them.
func routingState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-4", "route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"},
		{"-4", "rule"}, {"-6", "rule"}, {"-o", "addr"}, {"nft", "list", "ruleset"},
		{"sysctl", "net.ipv4.conf.all.src_valid_mark"},
	} {
		if args[0] != "nft" && args[0] != "sysctl" {
			args = append([]string{"ip"}, args...)
		}
		b.WriteString("$ " + strings.Join(args, " ") + "\n")
		for _, l := range strings.SplitAfter(run(t, args[0], args[1:]...), "\n") {
			if !strings.Contains(l, "fe80:") { // link-local addresses come and go with carrier
				b.WriteString(l)
			}
		}
	}
	return b.String()
}

// underlay gives the namespace a link with a default route of each family
// through a next hop on it, as a host's uplink.
func underlay(t *testing.T) {
	t.Helper()
	run(t, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	run(t, "ip", "link", "set", "v1", "up")
	run(t, "ip", "link", "set", "v0", "up")
	run(t, "ip", "addr", "add", "198.18.1.2/24", "dev", "v0")
	run(t, "ip", "addr", "add", "2001:2:0:1::2/64", "dev", "v0", "nodad")
	run(t, "ip", "route", "add", "default", "via", "198.18.1.1")
	run(t, "ip", "-6", "route", "add", "default", "via", "2001:2:0:1::1", "dev", "v0")
	// The kernel sets IPv6 up on a link once it has seen its carrier,
	// from a workqueue, a moment after "up" returns (v1's carrier comes
	// with v0's up), and only then, from another, gives an address added
	// meanwhile its local route. A snapshot taken before that misses
	// routes that appear later.
	waitFor(t, "IPv6 on both ends of the underlay", func() bool {
		r := run(t, "ip", "-6", "route", "show", "table", "local")
		return strings.Contains(r, "ff00::/8 dev v0 ") && strings.Contains(r, "ff00::/8 dev v1 ") &&
			strings.Contains(r, "local 2001:2:0:1::2 dev v0 ")
	})
}

// waitFor polls cond until it holds, and fails the test if it does not
// within a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
	}
}

// lineDiff lists the lines only in want (-) and those only in got (+).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		count[l]++
	}
	var plus []string
	for _, l := range strings.Split(got, "\n") {
		if count[l] > 0 {
			count[l]--
		} else {
			plus = append(plus, "+ "+l)
		}
	}
	var minus []string
	for _, l := range strings.Split(want, "\n") {
		if count[l] > 0 {
			count[l]--
			minus = append(minus, "- "+l)
		}
	}
	return strings.Join(append(minus, plus...), "\n")
}

// routeGet is the device `ip route get dst [mark m]` picks.
func routeGet(t *testing.T, dst string, mark uint32) string {
	t.Helper()
	args := []string{"route", "get", dst}
	if mark != 0 {
		args = append(args, "mark", fmt.Sprintf("%#x", mark))
	}
	f := strings.Fields(run(t, "ip", args...))
	for i, w := range f {
		if w == "dev" && i+1 < len(f) {
			return f[i+1]
		}
	}
	t.Fatalf("ip %s: no device in %q", strings.Join(args, " "), f)
	return ""
}

// A full tunnel sends everything through the device except what carries
// the bypass mark, both families, with either spelling of the default; a
// client killed outright leaves routes and rules on a persistent device
// that the journal's recovery removes, down to the last rule. With strict
// reverse path filtering, replies get the mark through conntrack.
func TestFullTunnel(t *testing.T) {
	requireTool(t, "ip")
	requireTool(t, "nft")
	for _, spelling := range [][]string{{"0.0.0.0/0", "::/0"}, {"0.0.0.0/1", "128.0.0.0/1", "::/1", "8000::/1"}} {
		strict := len(spelling) > 2
		t.Run(spelling[0], func(t *testing.T) {
			inNewNS(t, func() {
				underlay(t)
				if strict {
					run(t, "sysctl", "-q", "-w", "net.ipv4.conf.v0.rp_filter=1")
				}
				run(t, "ip", "tuntap", "add", "dev", "tun6", "mode", "tun")
				before := routingState(t)
				b, err := NewBypass()
				if err != nil {
					t.Fatal(err)
				}
				var routes []netip.Prefix
				for _, s := range spelling {
					routes = append(routes, netip.MustParsePrefix(s))
				}
				routes = append(routes, netip.MustParsePrefix("198.18.9.0/24"))
				dir := t.TempDir()
				j, err := OpenJournal(dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				u, _ := testUndo(t)
				l, err := OpenLocal(LocalConfig{Mode: relay.PointToPoint, Unit: 6, Routes: routes,
					Addrs:  []netip.Prefix{mustPrefix("198.18.3.2/24"), mustPrefix("2001:2:0:3::2/64")},
					Bypass: b, Journal: j, Log: u.log()}, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, dst := range []string{"198.18.200.1", "198.18.2.1", "2001:2:0:200::1"} {
					if dev := routeGet(t, dst, 0); dev != "tun6" {
						t.Errorf("%s goes through %s, want the tunnel tun6", dst, dev)
					}
				}
				for _, dst := range []string{"198.18.200.1", "2001:2:0:200::1"} {
					if dev := routeGet(t, dst, b.Mark); dev != "v0" {
						t.Errorf("%s with the bypass mark goes through %s, want the uplink v0", dst, dev)
					}
				}
				// The links' own networks stay where they were.
				if dev := routeGet(t, "198.18.1.1", 0); dev != "v0" {
					t.Errorf("the uplink's network goes through %s", dev)
				}
				if dev := routeGet(t, "198.18.9.1", b.Mark); dev != "tun6" {
					t.Errorf("a --route network is not in the main table: %s", dev)
				}
				during := routingState(t)
				t.Logf("while up:\n%s", during)
				for _, want := range []string{"ct mark set meta mark", "meta mark set ct mark", "src_valid_mark = 1"} {
					if got := strings.Contains(during, want); got != strict {
						t.Errorf("with strict rp_filter %v, %q in the state: %v", strict, want, got)
					}
				}

				// Die: the journal's lock and the device's file go, the
				// persistent device stays with what was put on it.
				j.f.Close()
				l.Tun.Close()
				if routingState(t) == before {
					t.Fatal("a killed client left nothing to recover")
				}
				if _, err := Recover(dir, nil); err != nil {
					t.Fatal(err)
				}
				if after := routingState(t); after != before {
					t.Errorf("after recovery, against before:\n%s\nall of it:\n%s", lineDiff(before, after), after)
				}
				if link := run(t, "ip", "-o", "link", "show", "tun6"); strings.Contains(link, ",UP") {
					t.Errorf("the persistent device stayed up: %s", link)
				}
			})
		})
	}
}

// Close undoes a full tunnel as exactly as recovery does.
func TestFullTunnelClose(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		underlay(t)
		before := routingState(t)
		b, err := NewBypass()
		if err != nil {
			t.Fatal(err)
		}
		u, _ := testUndo(t)
		gw := &relay.TunnelConfig{Addresses: []netip.Prefix{mustPrefix("198.18.3.2/24")},
			Routes: []netip.Prefix{mustPrefix("0.0.0.0/0")}}
		l, err := OpenLocal(LocalConfig{Mode: relay.PointToPoint, Unit: relay.AnyUnit,
			Routes: []netip.Prefix{mustPrefix("::/0"), mustPrefix("0.0.0.0/0")}, Bypass: b, Log: u.log()}, gw)
		if err != nil {
			t.Fatalf("a default route from the flags and from the gateway: %v", err)
		}
		if dev := routeGet(t, "198.18.200.1", 0); dev != l.Name() {
			t.Errorf("198.18.200.1 goes through %s", dev)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if after := routingState(t); after != before {
			t.Errorf("after Close, against before:\n%s\nall of it:\n%s", lineDiff(before, after), after)
		}

		// Without a bypass, a default route is refused, not made.
		_, err = OpenLocal(LocalConfig{Mode: relay.PointToPoint, Unit: relay.AnyUnit,
			Routes: []netip.Prefix{mustPrefix("0.0.0.0/0")}, Log: u.log()}, nil)
		if err == nil || !strings.Contains(err.Error(), "full tunnel") {
			t.Errorf("a default route without a bypass: %v, want a refusal", err)
		}
	})
}

// NewBypass skips a table another rule uses, and Control marks a socket.
func TestBypass(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		run(t, "ip", "link", "set", "lo", "up")
		run(t, "ip", "rule", "add", "fwmark", "0x5356", "lookup", "100")
		run(t, "ip", "-6", "route", "add", "unreachable", "2001:2::/48", "table", "21335")
		b, err := NewBypass()
		if err != nil {
			t.Fatal(err)
		}
		if b.Table != 0x5356+2 || b.Mark != uint32(b.Table) {
			t.Errorf("NewBypass = %+v; want table and mark %d, past the ones in use", b, 0x5356+2)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := (&net.Dialer{Control: b.Control}).Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var mark int
		var gerr error
		raw.Control(func(fd uintptr) { mark, gerr = unix.GetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_MARK) })
		if gerr != nil || uint32(mark) != b.Mark {
			t.Errorf("socket mark %#x (%v), want %#x", mark, gerr, b.Mark)
		}
	})
}

// A reconnect that brings new addresses leaves the new ones on the device,
// of both families, and the routes through it in place, even when the
// new IPv4 address shares the old one's subnet (it is added as the old
// primary's secondary, which the kernel would delete with the primary).
func TestLocalUpdateReplacesAddresses(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		underlay(t)
		u, _ := testUndo(t)
		b, err := NewBypass()
		if err != nil {
			t.Fatal(err)
		}
		old := []netip.Prefix{mustPrefix("198.18.3.200/24"), mustPrefix("2001:2:0:3::200/64")}
		gw := &relay.TunnelConfig{Addresses: old, Routes: []netip.Prefix{mustPrefix("198.18.2.0/24"), mustPrefix("0.0.0.0/0")}}
		l, err := OpenLocal(LocalConfig{Mode: relay.PointToPoint, Unit: relay.AnyUnit, Bypass: b, Log: u.log()}, gw)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		routes := func() string {
			return run(t, "ip", "-4", "route", "show", "dev", l.Name()) + run(t, "ip", "-4", "route", "show", "table", "all", "dev", l.Name())
		}
		beforeRoutes := strings.ReplaceAll(routes(), "198.18.3.200", "X")
		neu := []netip.Prefix{mustPrefix("198.18.3.201/24"), mustPrefix("2001:2:0:3::201/64")}
		if err := l.Update(&relay.TunnelConfig{Addresses: neu, Routes: gw.Routes}); err != nil {
			t.Fatal(err)
		}
		addrs := run(t, "ip", "-o", "addr", "show", "dev", l.Name())
		for _, a := range neu {
			if !strings.Contains(addrs, " "+a.String()+" ") {
				t.Errorf("the new address %s is not on the device:\n%s", a, addrs)
			}
		}
		for _, a := range old {
			if strings.Contains(addrs, " "+a.String()+" ") {
				t.Errorf("the old address %s is still on the device:\n%s", a, addrs)
			}
		}
		if after := strings.ReplaceAll(routes(), "198.18.3.201", "X"); after != beforeRoutes {
			t.Errorf("routes through the device changed:\n%s\nwant:\n%s", after, beforeRoutes)
		}
		if dev := routeGet(t, "198.18.3.1", 0); dev != l.Name() {
			t.Errorf("the gateway's network goes through %s", dev)
		}
	})
}

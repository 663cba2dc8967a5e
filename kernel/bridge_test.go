package kernel

import (
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// The link control group addresses a bridged client may not send to, and
// their neighbours, which it may.
func TestLinkControl(t *testing.T) {
	for _, c := range []struct {
		dst  string
		want bool
	}{
		{"01:80:c2:00:00:00", true}, // spanning tree
		{"01:80:c2:00:00:02", true}, // slow protocols: LACP
		{"01:80:c2:00:00:03", true}, // 802.1X
		{"01:80:c2:00:00:0e", true}, // LLDP
		{"01:80:c2:00:00:0f", true},
		{"01:80:c2:00:00:10", false},
		{"01:80:c2:00:00:21", true}, // MVRP
		{"01:80:c2:00:00:2f", true},
		{"01:80:c2:00:00:30", false}, // CFM: no switch acts on it for a port
		{"01:00:0c:cc:cc:cc", true},  // CDP, VTP, DTP
		{"01:00:0c:cc:cc:cd", true},  // PVST+
		{"01:00:0c:cc:cc:ce", false},
		{"01:00:5e:00:00:01", false}, // IPv4 all hosts
		{"33:33:00:00:00:01", false}, // IPv6 all nodes
		{"ff:ff:ff:ff:ff:ff", false},
		{"02:80:c2:00:00:00", false},
	} {
		mac, err := net.ParseMAC(c.dst)
		if err != nil {
			t.Fatal(err)
		}
		if got := linkControl(mac); got != c.want {
			t.Errorf("linkControl(%s) = %v, want %v", c.dst, got, c.want)
		}
	}
}

// ip6Frame is an Ethernet frame of an IPv6 packet whose payload is hdrs
// after the fixed header, the first of them of type next.
func ip6Frame(next byte, hdrs ...[]byte) []byte {
	f := make([]byte, 14+40)
	f[12], f[13] = 0x86, 0xdd
	f[14], f[14+6] = 0x60, next
	n := 0
	for _, h := range hdrs {
		f = append(f, h...)
		n += len(h)
	}
	f[14+4], f[14+5] = byte(n>>8), byte(n)
	return f
}

// IPv6 packets the bridge table could not judge, and those it can.
func TestIP6Unreadable(t *testing.T) {
	ra := []byte{icmpv6RouterAdvert, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	echo := []byte{128, 0, 0, 0, 0, 1, 0, 1}
	hbh := func(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }
	dst24 := func(next byte) []byte { return append([]byte{next, 2, 1, 20}, make([]byte, 20)...) }
	frag := func(next byte, offset int, more bool) []byte {
		h := []byte{next, 0, byte(offset >> 8), byte(offset) &^ 7, 0, 0, 0x5e, 0x12}
		if more {
			h[3] |= 1
		}
		return h
	}
	for _, c := range []struct {
		name  string
		frame []byte
		drop  bool
	}{
		{"plain RA: the rules read it", ip6Frame(icmpv6, ra), false},
		{"RA behind hop-by-hop: the rules read it", ip6Frame(ip6HopByHop, hbh(icmpv6), ra), false},
		{"first fragment whose chain goes on in the second", ip6Frame(ip6Fragment, frag(ip6DestOpts, 0, true), dst24(icmpv6)), true},
		{"its second fragment alone", ip6Frame(ip6Fragment, frag(ip6DestOpts, 24, false), ra), false},
		{"first fragment with a whole echo request header", ip6Frame(ip6Fragment, frag(icmpv6, 0, true), echo), false},
		{"first fragment with 4 bytes of ICMPv6", ip6Frame(ip6Fragment, frag(icmpv6, 0, true), echo[:4]), true},
		{"first fragment with 4 bytes of ICMPv6 and Ethernet padding", append(ip6Frame(ip6Fragment, frag(icmpv6, 0, true), echo[:4]), 0, 0, 0, 0), true},
		{"atomic fragment of an NA", ip6Frame(ip6Fragment, frag(icmpv6, 0, false), append([]byte{icmpv6NeighAdv}, make([]byte, 23)...)), true},
		{"first fragment of an RA", ip6Frame(ip6Fragment, frag(icmpv6, 0, true), ra), true},
		{"first fragment of UDP", ip6Frame(ip6Fragment, frag(17, 0, true), make([]byte, 16)), false},
		{"hop-by-hop running past the end", ip6Frame(ip6HopByHop, []byte{icmpv6, 4, 1, 4, 0, 0, 0, 0}), true},
		{"no extension header", ip6Frame(17, make([]byte, 8)), false},
	} {
		if got := ip6Unreadable(c.frame); (got != "") != c.drop {
			t.Errorf("%s: ip6Unreadable = %q, want a drop: %v", c.name, got, c.drop)
		}
	}
}

// ARP and neighbour discovery from the tunnel's MAC that give another
// link-layer address, and those that give its own or none.
func TestForeignLinkAddr(t *testing.T) {
	mine := [6]byte{2, 0, 0, 0, 0, 1}
	other := []byte{2, 0, 0, 0, 0, 2}
	eth := func(typ uint16, payload []byte) []byte {
		f := make([]byte, 14, 14+len(payload))
		copy(f[6:], mine[:])
		f[12], f[13] = byte(typ>>8), byte(typ)
		return append(f, payload...)
	}
	arp := func(sha []byte) []byte {
		p := append([]byte{0, 1, 8, 0, 6, 4, 0, 2}, sha...)
		return eth(etherARP, append(p, 198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1))
	}
	nd := func(typ byte, fixed int, opts ...byte) []byte {
		icmp := append(append([]byte{typ}, make([]byte, fixed-1)...), opts...)
		return ip6Frame(icmpv6, icmp)
	}
	lla := func(typ byte, mac []byte) []byte { return append([]byte{typ, 1}, mac...) }
	withSrc := func(f []byte) []byte { copy(f[6:], mine[:]); return f }
	for _, c := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"ARP with its own MAC", arp(mine[:]), false},
		{"ARP with another", arp(other), true},
		{"ARP with the broadcast address", arp([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), true},
		{"NS with its own", withSrc(nd(icmpv6NeighSol, 24, lla(1, mine[:])...)), false},
		{"NS with another", withSrc(nd(icmpv6NeighSol, 24, lla(1, other)...)), true},
		{"NA with another as target's", withSrc(nd(icmpv6NeighAdv, 24, lla(2, other)...)), true},
		{"NA with another after a nonce", withSrc(nd(icmpv6NeighAdv, 24, append([]byte{14, 1, 0, 0, 0, 0, 0, 0}, lla(2, other)...)...)), true},
		{"NA with none", withSrc(nd(icmpv6NeighAdv, 24)), false},
		{"RS with another", withSrc(nd(icmpv6RouterSol, 8, lla(1, other)...)), true},
		{"echo request", withSrc(nd(128, 8, lla(1, other)...)), false},
	} {
		if got := foreignLinkAddr(c.frame, mine); got != c.want {
			t.Errorf("%s: foreignLinkAddr = %v, want %v", c.name, got, c.want)
		}
	}
}

// Once a tunnel holds all the addresses it may, every frame that claims
// another meets hold's warning: it costs no allocation, as the throttle's
// key is a constant.
func TestHoldAllocatesNothingWhenFull(t *testing.T) {
	tn := &bridgedTunnel{ports: &portSecurity{log: slog.New(slog.DiscardHandler), warn: relay.NewThrottle(time.Hour)},
		n4: maxHeldPerFamily}
	tn.ports.warn.Allow(whyHeldAll) // the first is logged; the frames after it are the hot path
	a := netip.MustParseAddr("198.18.0.9")
	if n := testing.AllocsPerRun(100, func() { tn.hold(a) }); n != 0 {
		t.Errorf("hold of an address past the limit allocates %v times a frame", n)
	}
	if len(tn.mine) != 0 {
		t.Errorf("the tunnel took %v past its limit", tn.mine)
	}
}

// The fragmented DHCPv4 requests a tap's Write drops: first fragments of
// UDP to port 67, whatever their header's length.
func TestDHCPFragment(t *testing.T) {
	frame := func(flags uint16, ihl int, proto byte, dport uint16) []byte {
		f := make([]byte, 14+ihl+8+16)
		f[12], f[13] = 0x08, 0x00
		p := f[14:]
		p[0], p[9] = 0x40|byte(ihl/4), proto
		p[6], p[7] = byte(flags>>8), byte(flags)
		p[ihl], p[ihl+1], p[ihl+2], p[ihl+3] = 0, 68, byte(dport>>8), byte(dport)
		return f
	}
	const more = 0x2000
	for _, c := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"first fragment of a request", frame(more, 20, ipProtoUDP, 67), true},
		{"first fragment behind IPv4 options", frame(more, 24, ipProtoUDP, 67), true},
		{"a whole request", frame(0, 20, ipProtoUDP, 67), false},
		{"a whole request, don't fragment set", frame(0x4000, 20, ipProtoUDP, 67), false},
		{"a later fragment", frame(more|3, 20, ipProtoUDP, 67), false},
		{"first fragment to another port", frame(more, 20, ipProtoUDP, 68), false},
		{"first fragment of TCP to 67", frame(more, 20, 6, 67), false},
		{"IPv6", ip6Frame(ipProtoUDP, []byte{0, 68, 0, 67, 0, 8, 0, 0}), false},
	} {
		if got := dhcpFragment(c.frame); got != c.want {
			t.Errorf("%s: dhcpFragment = %v, want %v", c.name, got, c.want)
		}
	}
}

// The bridged session's recipe sets accept_ra before it brings the tap up:
// a forwarding host would ignore the answer to the tap's first router
// solicitation, and SLAAC wait for the next unsolicited advertisement.
func TestBridgedStatusAcceptRAFirst(t *testing.T) {
	s := bridgedStatus("tap0", "br0", 1500)
	dev, ra, up := strings.Index(s, "    dev=tapN "), strings.Index(s, "net.ipv6.conf.$dev.accept_ra=2"), strings.Index(s, "ip link set $dev up")
	if ra < 0 || up < 0 || ra > up {
		t.Errorf("accept_ra=2 does not come before the tap is brought up:\n%s", s)
	}
	if dev < 0 || dev > ra || strings.Contains(s, "<your") || strings.Contains(s, "tunN") {
		t.Errorf("the commands do not start by naming the client's tap:\n%s", s)
	}
}

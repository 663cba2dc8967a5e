package kernel

import (
	"net/netip"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

func ipv4From(src string) []byte {
	p := make([]byte, 20)
	p[0] = 0x45
	a := netip.MustParseAddr(src).As4()
	copy(p[12:], a[:])
	return p
}

func TestSourceOf(t *testing.T) {
	v6 := make([]byte, 40)
	v6[0] = 0x60
	a6 := netip.MustParseAddr("2001:2::5").As16()
	copy(v6[8:], a6[:])
	ll := make([]byte, 40)
	ll[0] = 0x60
	l6 := netip.MustParseAddr("fe80::1").As16()
	copy(ll[8:], l6[:])
	eth := func(typ uint16, payload []byte, tags ...uint16) []byte {
		f := make([]byte, 12, 22+len(payload))
		for _, tag := range tags {
			f = append(f, byte(tag>>8), byte(tag), 0, 100)
		}
		f = append(f, byte(typ>>8), byte(typ))
		return append(f, payload...)
	}
	arp := make([]byte, 28)
	arp[2], arp[3], arp[4], arp[5] = 0x08, 0x00, 6, 4
	copy(arp[14:18], []byte{198, 18, 3, 7})
	probe := append([]byte(nil), arp...)
	copy(probe[14:18], []byte{0, 0, 0, 0})
	ra := append([]byte(nil), ll...)
	ra[6] = 58 // ICMPv6
	ra = append(ra, 134, 0, 0, 0)
	for _, tt := range []struct {
		name string
		p    []byte
		mode relay.Mode
		want string // an address to check, "pass" or "refuse"
	}{
		{"ipv4", ipv4From("198.18.3.2"), relay.PointToPoint, "198.18.3.2"},
		{"ipv6", v6, relay.PointToPoint, "2001:2::5"},
		{"ipv6 link-local", ll, relay.PointToPoint, "pass"},
		{"short", []byte{0x45, 0}, relay.PointToPoint, "pass"},
		{"eth-ipv4", eth(0x0800, ipv4From("198.18.3.9")), relay.Ethernet, "198.18.3.9"},
		{"eth-ipv6", eth(0x86dd, v6), relay.Ethernet, "2001:2::5"},
		{"eth-arp", eth(0x0806, arp), relay.Ethernet, "198.18.3.7"},
		{"eth-lldp", eth(0x88cc, make([]byte, 40)), relay.Ethernet, "pass"},
		{"eth-arp probe", eth(0x0806, probe), relay.Ethernet, "pass"},
		{"eth-arp odd sizes", eth(0x0806, append(append([]byte(nil), arp[:4]...), append([]byte{8, 4}, arp[6:]...)...)), relay.Ethernet, "pass"},
		{"router advertisement", ra, relay.PointToPoint, "refuse"},
		{"eth-router advertisement", eth(0x86dd, ra), relay.Ethernet, "refuse"},
		{"vlan-ipv4", eth(0x0800, ipv4From("198.18.3.9"), 0x8100), relay.Ethernet, "198.18.3.9"},
		{"qinq-arp", eth(0x0806, arp, 0x88a8, 0x8100), relay.Ethernet, "198.18.3.7"},
		{"vlan-lldp", eth(0x88cc, make([]byte, 40), 0x8100), relay.Ethernet, "refuse"},
		{"vlan-ipv6 link-local", eth(0x86dd, ll, 0x8100), relay.Ethernet, "refuse"},
		{"three tags", eth(0x0800, ipv4From("198.18.3.9"), 0x8100, 0x8100, 0x8100), relay.Ethernet, "refuse"},
		{"vlan cut", eth(0x0800, nil, 0x8100)[:15], relay.Ethernet, "refuse"},
	} {
		got, v := sourceOf(tt.p, tt.mode)
		switch tt.want {
		case "pass":
			if v != sourcePass {
				t.Errorf("%s: sourceOf = %v, %d; want pass", tt.name, got, v)
			}
		case "refuse":
			if v != sourceRefuse {
				t.Errorf("%s: sourceOf = %v, %d; want refuse", tt.name, got, v)
			}
		default:
			if v != sourceCheck || got != netip.MustParseAddr(tt.want) {
				t.Errorf("%s: sourceOf = %v, %d; want %s to check", tt.name, got, v, tt.want)
			}
		}
	}
}

func TestClaimsReserve(t *testing.T) {
	c := newClaimTable(0)
	n := netip.MustParsePrefix("198.18.3.1/30") // .0 network, .1 gateway, .3 broadcast
	a, _, ok := c.reserve(n, "tun0", "")
	if !ok || a.addr != netip.MustParseAddr("198.18.3.2") {
		t.Fatalf("reserve = %v, %v; want 198.18.3.2", a, ok)
	}
	if b, _, ok := c.reserve(n, "tun1", "other"); ok {
		t.Fatalf("reserved %v from a full /30", b.addr)
	}
	c.release(a)
	if b, _, ok := c.reserve(n, "tun1", "other"); !ok || b.addr != netip.MustParseAddr("198.18.3.2") {
		t.Fatalf("after release: %v, %v", b, ok)
	}
	v6, _, ok := c.reserve(netip.MustParsePrefix("2001:2:0:3::1/64"), "tun1", "")
	if !ok || v6.addr != netip.MustParseAddr("2001:2:0:3::2") {
		t.Fatalf("IPv6 reserve = %v, %v", v6, ok)
	}
}

// A key's address follows from its fingerprint alone: two gateways with
// nothing shared hand it the same one, and different keys spread out.
func TestClaimsStableAcrossGateways(t *testing.T) {
	n := netip.MustParsePrefix("198.18.3.1/24")
	seen := map[netip.Addr]bool{}
	for i := range 20 {
		key := "SHA256:key" + string(rune('a'+i))
		a, _, _ := newClaimTable(0).reserve(n, "tun0", key)
		b, _, _ := newClaimTable(0).reserve(n, "tun9", key)
		if a.addr != b.addr {
			t.Fatalf("%s: %v on one gateway, %v on another", key, a.addr, b.addr)
		}
		if !n.Contains(a.addr) || a.addr.As4()[3] < 128 || a.addr.As4()[3] == 255 {
			t.Fatalf("%s: %v is not a client address in the upper half of %v", key, a.addr, n)
		}
		seen[a.addr] = true
	}
	if len(seen) < 15 {
		t.Errorf("20 keys share %d addresses: the hash does not spread", len(seen))
	}
}

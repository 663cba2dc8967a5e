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
	eth := func(typ uint16, payload []byte) []byte {
		f := make([]byte, 14, 14+len(payload))
		f[12], f[13] = byte(typ>>8), byte(typ)
		return append(f, payload...)
	}
	arp := make([]byte, 28)
	arp[2], arp[3] = 0x08, 0x00
	copy(arp[14:18], []byte{198, 18, 3, 7})
	for _, tt := range []struct {
		name string
		p    []byte
		mode relay.Mode
		want string // "" for none
	}{
		{"ipv4", ipv4From("198.18.3.2"), relay.PointToPoint, "198.18.3.2"},
		{"ipv6", v6, relay.PointToPoint, "2001:2::5"},
		{"short", []byte{0x45, 0}, relay.PointToPoint, ""},
		{"eth-ipv4", eth(0x0800, ipv4From("198.18.3.9")), relay.Ethernet, "198.18.3.9"},
		{"eth-ipv6", eth(0x86dd, v6), relay.Ethernet, "2001:2::5"},
		{"eth-arp", eth(0x0806, arp), relay.Ethernet, "198.18.3.7"},
		{"eth-vlan", eth(0x8100, ipv4From("198.18.3.9")), relay.Ethernet, ""},
	} {
		got, ok := sourceOf(tt.p, tt.mode)
		if (tt.want == "") == ok || (ok && got != netip.MustParseAddr(tt.want)) {
			t.Errorf("%s: sourceOf = %v, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
}

func TestClaimsReserve(t *testing.T) {
	c := NewClaims()
	n := netip.MustParsePrefix("198.18.3.1/30") // .0 network, .1 gateway, .3 broadcast
	a, ok := c.reserve(n, "tun0")
	if !ok || a != netip.MustParseAddr("198.18.3.2") {
		t.Fatalf("reserve = %v, %v; want 198.18.3.2", a, ok)
	}
	if a, ok := c.reserve(n, "tun1"); ok {
		t.Fatalf("reserved %v from a full /30", a)
	}
	c.release(netip.MustParseAddr("198.18.3.2"))
	if a, ok := c.reserve(n, "tun1"); !ok || a != netip.MustParseAddr("198.18.3.2") {
		t.Fatalf("after release: %v, %v", a, ok)
	}
	v6, ok := c.reserve(netip.MustParsePrefix("2001:2:0:3::1/64"), "tun1")
	if !ok || v6 != netip.MustParseAddr("2001:2:0:3::2") {
		t.Fatalf("IPv6 reserve = %v, %v", v6, ok)
	}
}

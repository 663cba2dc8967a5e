package kernel

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

func dnsPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func dnsAddrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// A full tunnel, by either family, takes every lookup; routes to some
// networks take only the gateway's domains.
func TestPlanDNS(t *testing.T) {
	gw := &relay.TunnelConfig{DNS: dnsAddrs("198.18.3.1"), Domains: []string{"corp.example"}}
	for _, tc := range []struct {
		name   string
		routes []netip.Prefix
		full   bool
	}{
		{"no routes", nil, false},
		{"a LAN", dnsPrefixes("198.18.2.0/24", "2001:2:0:2::/64"), false},
		{"IPv4 default", dnsPrefixes("198.18.2.0/24", "0.0.0.0/0"), true},
		{"IPv6 default only", dnsPrefixes("::/0"), true},
		{"both defaults", dnsPrefixes("0.0.0.0/0", "::/0"), true},
		{"the two IPv4 halves", dnsPrefixes("0.0.0.0/1", "128.0.0.0/1"), true},
		{"host bits on a default", dnsPrefixes("198.18.0.1/0"), true},
		{"a /2 is not", dnsPrefixes("0.0.0.0/2", "64.0.0.0/2"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planDNS(gw, tc.routes)
			want := dnsPlan{Servers: gw.DNS, Domains: gw.Domains, Default: tc.full}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("planDNS(%v) = %+v, want %+v", tc.routes, got, want)
			}
		})
	}
	if p := planDNS(nil, dnsPrefixes("0.0.0.0/0")); len(p.Servers) != 0 {
		t.Errorf("a stock sshd's tunnel (no config) got name servers: %+v", p)
	}
}

// SetLinkDNS's a(iay): Linux's AF_INET and AF_INET6 whatever GOOS, the
// address bytes, no zone, IPv4-mapped addresses as IPv4.
func TestLinkServers(t *testing.T) {
	p := dnsPlan{Servers: dnsAddrs("198.18.3.1", "2001:2:0:3::1", "fe80::1%tun0", "::ffff:198.18.3.9")}
	want := []linkAddr{
		{2, []byte{198, 18, 3, 1}},
		{10, []byte{0x20, 0x01, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1}},
		{10, []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
		{2, []byte{198, 18, 3, 9}},
	}
	if got := p.linkServers(); !reflect.DeepEqual(got, want) {
		t.Errorf("linkServers() = %v, want %v", got, want)
	}
}

// SetLinkDomains's a(sb): all routing-only; "~." first for a full tunnel;
// an empty array, not a nil one, for none (D-Bus has no null).
func TestLinkDomains(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     dnsPlan
		want  []linkDomain
		scope string
	}{
		{"split, two domains", dnsPlan{Domains: []string{"corp.example", "2.18.198.in-addr.arpa"}},
			[]linkDomain{{"corp.example", true}, {"2.18.198.in-addr.arpa", true}}, "names under corp.example, 2.18.198.in-addr.arpa"},
		{"full", dnsPlan{Default: true}, []linkDomain{{".", true}}, "every name (the tunnel carries the default route)"},
		{"full with a domain", dnsPlan{Default: true, Domains: []string{"corp.example"}},
			[]linkDomain{{".", true}, {"corp.example", true}}, "every name (the tunnel carries the default route)"},
		{"split, no domains", dnsPlan{}, []linkDomain{}, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.p.linkDomains()
			if got == nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("linkDomains() = %#v, want %#v", got, tc.want)
			}
			if s := tc.p.scope(); s != tc.scope {
				t.Errorf("scope() = %q, want %q", s, tc.scope)
			}
		})
	}
}

func TestRenderResolvConf(t *testing.T) {
	const head = "# Written by sshvpn (--dns-global) for the tunnel on tun3: the file it replaced\n" +
		"# comes back when the tunnel ends, or with sshvpn cleanup.\n"
	for _, tc := range []struct {
		name    string
		p       dnsPlan
		want    string
		dropped []netip.Addr
	}{
		{"servers and domains", dnsPlan{Servers: dnsAddrs("198.18.3.1", "2001:2:0:3::1"), Domains: []string{"corp.example", "lab.example"}},
			head + "nameserver 198.18.3.1\nnameserver 2001:2:0:3::1\nsearch corp.example lab.example\n", nil},
		{"no domains", dnsPlan{Servers: dnsAddrs("198.18.3.1"), Default: true},
			head + "nameserver 198.18.3.1\n", nil},
		{"past three", dnsPlan{Servers: dnsAddrs("198.18.3.1", "198.18.3.2", "198.18.3.3", "198.18.3.4", "198.18.3.5")},
			head + "nameserver 198.18.3.1\nnameserver 198.18.3.2\nnameserver 198.18.3.3\n", dnsAddrs("198.18.3.4", "198.18.3.5")},
		{"a zone is the gateway's", dnsPlan{Servers: dnsAddrs("fe80::1%eth0")}, head + "nameserver fe80::1\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped := renderResolvConf("tun3", tc.p)
			if string(got) != tc.want || !reflect.DeepEqual(dropped, tc.dropped) {
				t.Errorf("renderResolvConf = %q, left out %v\nwant %q, left out %v", got, dropped, tc.want, tc.dropped)
			}
		})
	}
}

// What a later process needs to restore resolv.conf survives the journal.
func TestDNSChangeJournals(t *testing.T) {
	for _, c := range []change{
		{Op: opDNS, Dev: "tun3", Index: 7},
		{Op: opDNS, Dev: "tun3", Path: resolvConfPath, Value: "nameserver 198.18.3.1\n", Old: "nameserver 198.18.9.9\noptions edns0\n"},
		{Op: opDNS, Dev: "tun3", Path: resolvConfPath, Value: "nameserver 198.18.3.1\n", Link: "../run/systemd/resolve/stub-resolv.conf"},
	} {
		js, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back change
		if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(back, c) {
			t.Errorf("%s: %+v came back from %s as %+v (%v)", c, c, js, back, err)
		}
	}
	if s := (change{Op: opDNS, Dev: "tun3", Index: 7}).String(); s != "name servers of link tun3 in systemd-resolved" {
		t.Errorf("String() = %q", s)
	}
	if s := (change{Op: opDNS, Dev: "tun3", Path: resolvConfPath}).String(); s != "name servers for tun3 in /etc/resolv.conf" {
		t.Errorf("String() = %q", s)
	}
}

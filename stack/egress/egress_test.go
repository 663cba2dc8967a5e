package egress

import (
	"net/netip"
	"strings"
	"testing"
)

func mustRules(t testing.TB, allow bool, rules ...string) []Rule {
	t.Helper()
	var out []Rule
	for _, s := range rules {
		r, err := ParseRule(s, allow)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// testConfig is a gateway with one virtual subnet per family, its DNS
// addresses in them, and a host with a public and a LAN address.
func testConfig(t testing.TB, rules ...Rule) Config {
	t.Helper()
	return Config{
		Rules:        rules,
		Subnets:      []netip.Prefix{netip.MustParsePrefix("100.80.0.0/16"), netip.MustParsePrefix("fd7a:5353::/64")},
		GatewayAddrs: []netip.Addr{netip.MustParseAddr("100.80.0.1"), netip.MustParseAddr("fd7a:5353::1")},
		HostAddrs:    NewHostSet(testHostAddrs...),
	}
}

// testHostAddrs are the host's interface addresses in testConfig: their
// subnets add 203.0.113.0, 203.0.113.255, 192.168.1.0, 192.168.1.255 and
// 2001:db8:1:: to the host's own.
var testHostAddrs = []netip.Prefix{
	netip.MustParsePrefix("203.0.113.5/24"),
	netip.MustParsePrefix("192.168.1.10/24"),
	netip.MustParsePrefix("2001:db8:1::5/64"),
}

type decideCase struct {
	dst   string
	proto Proto
	allow bool
	why   string // a substring of the why
}

func runDecide(t *testing.T, p *Policy, tests []decideCase) {
	t.Helper()
	for _, tt := range tests {
		dst := netip.MustParseAddrPort(tt.dst)
		allow, why := p.Decide(dst, tt.proto)
		if allow != tt.allow || !strings.Contains(why, tt.why) {
			t.Errorf("Decide(%s, %s) = %v, %q; want %v, %q", tt.dst, tt.proto, allow, why, tt.allow, tt.why)
		}
	}
}

// TestDecideDefaults is the attacker's view of a gateway with no rules:
// every way to name the host, its metadata and the other clients is denied,
// and the internet is not.
func TestDecideDefaults(t *testing.T) {
	p := New(testConfig(t))
	runDecide(t, p, []decideCase{
		{"1.1.1.1:443", ProtoTCP, true, "default allow"},
		{"[2606:4700::1111]:53", ProtoUDP, true, "default allow"},
		{"192.168.1.1:80", ProtoTCP, true, "default allow"}, // the host's LAN is reachable
		{"8.8.8.8:0", ProtoICMP, true, "default allow"},

		{"127.0.0.1:22", ProtoTCP, false, "127.0.0.0/8 (loopback)"},
		{"127.1.2.3:22", ProtoTCP, false, "127.0.0.0/8 (loopback)"},
		{"127.255.255.255:53", ProtoUDP, false, "127.0.0.0/8"},
		{"127.0.0.1:0", ProtoICMP, false, "127.0.0.0/8"},
		{"[::1]:22", ProtoTCP, false, "::1/128 (loopback)"},
		{"0.0.0.0:22", ProtoTCP, false, "0.0.0.0/8 (this network"},
		{"0.1.2.3:22", ProtoTCP, false, "0.0.0.0/8"},
		{"[::]:22", ProtoTCP, false, "::/128 (unspecified"},
		{"169.254.169.254:80", ProtoTCP, false, "169.254.0.0/16 (link-local, cloud metadata"},
		{"169.254.170.2:80", ProtoTCP, false, "169.254.0.0/16"},
		{"[fe80::1]:22", ProtoTCP, false, "fe80::/10 (link-local)"},
		{"[fe80::1%eth0]:22", ProtoTCP, false, "fe80::/10"}, // a zone must not slip past the prefix
		{"[febf::1]:22", ProtoTCP, false, "fe80::/10"},
		{"[fd00:ec2::254]:80", ProtoTCP, false, "fd00:ec2::254/128 (cloud metadata, AWS IPv6)"},
		{"100.100.100.200:80", ProtoTCP, false, "Alibaba"},
		{"224.0.0.251:5353", ProtoUDP, false, "224.0.0.0/4 (multicast"},
		{"239.255.255.250:1900", ProtoUDP, false, "224.0.0.0/4"},
		{"255.255.255.255:67", ProtoUDP, false, "broadcast"},
		{"[ff02::fb]:5353", ProtoUDP, false, "ff00::/8"},

		// IPv4-mapped destinations are dialled as IPv4, so judged as IPv4.
		{"[::ffff:127.0.0.1]:22", ProtoTCP, false, "127.0.0.0/8"},
		{"[::ffff:169.254.169.254]:80", ProtoTCP, false, "169.254.0.0/16"},
		{"[::ffff:0.0.0.0]:22", ProtoTCP, false, "0.0.0.0/8"},
		{"[::ffff:100.80.0.7]:22", ProtoTCP, false, "clients may not reach one another"},
		{"[::ffff:1.1.1.1]:443", ProtoTCP, true, "default allow"},
		// The well-known NAT64 prefix carries the denied IPv4 addresses too.
		{"[64:ff9b::7f00:1]:22", ProtoTCP, false, "127.0.0.0/8 (loopback) via NAT64 64:ff9b::/96"},
		{"[64:ff9b::a9fe:a9fe]:80", ProtoTCP, false, "169.254.0.0/16 (link-local, cloud metadata 169.254.169.254) via NAT64"},
		{"[64:ff9b::cb00:7105]:22", ProtoTCP, false, "203.0.113.5/32 (this host's own address) via NAT64"},
		{"[64:ff9b::101:101]:443", ProtoTCP, true, "default allow"}, // 1.1.1.1 through NAT64

		// The host's own addresses reach its 0.0.0.0 listeners.
		{"203.0.113.5:5432", ProtoTCP, false, "203.0.113.5/32 (this host's own address)"},
		{"192.168.1.10:22", ProtoTCP, false, "this host's own address"},
		{"[2001:db8:1::5]:22", ProtoTCP, false, "2001:db8:1::5/128 (this host's own address)"},

		// Clients may not reach one another, only the gateway itself.
		{"100.80.0.7:22", ProtoTCP, false, "100.80.0.0/16 (clients may not reach one another)"},
		{"100.80.0.7:0", ProtoICMP, false, "100.80.0.0/16"},
		{"[fd7a:5353::7]:22", ProtoTCP, false, "fd7a:5353::/64 (clients may not reach one another)"},
		{"100.80.0.1:53", ProtoUDP, true, "100.80.0.1 (the gateway's own address)"},
		{"[fd7a:5353::1]:53", ProtoTCP, true, "fd7a:5353::1 (the gateway's own address)"},

		{"[::ffff:0.0.0.0]:0", ProtoTCP, false, "0.0.0.0/8"},
	})
	if allow, why := p.Decide(netip.AddrPort{}, ProtoTCP); allow || why != "invalid destination" {
		t.Errorf("Decide(zero) = %v, %q", allow, why)
	}
	var nilPolicy *Policy
	if allow, _ := nilPolicy.Decide(netip.MustParseAddrPort("1.1.1.1:80"), ProtoTCP); allow {
		t.Error("a nil Policy allowed a flow")
	}
}

// TestDecideRules checks first match, ports and protocols of the
// operator's rules against the built-ins.
func TestDecideRules(t *testing.T) {
	var rules []Rule
	rules = append(rules, mustRules(t, true, "127.0.0.1:8080/tcp", "[::1]:53/udp", "10.1.0.0/16", "100.80.0.0/16/icmp", "[64:ff9b::7f00:1]:22/tcp")...)
	rules = append(rules, mustRules(t, false, "10.0.0.0/8", "any:25/tcp", "0.0.0.0/0/icmp", "2001:db8:bad::/48")...)
	p := New(testConfig(t, rules...))
	runDecide(t, p, []decideCase{
		{"127.0.0.1:8080", ProtoTCP, true, "--allow 127.0.0.1:8080/tcp"},
		{"[::ffff:127.0.0.1]:8080", ProtoTCP, true, "--allow 127.0.0.1:8080/tcp"},
		{"127.0.0.1:8080", ProtoUDP, false, "127.0.0.0/8 (loopback)"},
		{"127.0.0.1:8081", ProtoTCP, false, "127.0.0.0/8"},
		{"127.0.0.2:8080", ProtoTCP, false, "127.0.0.0/8"},
		{"[::1]:53", ProtoUDP, true, "--allow [::1]:53/udp"},
		{"[::1]:53", ProtoTCP, false, "::1/128"},
		{"10.1.2.3:443", ProtoTCP, true, "--allow 10.1.0.0/16"}, // before the broader deny
		{"10.2.0.1:443", ProtoTCP, false, "--deny 10.0.0.0/8"},
		{"10.2.0.1:0", ProtoICMP, false, "--deny 10.0.0.0/8"},
		{"1.2.3.4:25", ProtoTCP, false, "--deny any:25/tcp"},
		{"[2001:db8::1]:25", ProtoTCP, false, "--deny any:25/tcp"},
		{"1.2.3.4:25", ProtoUDP, true, "default allow"},
		{"1.2.3.4:0", ProtoICMP, false, "--deny 0.0.0.0/0/icmp"},
		{"[2001:db8::1]:0", ProtoICMP, true, "default allow"},
		{"[2001:db8:bad::1]:443", ProtoTCP, false, "--deny 2001:db8:bad::/48"},
		{"100.80.0.7:0", ProtoICMP, true, "--allow 100.80.0.0/16/icmp"}, // clients may ping one another
		{"100.80.0.7:22", ProtoTCP, false, "clients may not reach one another"},
		// An explicit rule for the NAT64 form decides before the built-ins.
		{"[64:ff9b::7f00:1]:22", ProtoTCP, true, "--allow [64:ff9b::7f00:1]:22/tcp"},
		{"[64:ff9b::7f00:1]:23", ProtoTCP, false, "via NAT64"},
	})
}

// TestDecidePortlessICMP checks that a rule with ports never matches ICMP,
// whose flows have none, whatever port the caller passes.
func TestDecidePortlessICMP(t *testing.T) {
	p := New(Config{Rules: mustRules(t, false, "any:1-65535")})
	runDecide(t, p, []decideCase{
		{"1.2.3.4:80", ProtoTCP, false, "--deny any:1-65535"},
		{"1.2.3.4:80", ProtoICMP, true, "default allow"},
		{"1.2.3.4:0", ProtoTCP, true, "default allow"}, // port 0 is outside 1-65535
	})
}

func TestForKey(t *testing.T) {
	base := New(testConfig(t, mustRules(t, false, "10.0.0.0/8")...))
	key := append(mustRules(t, true, "127.0.0.1:5432/tcp", "10.9.0.0/16"), mustRules(t, false, "1.1.1.1")...)
	p := base.ForKey("authorized_keys:3", key)
	runDecide(t, p, []decideCase{
		{"127.0.0.1:5432", ProtoTCP, true, "authorized_keys:3: SSHVPN_ALLOW=127.0.0.1:5432/tcp"},
		{"10.9.1.1:80", ProtoTCP, true, "authorized_keys:3: SSHVPN_ALLOW=10.9.0.0/16"}, // before --deny
		{"10.8.1.1:80", ProtoTCP, false, "--deny 10.0.0.0/8"},
		{"1.1.1.1:53", ProtoUDP, false, "authorized_keys:3: SSHVPN_DENY=1.1.1.1"},
		{"127.0.0.1:22", ProtoTCP, false, "127.0.0.0/8"},
	})
	// The base policy is unchanged, and ForKey on a key policy replaces.
	runDecide(t, base, []decideCase{{"127.0.0.1:5432", ProtoTCP, false, "127.0.0.0/8"}})
	runDecide(t, p.ForKey("", nil), []decideCase{{"1.1.1.1:53", ProtoUDP, true, "default allow"}})
}

func TestExplain(t *testing.T) {
	p := New(testConfig(t, mustRules(t, true, "127.0.0.1:80/tcp")...)).ForKey("k:1", mustRules(t, false, "any:25/tcp"))
	got := p.Explain()
	if got[0] != "k:1: SSHVPN_DENY=any:25/tcp" || got[1] != "--allow 127.0.0.1:80/tcp" || got[len(got)-1] != "default allow" {
		t.Errorf("Explain = %q", got)
	}
	if n := len(got); n != 2+2+len(builtins)+3+5+2+1 {
		t.Errorf("Explain has %d lines", n)
	}
	// The host's addresses sit between the built-ins and the subnets.
	host := 2 + 2 + len(builtins)
	if !strings.Contains(got[host-1], "ff00::/8") || !strings.Contains(got[host], "this host's") ||
		!strings.Contains(got[host+7], "this host's") || !strings.Contains(got[host+8], "clients may not reach one another") {
		t.Errorf("Explain order = %q", got)
	}
}

// TestDecideAllocs holds Decide to zero allocations: it runs per new flow.
func TestDecideAllocs(t *testing.T) {
	p := New(testConfig(t, mustRules(t, true, "127.0.0.1:8080/tcp", "[2001:db8::/32]:443")...)).
		ForKey("k:1", mustRules(t, false, "any:25/tcp"))
	dsts := []netip.AddrPort{
		netip.MustParseAddrPort("1.1.1.1:443"),
		netip.MustParseAddrPort("[::ffff:127.0.0.1]:22"),
		netip.MustParseAddrPort("[fe80::1%eth0]:22"),
		netip.MustParseAddrPort("[64:ff9b::a9fe:a9fe]:80"),
		netip.MustParseAddrPort("[2606:4700::1111]:443"),
		netip.MustParseAddrPort("203.0.113.5:22"),          // the host's own
		netip.MustParseAddrPort("[64:ff9b::cb00:71ff]:22"), // its broadcast, via NAT64
		netip.MustParseAddrPort("[2001:db8:1::]:22"),       // its anycast
		netip.MustParseAddrPort("[fd7a:5353::7]:22"),       // a subnet, after the host's
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, d := range dsts {
			p.Decide(d, ProtoTCP)
		}
	})
	if allocs != 0 {
		t.Errorf("Decide allocates %v times per run, want 0", allocs)
	}
}

func BenchmarkDecide(b *testing.B) {
	p := New(testConfig(b, mustRules(b, true, "127.0.0.1:8080/tcp", "10.1.0.0/16", "[2001:db8::/32]:443")...)).
		ForKey("k:1", mustRules(b, false, "any:25/tcp"))
	for _, bc := range []struct {
		name string
		dst  netip.AddrPort
	}{
		// The internet walks every rule to the default: the worst case.
		{"internet4", netip.MustParseAddrPort("1.1.1.1:443")},
		{"internet6", netip.MustParseAddrPort("[2606:4700::1111]:443")},
		{"nat64", netip.MustParseAddrPort("[64:ff9b::101:101]:443")},
		{"loopback", netip.MustParseAddrPort("127.0.0.1:22")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(bc.dst, ProtoTCP)
			}
		})
	}
}

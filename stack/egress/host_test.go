package egress

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// TestHostSetLive follows the host through address changes: a Policy built
// before them, and a key's Policy derived before them, both judge by the
// set of the moment.
func TestHostSetLive(t *testing.T) {
	hosts := NewHostSet(prefixes("198.51.100.7/24")...)
	cfg := testConfig(t, mustRules(t, true, "192.0.2.9:8080/tcp")...)
	cfg.HostAddrs = hosts
	base := New(cfg)
	key := base.ForKey("k:1", mustRules(t, true, "198.51.100.7:443/tcp"))
	both := func(tests []decideCase) {
		t.Helper()
		runDecide(t, base, tests)
		runDecide(t, key, tests)
	}
	both([]decideCase{
		{"198.51.100.7:22", ProtoTCP, false, "198.51.100.7/32 (this host's own address)"},
		{"192.0.2.9:22", ProtoTCP, true, "default allow"},
		{"[2001:db8:5::9]:22", ProtoTCP, true, "default allow"},
	})

	// The host gains an IPv4 address, an IPv6 one and a /32 on lo.
	hosts.Set(prefixes("198.51.100.7/24", "192.0.2.9/24", "2001:db8:5::9/64", "198.18.77.1/32"))
	both([]decideCase{
		{"192.0.2.9:22", ProtoTCP, false, "192.0.2.9/32 (this host's own address)"},
		{"192.0.2.9:53", ProtoUDP, false, "this host's own address"},
		{"192.0.2.9:0", ProtoICMP, false, "this host's own address"},
		{"[::ffff:192.0.2.9]:22", ProtoTCP, false, "this host's own address"},
		{"[64:ff9b::c000:209]:22", ProtoTCP, false, "192.0.2.9/32 (this host's own address) via NAT64 64:ff9b::/96"},
		{"[2001:db8:5::9]:22", ProtoTCP, false, "2001:db8:5::9/128 (this host's own address)"},
		{"[2001:db8:5::]:53", ProtoUDP, false, "2001:db8:5::/128 (subnet-router anycast of 2001:db8:5::/64"},
		{"192.0.2.255:53", ProtoUDP, false, "192.0.2.255/32 (broadcast of 192.0.2.0/24"},
		{"192.0.2.0:53", ProtoUDP, false, "192.0.2.0/32 (network address of 192.0.2.0/24"},
		{"198.18.77.1:22", ProtoTCP, false, "198.18.77.1/32 (this host's own address)"},
		{"198.18.77.0:22", ProtoTCP, true, "default allow"}, // a /32 has no subnet
		{"192.0.2.10:22", ProtoTCP, true, "default allow"},  // a neighbour on the new subnet
		// The operator's rules still come first.
		{"192.0.2.9:8080", ProtoTCP, true, "--allow 192.0.2.9:8080/tcp"},
	})
	runDecide(t, key, []decideCase{{"198.51.100.7:443", ProtoTCP, true, "k:1: SSHVPN_ALLOW=198.51.100.7:443/tcp"}})
	runDecide(t, base, []decideCase{{"198.51.100.7:443", ProtoTCP, false, "this host's own address"}})

	// The host loses them again: they may be other hosts' now.
	hosts.Set(prefixes("198.51.100.7/24"))
	both([]decideCase{
		{"192.0.2.9:22", ProtoTCP, true, "default allow"},
		{"[2001:db8:5::9]:22", ProtoTCP, true, "default allow"},
		{"[2001:db8:5::]:53", ProtoUDP, true, "default allow"},
		{"192.0.2.255:53", ProtoUDP, true, "default allow"},
		{"198.18.77.1:22", ProtoTCP, true, "default allow"},
		{"198.51.100.7:22", ProtoTCP, false, "this host's own address"},
	})

	hosts.Set(nil)
	both([]decideCase{{"198.51.100.7:22", ProtoTCP, true, "default allow"}})
}

// TestHostSetDerived checks which addresses one interface address makes
// the host's, beside itself.
func TestHostSetDerived(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want []string // the denied addresses, sorted
	}{
		{"192.0.2.10/24", []string{"192.0.2.0", "192.0.2.10", "192.0.2.255"}},
		{"10.1.2.3/8", []string{"10.0.0.0", "10.1.2.3", "10.255.255.255"}},
		{"192.0.2.9/30", []string{"192.0.2.8", "192.0.2.9", "192.0.2.11"}},
		{"192.0.2.9/31", []string{"192.0.2.9"}}, // RFC 3021: both are hosts
		{"192.0.2.9/32", []string{"192.0.2.9"}},
		{"2001:db8::5/64", []string{"2001:db8::", "2001:db8::5"}},
		{"2001:db8::5/126", []string{"2001:db8::4", "2001:db8::5"}},
		{"2001:db8::5/127", []string{"2001:db8::5"}}, // RFC 6164: the peer is 2001:db8::4
		{"2001:db8::5/128", []string{"2001:db8::5"}},
		{"fe80::1/64", []string{"fe80::1"}}, // fe80::/10 is denied anyway
		{"::ffff:192.0.2.10/120", []string{"192.0.2.0", "192.0.2.10", "192.0.2.255"}},
	} {
		h := NewHostSet(netip.MustParsePrefix(tt.addr))
		var got []string
		for _, a := range h.cur.Load().order {
			got = append(got, a.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s denies %q, want %q", tt.addr, got, tt.want)
		}
	}
	// An address that is also another's derived one is named as the
	// host's own.
	h := NewHostSet(prefixes("2001:db8::5/64", "2001:db8::/64")...)
	if why, _ := h.deny(netip.MustParseAddr("2001:db8::"), netip.Addr{}, false); why != "built-in deny 2001:db8::/128 (this host's own address)" {
		t.Errorf("2001:db8:: is denied as %q", why)
	}
	var none *HostSet
	if _, ok := none.deny(netip.MustParseAddr("192.0.2.1"), netip.Addr{}, false); ok || none.whys() != nil {
		t.Error("a nil HostSet denies")
	}
}

// TestHostSetConcurrent swaps the set while flows are decided; -race
// checks that Decide reads it safely.
func TestHostSetConcurrent(t *testing.T) {
	hosts := NewHostSet()
	cfg := testConfig(t)
	cfg.HostAddrs = hosts
	p := New(cfg).ForKey("k:1", nil)
	a, b := prefixes("192.0.2.9/24"), prefixes("2001:db8:5::9/64")
	dst := netip.MustParseAddrPort("192.0.2.9:22")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				hosts.Set(a)
			} else {
				hosts.Set(b)
			}
		}
	})
	for range 10000 {
		if allow, why := p.Decide(dst, ProtoTCP); allow != (why == defaultWhy) {
			t.Fatalf("Decide = %v, %q", allow, why)
		}
	}
	close(stop)
	wg.Wait()
	hosts.Set(a)
	if allow, _ := p.Decide(dst, ProtoTCP); allow {
		t.Error("192.0.2.9 allowed after the last Set made it the host's")
	}
}

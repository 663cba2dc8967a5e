//go:build linux

package dhcp4

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
	"golang.org/x/net/bpf"

	"github.com/sshvpn/sshvpn/relay"
)

var discard = slog.New(slog.DiscardHandler)

func ack(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.ParseIP("198.18.2.120"))}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// An ACK reads as the lease it grants, with RFC 2131's defaults for what
// it leaves out.
func TestLeaseOf(t *testing.T) {
	now := time.Unix(1000, 0)
	full := ack(t,
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(net.ParseIP("198.18.2.255"))),
		dhcpv4.WithRouter(net.ParseIP("198.18.2.1"), net.ParseIP("198.18.2.254")),
		dhcpv4.WithServerIP(net.ParseIP("198.18.2.3")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("198.18.2.2"))),
		dhcpv4.WithDNS(net.ParseIP("198.18.2.53")),
		dhcpv4.WithOption(dhcpv4.OptDomainName("lan.test.")),
		dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{"lan.test", "corp.test"}})),
		dhcpv4.WithLeaseTime(120),
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(4*time.Second)),
		dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(6*time.Second)),
	)
	l, err := leaseOf(full, nil, now, discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Lease{Addr: netip.MustParsePrefix("198.18.2.120/24"), Broadcast: netip.MustParseAddr("198.18.2.255"),
		Router: netip.MustParseAddr("198.18.2.1"), Server: netip.MustParseAddr("198.18.2.2"),
		DNS: []netip.Addr{netip.MustParseAddr("198.18.2.53")}, Domains: []string{"lan.test", "corp.test"},
		Duration: 2 * time.Minute, T1: 4 * time.Second, T2: 6 * time.Second, Granted: now}
	if l.Addr != want.Addr || l.Broadcast != want.Broadcast || l.Router != want.Router || l.Server != want.Server ||
		!slices.Equal(l.DNS, want.DNS) || !slices.Equal(l.Domains, want.Domains) ||
		l.Duration != want.Duration || l.T1 != want.T1 || l.T2 != want.T2 || !l.Granted.Equal(now) {
		t.Errorf("lease %+v, want %+v", *l, want)
	}
	if !l.RenewAt().Equal(now.Add(4*time.Second)) || !l.RebindAt().Equal(now.Add(6*time.Second)) || !l.ExpiresAt().Equal(now.Add(2*time.Minute)) {
		t.Errorf("times %v %v %v", l.RenewAt(), l.RebindAt(), l.ExpiresAt())
	}

	// The least an ACK says: the class's mask, the computed broadcast,
	// T1 and T2 at 1/2 and 7/8, the OFFER's server.
	offer := ack(t, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("198.18.2.9"))))
	l, err = leaseOf(ack(t, dhcpv4.WithLeaseTime(800)), offer, now, discard)
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr.String() != "198.18.2.120/24" || l.Broadcast.String() != "198.18.2.255" || l.Router.IsValid() ||
		l.Server.String() != "198.18.2.9" || l.T1 != 400*time.Second || l.T2 != 700*time.Second {
		t.Errorf("defaults: %+v", *l)
	}
	// Times out of order fall back to the defaults.
	l, err = leaseOf(ack(t, dhcpv4.WithLeaseTime(80), dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(90*time.Second))), nil, now, discard)
	if err != nil || l.T1 != 40*time.Second || l.T2 != 70*time.Second {
		t.Errorf("T1 past the lease: %+v, %v", l, err)
	}

	for name, bad := range map[string]*dhcpv4.DHCPv4{
		"no address":    ack(t, dhcpv4.WithYourIP(net.IPv4zero), dhcpv4.WithLeaseTime(60)),
		"no lease time": ack(t),
		"mask /0":       ack(t, dhcpv4.WithNetmask(net.CIDRMask(0, 32)), dhcpv4.WithLeaseTime(60)),
	} {
		if l, err := leaseOf(bad, nil, now, discard); err == nil {
			t.Errorf("%s: lease %+v, want an error", name, *l)
		}
	}
}

func TestBroadcast(t *testing.T) {
	for p, want := range map[string]string{"198.18.2.7/24": "198.18.2.255", "198.18.0.1/15": "198.19.255.255", "198.18.2.7/32": "198.18.2.7", "198.18.2.5/30": "198.18.2.7"} {
		if got := broadcast(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("broadcast(%s) = %s, want %s", p, got, want)
		}
	}
}

// ipUDP is an IPv4 header (with options of optWords 32-bit words) and a UDP
// header to dport, as a SOCK_DGRAM packet socket's filter sees them.
func ipUDP(proto byte, frag uint16, optWords int, dport uint16) []byte {
	ihl := 5 + optWords
	p := make([]byte, ihl*4+8+10)
	p[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(p[6:], frag)
	p[9] = proto
	binary.BigEndian.PutUint16(p[ihl*4+2:], dport)
	return p
}

// The socket's filter passes whole UDP datagrams to port 68 and nothing
// else of what crosses the tap.
func TestClientFilter(t *testing.T) {
	vm, err := bpf.NewVM(dhcpClientFilter)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		pkt  []byte
		pass bool
	}{
		{"to port 68", ipUDP(17, 0, 0, 68), true},
		{"to port 68, IP options", ipUDP(17, 0, 2, 68), true},
		{"to port 68, first fragment", ipUDP(17, 0x2000, 0, 68), true},
		{"a later fragment", ipUDP(17, 0x0010, 0, 68), false},
		{"to port 67", ipUDP(17, 0, 0, 67), false},
		{"to port 53", ipUDP(17, 0, 0, 53), false},
		{"TCP to port 68", ipUDP(6, 0, 0, 68), false},
	} {
		n, err := vm.Run(c.pkt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (n > 0) != c.pass {
			t.Errorf("%s: filter returned %d, want pass=%v", c.name, n, c.pass)
		}
	}
}

// An ACK from a rogue or broken server: an address or subnet the host
// must not take is refused; name servers, domains and a broadcast address
// it cannot use are left out; lease times too short to keep up with are
// lengthened.
func TestLeaseOfHostile(t *testing.T) {
	now := time.Unix(1000, 0)
	lt := dhcpv4.WithLeaseTime(600)
	for name, m := range map[string]*dhcpv4.DHCPv4{
		"multicast":         ack(t, lt, dhcpv4.WithYourIP(net.ParseIP("224.0.0.5"))),
		"loopback":          ack(t, lt, dhcpv4.WithYourIP(net.ParseIP("127.0.0.1"))),
		"limited broadcast": ack(t, lt, dhcpv4.WithYourIP(net.ParseIP("255.255.255.255"))),
		"class E":           ack(t, lt, dhcpv4.WithYourIP(net.ParseIP("240.0.0.1")), dhcpv4.WithNetmask(net.CIDRMask(24, 32))),
		"0/8":               ack(t, lt, dhcpv4.WithYourIP(net.ParseIP("0.1.2.3")), dhcpv4.WithNetmask(net.CIDRMask(24, 32))),
		"link-local":        ack(t, lt, dhcpv4.WithYourIP(net.ParseIP("169.254.1.1"))),
		"mask /1":           ack(t, lt, dhcpv4.WithNetmask(net.CIDRMask(1, 32))),
		"mask /7":           ack(t, lt, dhcpv4.WithNetmask(net.CIDRMask(7, 32))),
		"network address":   ack(t, lt, dhcpv4.WithYourIP(net.ParseIP("198.18.2.0")), dhcpv4.WithNetmask(net.CIDRMask(24, 32))),
		"subnet broadcast":  ack(t, lt, dhcpv4.WithYourIP(net.ParseIP("198.18.2.255")), dhcpv4.WithNetmask(net.CIDRMask(24, 32))),
	} {
		if l, err := leaseOf(m, nil, now, discard); err == nil {
			t.Errorf("%s: lease %+v, want an error", name, *l)
		}
	}
	// The edges that stay: a /8, and a /31's two addresses.
	for _, ok := range []*dhcpv4.DHCPv4{
		ack(t, lt, dhcpv4.WithNetmask(net.CIDRMask(8, 32))),
		ack(t, lt, dhcpv4.WithYourIP(net.ParseIP("198.18.2.0")), dhcpv4.WithNetmask(net.CIDRMask(31, 32))),
	} {
		if _, err := leaseOf(ok, nil, now, discard); err != nil {
			t.Errorf("%s: %v", ok.YourIPAddr, err)
		}
	}

	var dns []net.IP
	for i := range 20 {
		dns = append(dns, net.IPv4(198, 18, 2, byte(10+i)))
	}
	dns = append([]net.IP{net.ParseIP("127.0.0.53"), net.ParseIP("224.0.0.251"), net.ParseIP("255.255.255.255")}, dns...)
	var log logBuffer
	l, err := leaseOf(ack(t, lt, dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(net.ParseIP("198.18.9.9"))),
		dhcpv4.WithRouter(net.ParseIP("224.0.0.1"), net.ParseIP("198.18.2.1")),
		dhcpv4.WithDNS(dns...),
		dhcpv4.WithOption(dhcpv4.OptDomainName("lan.test\nnameserver 198.18.9.9")),
		dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{
			"corp.test", "x\noptions ndots:15", "-bad.test", "a b.test", "good_srv.test"}})),
	), nil, now, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if l.Broadcast.String() != "198.18.2.255" {
		t.Errorf("broadcast %s outside the subnet taken, want 198.18.2.255", l.Broadcast)
	}
	if l.Router.String() != "198.18.2.1" {
		t.Errorf("router %s, want the first unicast one, 198.18.2.1", l.Router)
	}
	if len(l.DNS) != relay.MaxDNS || l.DNS[0].String() != "198.18.2.10" {
		t.Errorf("name servers %v: want %d, from 198.18.2.10, none of loopback, multicast or broadcast", l.DNS, relay.MaxDNS)
	}
	if want := []string{"corp.test", "good_srv.test"}; !slices.Equal(l.Domains, want) {
		t.Errorf("domains %q, want %q", l.Domains, want)
	}
	for _, w := range []string{"broadcast address", "not a unicast address", "more name servers", "not a DNS domain"} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("no warning saying %q:\n%s", w, log.String())
		}
	}

	var many []string
	for i := range relay.MaxDomains + 5 {
		many = append(many, fmt.Sprintf("d%d.test", i))
	}
	l, err = leaseOf(ack(t, lt, dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: many}))), nil, now, discard)
	if err != nil || len(l.Domains) != relay.MaxDomains {
		t.Errorf("%d domains offered: got %v, %v; want %d", len(many), l, err, relay.MaxDomains)
	}

	// A lease of a second: renewals no faster than minT1, a lease no
	// shorter than minLease.
	l, err = leaseOf(ack(t, dhcpv4.WithLeaseTime(1)), nil, now, discard)
	if err != nil || l.Duration != minLease || l.T1 < minT1 || l.T2 < l.T1 || l.T2 > l.Duration {
		t.Errorf("a 1 s lease: %+v, %v", l, err)
	}
	l, err = leaseOf(ack(t, lt, dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(time.Second)), dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(2*time.Second))), nil, now, discard)
	if err != nil || l.T1 != minT1 || l.T2 != minT1 {
		t.Errorf("T1 1 s, T2 2 s: %+v, %v; want both %v", l, err, minT1)
	}
}

// logBuffer collects log lines from any goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

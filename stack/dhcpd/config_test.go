package dhcpd

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestNewRefuses checks that New names what is wrong with each bad Config.
func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no lease", func(c *Config) { c.Lease = netip.Prefix{} }, "want an IPv4 address"},
		{"IPv6 lease", func(c *Config) { c.Lease = netip.MustParsePrefix("2001:2::9/64") }, "want an IPv4 address"},
		{"IPv4-mapped lease", func(c *Config) { c.Lease = netip.MustParsePrefix("::ffff:198.18.3.9/112") }, "want an IPv4 address"},
		{"/32 lease", func(c *Config) { c.Lease = netip.MustParsePrefix("198.18.3.9/32") }, "no room for the gateway"},
		{"network address", func(c *Config) { c.Lease = netip.MustParsePrefix("198.18.0.0/16") }, "network or broadcast"},
		{"broadcast address", func(c *Config) { c.Lease = netip.MustParsePrefix("198.18.255.255/16") }, "network or broadcast"},
		{"limited broadcast", func(c *Config) { c.Lease = netip.MustParsePrefix("255.255.255.255/8") }, "not a unicast"},
		{"multicast", func(c *Config) { c.Lease = netip.MustParsePrefix("224.0.0.9/8") }, "not a unicast"},
		{"no server id", func(c *Config) { c.ServerID = netip.Addr{} }, "server id invalid IP"},
		{"server id off the prefix", func(c *Config) { c.ServerID = netip.MustParseAddr("198.20.0.1") }, "inside the lease's prefix 198.18.0.0/16"},
		{"server id is the lease", func(c *Config) { c.ServerID = leaseAddr }, "the client's own lease"},
		{"server id is the broadcast", func(c *Config) { c.ServerID = netip.MustParseAddr("198.18.255.255") }, "network or broadcast"},
		{"IPv6 server id", func(c *Config) { c.ServerID = netip.MustParseAddr("2001:2::1") }, "server id 2001:2::1"},
		{"router off the prefix", func(c *Config) { c.Router = netip.MustParseAddr("198.19.0.1") }, "router 198.19.0.1"},
		{"empty domain", func(c *Config) { c.Domains = []string{""} }, `search domain ""`},
		{"empty label", func(c *Config) { c.Domains = []string{"a..test"} }, "empty label"},
		{"long label", func(c *Config) { c.Domains = []string{strings.Repeat("a", 64) + ".test"} }, "longer than 63 characters"},
		{"label starting with '-'", func(c *Config) { c.Domains = []string{"-a.test"} }, "starts or ends with '-'"},
		{"label ending with '-'", func(c *Config) { c.Domains = []string{"a-.test"} }, "starts or ends with '-'"},
		{"space in a domain", func(c *Config) { c.Domains = []string{"a b.test"} }, "holds ' '"},
		{"MTU too small", func(c *Config) { c.MTU = 67 }, "mtu 67"},
		{"MTU too large", func(c *Config) { c.MTU = 65536 }, "mtu 65536"},
		{"short lease", func(c *Config) { c.LeaseTime = 59 * time.Second }, "lease time 59s"},
		{"negative lease", func(c *Config) { c.LeaseTime = -time.Hour }, "lease time -1h0m0s"},
		{"fractional lease", func(c *Config) { c.LeaseTime = 90*time.Second + time.Millisecond }, "whole seconds"},
		{"infinite lease", func(c *Config) { c.LeaseTime = (1<<32 - 1) * time.Second }, "lease time"},
		{"options past 576 bytes", func(c *Config) {
			for i := range 40 {
				c.Domains = append(c.Domains, "domain"+strings.Repeat("x", i%10)+".test")
			}
		}, "over the 548 every client accepts"},
		{"routes past 576 bytes", func(c *Config) {
			for i := range 60 {
				c.Routes = append(c.Routes, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24))
			}
		}, "search domains or routes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.change(&cfg)
			s, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, %v; want an error containing %q", s, err, tt.want)
			}
		})
	}
}

// TestNewDefaults checks what New fills in and what it accepts at the edges.
func TestNewDefaults(t *testing.T) {
	s := newServer(t, Config{Lease: netip.PrefixFrom(leaseAddr, 16), ServerID: serverAddr})
	if s.cfg.Router != serverAddr || s.cfg.LeaseTime != DefaultLeaseTime || s.cfg.Log == nil || len(s.cfg.DNS) != 0 {
		t.Errorf("defaults: %+v", s.cfg)
	}
	s = newServer(t, testConfig())
	if want := []netip.Addr{serverAddr, netip.MustParseAddr("198.18.0.2")}; len(s.cfg.DNS) != 2 || s.cfg.DNS[0] != want[0] || s.cfg.DNS[1] != want[1] {
		t.Errorf("DNS %v, want the IPv4 ones %v", s.cfg.DNS, want)
	}
	if s.cfg.Domains[0] != "tunnel.test" {
		t.Errorf("domains %q: the trailing dot stays", s.cfg.Domains)
	}
	for _, edge := range []Config{
		{Lease: netip.MustParsePrefix("198.18.0.1/31"), ServerID: netip.MustParseAddr("198.18.0.0")}, // RFC 3021
		{Lease: netip.MustParsePrefix("198.18.3.9/16"), ServerID: netip.MustParseAddr("::ffff:198.18.0.1")},
		{Lease: netip.MustParsePrefix("198.18.3.9/16"), ServerID: serverAddr, LeaseTime: MinLeaseTime, MTU: 68},
		{Lease: netip.MustParsePrefix("198.18.3.9/16"), ServerID: serverAddr, LeaseTime: MaxLeaseTime, MTU: 65535},
	} {
		if _, err := New(edge); err != nil {
			t.Errorf("New(%+v): %v", edge, err)
		}
	}
}

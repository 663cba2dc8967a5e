package dhcpd

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// DefaultLeaseTime is the lease Config.LeaseTime 0 gives: an hour, as
// dnsmasq's default and gvisor-tap-vsock's fixed lease. The address never
// changes (it is the client key's), so a long lease wastes nothing; what the
// lease bounds is how late a client learns changed options (DNS, MTU), at
// its renewal after half the lease, and a renewal every half hour costs one
// exchange.
const DefaultLeaseTime = time.Hour

// MinLeaseTime and MaxLeaseTime bound Config.LeaseTime. Below a minute the
// client renews every few seconds for nothing; above the maximum the seconds
// overflow option 51, whose 0xffffffff means "infinite", which a tunnel
// lease is not.
const (
	MinLeaseTime = time.Minute
	MaxLeaseTime = (math.MaxUint32 - 1) * time.Second
)

// Config is one segment's lease and what its client is told with it.
type Config struct {
	Lease    netip.Prefix // the client's address and the subnet's mask (e.g. 198.18.3.9/16)
	ServerID netip.Addr   // the gateway's address on the segment (option 54, and the source)
	Router   netip.Addr   // option 3; the zero Addr means ServerID
	DNS      []netip.Addr // option 6; IPv6 addresses are left out, DHCPv4 cannot carry them
	Domains  []string     // option 119 (RFC 3397 domain search) and option 15 (the first one)
	MTU      int          // option 26, the interface MTU; 0 leaves it out
	// Routes are the networks to reach through Router: option 121 (RFC
	// 3442 classless static routes), each via Router. A client that takes
	// option 121 ignores option 3, so it routes these alone through the
	// segment and keeps its own default route. IPv6 networks are left out.
	Routes    []netip.Prefix
	LeaseTime time.Duration // option 51, whole seconds; 0 means DefaultLeaseTime. T1, T2 (options 58, 59) are 0.5 and 0.875 of it (RFC 2131 4.4.5)
	Log       *slog.Logger  // nil discards; the caller adds the client's key and remote address
}

// maxPayload is the largest reply every client takes: RFC 2131 section 2
// makes a client accept a 576-byte IP datagram, which leaves 548 bytes of
// DHCP message once the IPv4 and UDP headers are off.
const maxPayload = 576 - 20 - 8

// check validates cfg and returns it with its defaults filled in: Router,
// LeaseTime, Log, DNS reduced to IPv4, Domains without trailing dots.
func (cfg Config) check() (Config, error) {
	if err := checkPrefix(cfg.Lease); err != nil {
		return cfg, err
	}
	var err error
	if cfg.ServerID, err = onLink("server id", cfg.ServerID, cfg.Lease); err != nil {
		return cfg, err
	}
	if !cfg.Router.IsValid() {
		cfg.Router = cfg.ServerID
	}
	if cfg.Router, err = onLink("router", cfg.Router, cfg.Lease); err != nil {
		return cfg, err
	}
	cfg.DNS = ipv4Only(cfg.DNS)
	cfg.Routes = ipv4Routes(cfg.Routes)
	if cfg.Domains, err = checkDomains(cfg.Domains); err != nil {
		return cfg, err
	}
	if cfg.MTU != 0 && (cfg.MTU < 68 || cfg.MTU > math.MaxUint16) {
		// RFC 2132 9.1: 68 is the smallest MTU IPv4 allows (RFC 791).
		return cfg, fmt.Errorf("dhcpd: mtu %d: want 0 (leave option 26 out) or 68 to 65535", cfg.MTU)
	}
	if cfg.LeaseTime == 0 {
		cfg.LeaseTime = DefaultLeaseTime
	}
	if cfg.LeaseTime < MinLeaseTime || cfg.LeaseTime > MaxLeaseTime || cfg.LeaseTime%time.Second != 0 {
		return cfg, fmt.Errorf("dhcpd: lease time %v: want whole seconds from %v to %v", cfg.LeaseTime, MinLeaseTime, MaxLeaseTime)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// checkPrefix accepts an IPv4 lease that a host may hold in its prefix:
// neither the network nor the broadcast address (except in a /31, which has
// neither, RFC 3021), and a prefix with room for the gateway too.
func checkPrefix(p netip.Prefix) error {
	a := p.Addr()
	if !p.IsValid() || !a.Is4() {
		// An IPv4-mapped IPv6 prefix is refused too: its length counts the
		// 96 bits of the mapping.
		return fmt.Errorf("dhcpd: lease %v: want an IPv4 address with its prefix length, like 198.18.3.9/16", p)
	}
	if p.Bits() > 31 {
		return fmt.Errorf("dhcpd: lease %v: a /32 leaves no room for the gateway on the segment", p)
	}
	if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == broadcastAddr {
		return fmt.Errorf("dhcpd: lease %v: not a unicast address", p)
	}
	if p.Bits() < 31 && (a == p.Masked().Addr() || a == lastAddr(p)) {
		return fmt.Errorf("dhcpd: lease %v: the network or broadcast address of its prefix", p)
	}
	return nil
}

// onLink checks that a, the server id or the router, is an IPv4 host address
// in the lease's prefix other than the lease itself, so that the client
// reaches it without a route.
func onLink(what string, a netip.Addr, lease netip.Prefix) (netip.Addr, error) {
	a = a.Unmap()
	if !a.Is4() || !lease.Contains(a) {
		return a, fmt.Errorf("dhcpd: %s %v: want an IPv4 address inside the lease's prefix %v", what, a, lease.Masked())
	}
	if a == lease.Addr() {
		return a, fmt.Errorf("dhcpd: %s %v: the client's own lease", what, a)
	}
	if lease.Bits() < 31 && (a == lease.Masked().Addr() || a == lastAddr(lease)) {
		return a, fmt.Errorf("dhcpd: %s %v: the network or broadcast address of %v", what, a, lease.Masked())
	}
	return a, nil
}

// lastAddr returns the highest address of p, its broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := ^uint32(0) >> p.Bits()
	for i := range 4 {
		b[i] |= byte(host >> (24 - 8*i))
	}
	return netip.AddrFrom4(b)
}

// ipv4Only returns the IPv4 addresses of as (mapped ones unmapped): DHCPv4
// has no room for the others, which reach the client by router
// advertisement.
func ipv4Only(as []netip.Addr) []netip.Addr {
	var v4 []netip.Addr
	for _, a := range as {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		}
	}
	return v4
}

// ipv4Routes returns the IPv4 networks of ps, masked: option 121 carries
// no others.
func ipv4Routes(ps []netip.Prefix) []netip.Prefix {
	var v4 []netip.Prefix
	for _, p := range ps {
		if p.IsValid() && p.Addr().Is4() {
			v4 = append(v4, p.Masked())
		}
	}
	return v4
}

// checkDomains returns the domains without a trailing dot, or an error
// naming the first that relay.CheckDomain refuses: what a client would
// refuse from its gateway it must not get from its DHCP server either.
func checkDomains(domains []string) ([]string, error) {
	out := make([]string, 0, len(domains))
	for _, d := range domains {
		d = strings.TrimSuffix(d, ".")
		if err := relay.CheckDomain(d); err != nil {
			return nil, fmt.Errorf("dhcpd: search domain %q: %w", d, err)
		}
		out = append(out, d)
	}
	return out, nil
}

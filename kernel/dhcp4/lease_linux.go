//go:build linux

package dhcp4

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/sshvpn/sshvpn/relay"
)

// Lease is what a DHCPv4 server granted.
type Lease struct {
	Addr      netip.Prefix // the address, with its subnet's prefix length
	Broadcast netip.Addr   // the subnet's broadcast address
	Router    netip.Addr   // the first router the server names; zero if none
	Server    netip.Addr   // the server identifier: who granted it, whom to renew with
	DNS       []netip.Addr
	Domains   []string // the domain name and the search list, in that order, each once
	// Duration is the lease time; T1 and T2 are when to renew with
	// Server and when to rebind with any server, all from Granted.
	Duration, T1, T2 time.Duration
	Granted          time.Time
}

// RenewAt, RebindAt and ExpiresAt are the lease's three moments.
func (l *Lease) RenewAt() time.Time   { return l.Granted.Add(l.T1) }
func (l *Lease) RebindAt() time.Time  { return l.Granted.Add(l.T2) }
func (l *Lease) ExpiresAt() time.Time { return l.Granted.Add(l.Duration) }

// String is the lease for a log line.
func (l *Lease) String() string {
	return fmt.Sprintf("%s from %s for %v", l.Addr, l.Server, l.Duration)
}

// Limits on what a lease may carry. Its name servers and domains go into
// the host's resolver, as the gateway's do, under the same caps
// (relay.MaxDNS, relay.MaxDomains).
const (
	// minPrefixBits is the widest subnet a lease may claim: the kernel
	// routes the whole subnet to the tap, and a server that says /1 would
	// take half the Internet, the SSH connection's path with it.
	minPrefixBits = 8
	// minLease is the shortest lease the client counts with, as busybox's
	// udhcpc does: a server that grants a second would otherwise have it
	// renewing several times a second, or dropping the address as often.
	minLease = 30 * time.Second
	// minT1 is the least time to the first renewal, whatever T1 the
	// server names: at most one renewal exchange every few seconds.
	minT1 = 4 * time.Second
)

// leaseOf reads the lease an ACK grants, received at granted. offer is
// the OFFER it answered, whose server identifier stands in for an ACK
// without one (a renewal's, from some servers). An ACK whose address or
// subnet the host cannot take is an error; name servers, domains and a
// broadcast address it cannot use are left out, with a warning to log.
func leaseOf(ack, offer *dhcpv4.DHCPv4, granted time.Time, log *slog.Logger) (*Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return nil, errors.New("the ACK assigns no address (yiaddr 0.0.0.0)")
	}
	if !unicast(ip) {
		return nil, fmt.Errorf("the ACK assigns %s, not a unicast address", ip)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		// RFC 2132 3.3: without the option the client picks; the
		// address's class is what other clients pick.
		mask = net.IP(ip.AsSlice()).DefaultMask()
	}
	bits, size := mask.Size()
	if size != 32 || bits == 0 {
		return nil, fmt.Errorf("the ACK's subnet mask %s is not a prefix", net.IP(mask))
	}
	if bits < minPrefixBits {
		return nil, fmt.Errorf("the ACK's subnet %s is wider than /%d", netip.PrefixFrom(ip, bits).Masked(), minPrefixBits)
	}
	l := &Lease{Addr: netip.PrefixFrom(ip, bits), Granted: granted}
	l.Broadcast = broadcast(l.Addr)
	if bits <= 30 && (ip == l.Addr.Masked().Addr() || ip == l.Broadcast) {
		return nil, fmt.Errorf("the ACK assigns %s, its subnet's network or broadcast address", l.Addr)
	}
	if b, ok := addr4(ack.BroadcastAddress()); ok && b != l.Broadcast {
		// The kernel takes a device's broadcast address as broadcast
		// wherever it lies: one outside the subnet would turn a unicast
		// address elsewhere into a broadcast on the tap.
		if !l.Addr.Contains(b) || b == ip {
			log.Warn("the DHCP lease's broadcast address is not one of its subnet's; the subnet's is used", "broadcast", b, "address", l.Addr)
		} else {
			l.Broadcast = b
		}
	}
	for _, r := range ack.Router() {
		if a, ok := addr4(r); ok && unicast(a) && a != ip {
			l.Router = a
			break
		}
	}
	l.Server, _ = addr4(ack.ServerIdentifier())
	if !l.Server.IsValid() && offer != nil {
		l.Server, _ = addr4(offer.ServerIdentifier())
	}
	for _, d := range ack.DNS() {
		a, ok := addr4(d)
		switch {
		case !ok || !unicast(a):
			log.Warn("the DHCP lease's name server is not a unicast address: left out", "dns", net.IP(d))
		case len(l.DNS) == relay.MaxDNS:
			log.Warn("the DHCP lease names more name servers than the client takes: the rest are left out", "max", relay.MaxDNS, "left_out", a)
		case !slices.Contains(l.DNS, a):
			l.DNS = append(l.DNS, a)
		}
	}
	l.Domains = domains(ack, log)
	// RFC 2131 4.4.5: T1 defaults to half the lease, T2 to 7/8 of it.
	l.Duration = ack.IPAddressLeaseTime(0)
	if l.Duration <= 0 {
		return nil, errors.New("the ACK gives no lease time")
	}
	if l.Duration < minLease {
		log.Warn("the DHCP lease is shorter than the client counts with: it is taken as longer", "lease_time", l.Duration, "taken_as", minLease)
		l.Duration = minLease
	}
	l.T1 = ack.IPAddressRenewalTime(l.Duration / 2)
	l.T2 = ack.IPAddressRebindingTime(l.Duration * 7 / 8)
	// Times out of order mean the defaults (RFC 2131 leaves it there).
	if l.T2 <= 0 || l.T2 > l.Duration {
		l.T2 = l.Duration * 7 / 8
	}
	if l.T1 <= 0 || l.T1 > l.T2 {
		l.T1 = min(l.Duration/2, l.T2)
	}
	l.T1 = max(l.T1, minT1)
	l.T2 = max(l.T2, l.T1)
	return l, nil
}

// unicast reports whether a is an IPv4 address a host can be given or
// sent to as one host: not 0.0.0.0/8, loopback, link-local, multicast,
// class E (240.0.0.0/4) or the limited broadcast.
func unicast(a netip.Addr) bool {
	return a.Is4() && a.IsGlobalUnicast() && a.As4()[0] != 0 && a.As4()[0] < 240
}

// domains are the lease's domain name and search list, each once, those
// that are DNS domains (relay.CheckDomain) and no more than relay.MaxDomains.
func domains(ack *dhcpv4.DHCPv4, log *slog.Logger) []string {
	var out []string
	add := func(d string) {
		d = strings.TrimSuffix(d, ".")
		if d == "" || slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, d) }) {
			return
		}
		if err := relay.CheckDomain(d); err != nil {
			// A name with a newline in it would be a line of its own in
			// /etc/resolv.conf.
			log.Warn("the DHCP lease's domain is not a DNS domain: left out", "err", err)
			return
		}
		if len(out) == relay.MaxDomains {
			log.Warn("the DHCP lease names more domains than the client takes: the rest are left out", "max", relay.MaxDomains, "left_out", d)
			return
		}
		out = append(out, d)
	}
	add(ack.DomainName())
	if s := ack.DomainSearch(); s != nil {
		for _, d := range s.Labels {
			add(d)
		}
	}
	return out
}

func addr4(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip.To4())
	return a, ok && !a.IsUnspecified()
}

// broadcast is p's directed broadcast address: every host bit set.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

//go:build linux

package dhcp4

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
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

// leaseOf reads the lease an ACK grants, received at granted. offer is
// the OFFER it answered, whose server identifier stands in for an ACK
// without one (a renewal's, from some servers).
func leaseOf(ack, offer *dhcpv4.DHCPv4, granted time.Time) (*Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return nil, errors.New("the ACK assigns no address (yiaddr 0.0.0.0)")
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
	l := &Lease{Addr: netip.PrefixFrom(ip, bits), Granted: granted}
	l.Broadcast = broadcast(l.Addr)
	if b, ok := addr4(ack.BroadcastAddress()); ok {
		l.Broadcast = b
	}
	for _, r := range ack.Router() {
		if a, ok := addr4(r); ok {
			l.Router = a
			break
		}
	}
	l.Server, _ = addr4(ack.ServerIdentifier())
	if !l.Server.IsValid() && offer != nil {
		l.Server, _ = addr4(offer.ServerIdentifier())
	}
	for _, d := range ack.DNS() {
		if a, ok := addr4(d); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	l.Domains = domains(ack)
	// RFC 2131 4.4.5: T1 defaults to half the lease, T2 to 7/8 of it.
	l.Duration = ack.IPAddressLeaseTime(0)
	if l.Duration <= 0 {
		return nil, errors.New("the ACK gives no lease time")
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
	return l, nil
}

// domains are the lease's domain name and search list, each once.
func domains(ack *dhcpv4.DHCPv4) []string {
	var out []string
	add := func(d string) {
		d = strings.TrimSuffix(d, ".")
		for _, o := range out {
			if strings.EqualFold(o, d) {
				return
			}
		}
		if d != "" {
			out = append(out, d)
		}
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

package kernel

import (
	"fmt"
	"net/netip"

	"github.com/sshvpn/sshvpn/relay"
)

// On a point-to-point tunnel the device is the next hop: a route names the
// device alone. An ethernet tunnel is a link with hosts on it, and a
// network behind the far end goes via one of them (the gateway's address
// on the link, the LAN's router): a route that names the link alone makes
// the client ask ARP for every host of that network on the tap, and nobody
// answers.

// nextHops are an ethernet tunnel's next hops, one per family, each with
// where it came from, for messages.
type nextHops struct {
	v4, v6       netip.Addr
	from4, from6 string
}

// add makes a its family's next hop unless that family has one: the
// sources are added most trusted first.
func (h *nextHops) add(a netip.Addr, from string) {
	if !a.IsValid() {
		return
	}
	a = a.Unmap()
	switch {
	case a.Is4() && !h.v4.IsValid():
		h.v4, h.from4 = a, from
	case a.Is6() && !h.v6.IsValid():
		h.v6, h.from6 = a, from
	}
}

// of returns the next hop for a network of p's family, and its source.
func (h nextHops) of(p netip.Prefix) (netip.Addr, string) {
	if p.Addr().Is4() {
		return h.v4, h.from4
	}
	return h.v6, h.from6
}

// routePlan is how one route goes into the routing table.
type routePlan struct {
	Dst netip.Prefix
	Via netip.Addr // zero: through the device alone
	// OnLink: the network is one the device's addresses are in, and the
	// kernel's prefix route already carries it.
	OnLink bool
}

// planRoute decides how the network r goes through the device: through
// the device alone on a point-to-point tunnel or where r lies in a network
// the device's addresses are in (on the link), else via the next hop of
// its family. ok is false when r needs a next hop and none is known.
func planRoute(mode relay.Mode, r netip.Prefix, addrs []netip.Prefix, hops nextHops) (p routePlan, ok bool) {
	r = r.Masked()
	p.Dst = r
	if mode != relay.Ethernet {
		return p, true
	}
	for _, a := range addrs {
		if a.Addr().Is4() != r.Addr().Is4() || a.Bits() > r.Bits() || !a.Contains(r.Addr()) {
			continue
		}
		p.OnLink = a.Masked() == r
		return p, true
	}
	p.Via, _ = hops.of(r)
	return p, p.Via.IsValid()
}

// noNextHopError says why an ethernet tunnel cannot route r.
func noNextHopError(r netip.Prefix, dhcp bool) error {
	v, how := 4, "pass --via ADDRESS (the gateway's address on the tap), or --dhcp to take the LAN's router from a lease"
	if r.Addr().Is6() {
		v, how = 6, "pass --via with the IPv6 address of the gateway (or the LAN's router) on the tap"
	}
	if dhcp && v == 4 {
		how = "the DHCP lease names no router: pass --via ADDRESS"
	}
	return fmt.Errorf("--route %s: an ethernet tunnel routes a network via a host on the link, and no IPv%d next hop is known: %s", r, v, how)
}

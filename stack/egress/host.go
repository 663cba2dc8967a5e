package egress

import (
	"net/netip"
	"slices"
	"sync/atomic"
)

// HostSet is the gateway host's own addresses as they are now. The host
// gains and loses addresses while the gateway runs (DHCP, IPv6 privacy
// addresses, a new interface, an address on lo), so every Policy built
// with it, and every Policy ForKey derives from those, judges by the set
// of the moment. Set swaps the whole set at once; Decide reads it without
// a lock.
type HostSet struct {
	cur atomic.Pointer[hostSnapshot]
}

// hostSnapshot is one immutable state of a HostSet, built with every why
// Decide may return, so that Decide does not allocate.
type hostSnapshot struct {
	deny  map[netip.Addr]hostEntry
	order []netip.Addr // deny's keys, sorted, for Explain
}

type hostEntry struct {
	why   string
	nat64 string // the why for a 64:ff9b::/96 destination embedding an IPv4 address
}

// NewHostSet returns a set holding addrs (see Set).
func NewHostSet(addrs ...netip.Prefix) *HostSet {
	h := &HostSet{}
	h.Set(addrs)
	return h
}

// Set makes addrs the host's addresses, replacing the previous set. Each is
// an interface address with its prefix length, as the host has it
// (192.0.2.10/24, 2001:db8::10/64). Set denies each address, and the
// addresses a packet from the host itself reaches its own listeners or its
// whole link through:
//
//   - for an IPv6 prefix shorter than /127 and not link-local, the
//     subnet-router anycast address (the prefix's all-zero address, RFC 4291
//     §2.6.1), which a Linux host that forwards accepts as its own;
//   - for an IPv4 subnet of /30 or wider, its broadcast address, which a
//     datagram from the host delivers to the host's own 0.0.0.0 listeners
//     and to every host on the link, and its network address, which older
//     Linux kernels treat as a broadcast address too.
//
// /31 and /32 (RFC 3021), and /127 and /128 (RFC 6164), have no such
// address: there the all-zero address is a peer's. It is safe to call Set
// while Policies decide.
func (h *HostSet) Set(addrs []netip.Prefix) {
	s := &hostSnapshot{deny: make(map[netip.Addr]hostEntry, 2*len(addrs))}
	// The addresses themselves first: when a derived address is also
	// an interface's, it is named as the host's own.
	for _, p := range addrs {
		if p.IsValid() {
			s.add(p.Addr(), "this host's own address")
		}
	}
	for _, p := range addrs {
		if p.IsValid() {
			s.addDerived(p)
		}
	}
	s.order = make([]netip.Addr, 0, len(s.deny))
	for a := range s.deny {
		s.order = append(s.order, a)
	}
	slices.SortFunc(s.order, netip.Addr.Compare)
	h.cur.Store(s)
}

// addDerived adds the anycast or broadcast addresses of p's subnet.
func (s *hostSnapshot) addDerived(p netip.Prefix) {
	a := p.Addr().Unmap()
	bits := p.Bits()
	if p.Addr().Is4In6() {
		if bits -= 96; bits < 0 {
			return
		}
	}
	subnet := netip.PrefixFrom(a, bits).Masked()
	switch {
	case a.Is6() && bits < 127 && !a.IsLinkLocalUnicast():
		s.add(subnet.Addr(), "subnet-router anycast of "+subnet.String()+", this host's on-link prefix")
	case a.Is4() && bits <= 30:
		s.add(lastAddr(subnet), "broadcast of "+subnet.String()+", this host's subnet")
		s.add(subnet.Addr(), "network address of "+subnet.String()+", this host's subnet (older Linux broadcasts to it)")
	}
}

// add denies a, unless a is already denied for another reason.
func (s *hostSnapshot) add(a netip.Addr, what string) {
	p := hostPrefix(a)
	if _, ok := s.deny[p.Addr()]; ok {
		return
	}
	e := hostDeny(p, what)
	s.deny[p.Addr()] = hostEntry{why: e.why, nat64: e.nat64}
}

// lastAddr is the highest address of an IPv4 subnet.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := ^uint32(0) >> p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// deny says whether addr (unmapped and unzoned), or the IPv4 address
// embedded in it through NAT64, is one of the host's, and why. A nil
// HostSet holds nothing.
func (h *HostSet) deny(addr, embedded netip.Addr, viaNAT64 bool) (string, bool) {
	if h == nil {
		return "", false
	}
	s := h.cur.Load()
	if e, ok := s.deny[addr]; ok {
		return e.why, true
	}
	if viaNAT64 {
		if e, ok := s.deny[embedded]; ok && e.nat64 != "" {
			return e.nat64, true
		}
	}
	return "", false
}

// whys lists the set's denies in address order, for Explain.
func (h *HostSet) whys() []string {
	if h == nil {
		return nil
	}
	s := h.cur.Load()
	out := make([]string, len(s.order))
	for i, a := range s.order {
		out[i] = s.deny[a].why
	}
	return out
}

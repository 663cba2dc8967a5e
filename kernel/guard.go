package kernel

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/sshvpn/sshvpn/relay"
)

// maxClaims bounds the addresses one tunnel may claim, so that a client
// cycling through source addresses cannot fill the routing table.
const maxClaims = 16

// SourceGuard checks the packets one tunnel sends into its device. The first
// packet from an address inside the tunnel networks claims that address for
// the tunnel and routes it there (a /32 or /128 via the device); packets
// from an address another tunnel claimed are dropped. Sources outside the
// tunnel networks (a client routing its own LAN through) pass unclaimed.
//
// Check runs on the hot path: after the first packet it takes an
// uncontended lock, compares two addresses and allocates nothing. The lock
// is there because Release may run while a last Check is under way (a Pump
// closes its Devices from either direction).
type SourceGuard struct {
	mu     sync.Mutex
	closed bool
	claims *Claims
	undo   *Undo
	dev    string
	mode   relay.Mode
	nets   []netip.Prefix // the tunnel networks, gateway addresses included
	mine   []netip.Addr   // claimed by this tunnel, newest last
	log    *slog.Logger
}

// NewSourceGuard guards dev, recording its routes in undo.
func NewSourceGuard(claims *Claims, undo *Undo, dev string, mode relay.Mode, nets []netip.Prefix, log *slog.Logger) *SourceGuard {
	return &SourceGuard{claims: claims, undo: undo, dev: dev, mode: mode, nets: nets, log: log}
}

// Check reports whether the packet or frame may enter the device.
func (g *SourceGuard) Check(pkt []byte) bool {
	src, ok := sourceOf(pkt, g.mode)
	if !ok {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.mine) > 0 && g.mine[len(g.mine)-1] == src {
		return true
	}
	for _, a := range g.mine {
		if a == src {
			return true
		}
	}
	if !g.inside(src) {
		return true
	}
	return g.claim(src)
}

// inside reports whether src is a client address of a tunnel network.
func (g *SourceGuard) inside(src netip.Addr) bool {
	for _, n := range g.nets {
		if n.Contains(src) && n.Addr() != src {
			return true
		}
	}
	return false
}

func (g *SourceGuard) claim(src netip.Addr) bool {
	if g.closed || len(g.mine) >= maxClaims {
		return false
	}
	ok, fresh := g.claims.claim(src, g.dev)
	if !ok {
		g.log.Warn("dropping packets from an address another tunnel holds", "device", g.dev, "source", src)
		return false
	}
	if fresh {
		if err := g.undo.AddRoute(netip.PrefixFrom(src, src.BitLen()), g.dev); err != nil {
			g.claims.release(src)
			g.log.Warn("cannot route the client's address to its tunnel", "device", g.dev, "source", src, "err", err)
			return false
		}
		g.log.Info("client address routed to its tunnel", "device", g.dev, "address", src)
	}
	g.mine = append(g.mine, src)
	return true
}

// Reserve picks the first free client address of each tunnel network for
// this tunnel and routes it here, so that the client can be told which
// address to use and is reachable before it sends anything.
func (g *SourceGuard) Reserve() ([]netip.Prefix, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var got []netip.Prefix
	for _, n := range g.nets {
		a, ok := g.claims.reserve(n, g.dev)
		if !ok {
			return got, fmt.Errorf("no free client address left in %s", n.Masked())
		}
		if err := g.undo.AddRoute(netip.PrefixFrom(a, a.BitLen()), g.dev); err != nil {
			g.claims.release(a)
			return got, err
		}
		g.mine = append(g.mine, a)
		got = append(got, netip.PrefixFrom(a, n.Bits()))
	}
	return got, nil
}

// Release gives up the tunnel's claims for good; its routes go with its
// Undo, which the caller reverts after Release.
func (g *SourceGuard) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for _, a := range g.mine {
		g.claims.release(a)
	}
	g.mine = nil
}

// sourceOf finds the IP source address of an IP packet (point-to-point) or
// of an untagged Ethernet frame carrying IPv4, IPv6 or ARP.
func sourceOf(p []byte, mode relay.Mode) (netip.Addr, bool) {
	if mode == relay.Ethernet {
		if len(p) < 14 {
			return netip.Addr{}, false
		}
		switch binary.BigEndian.Uint16(p[12:14]) {
		case 0x0800, 0x86dd:
			p = p[14:]
		case 0x0806: // ARP for IPv4 over Ethernet: the sender's address
			if len(p) < 14+18 || binary.BigEndian.Uint16(p[14+2:]) != 0x0800 {
				return netip.Addr{}, false
			}
			return netip.AddrFrom4([4]byte(p[14+14 : 14+18])), true
		default:
			return netip.Addr{}, false
		}
	}
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		return netip.AddrFrom4([4]byte(p[12:16])), true
	case len(p) >= 40 && p[0]>>4 == 6:
		a := netip.AddrFrom16([16]byte(p[8:24]))
		return a, !a.IsUnspecified() && !a.IsLinkLocalUnicast()
	}
	return netip.Addr{}, false
}

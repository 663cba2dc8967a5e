package kernel

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// sourceGuard checks the packets one tunnel sends into its device, as
// WireGuard's AllowedIPs do: a packet may come from the addresses the tunnel
// was given (Reserve), from an address of a tunnel network it claims by
// sending from it (routed there as a /32 or /128, up to the key's limit),
// or from a network its key may route through itself (AllowedIPs). Anything
// else is dropped and counted as spoofed: a client cannot put packets on the
// gateway's LAN in a LAN host's name, nor take another client's address.
//
// Check runs on the hot path: after the first packet it takes an
// uncontended lock, compares two addresses and allocates nothing. The lock
// is there because Release may run while a last Check is under way (a Pump
// closes its Devices from either direction).
type sourceGuard struct {
	mu      sync.Mutex
	closed  bool
	claims  *claimTable
	undo    *undoLog
	dev     string
	mode    relay.Mode
	key     string
	nets    []netip.Prefix // the tunnel networks, gateway addresses included
	allowed []netip.Prefix // the key's own networks
	mine    []*claim       // held by this tunnel, newest last
	log     *slog.Logger
	warn    *relay.Throttle

	// The device's own networks: a device the operator addressed by hand
	// (a persistent tap, or one made with no --tun-address) defines its
	// tunnel network itself. Read again at most once a second, when a
	// source matches nothing else, so a flood of random sources costs
	// one netlink query a second.
	devNets  []netip.Prefix
	devNetAt time.Time
}

// guardConfig is what a sourceGuard guards.
type guardConfig struct {
	Dev        string
	Mode       relay.Mode
	Key        string         // the client key's fingerprint: stable addresses and claim limits
	Nets       []netip.Prefix // the tunnel networks, each with the gateway's address
	AllowedIPs []netip.Prefix
	Log        *slog.Logger
	Warn       *relay.Throttle // nil: one warning per kind every 10 s
}

// newSourceGuard guards cfg.Dev, recording its routes in undo.
func newSourceGuard(claims *claimTable, undo *undoLog, cfg guardConfig) *sourceGuard {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Warn == nil {
		cfg.Warn = relay.NewThrottle(warnEvery)
	}
	return &sourceGuard{claims: claims, undo: undo, dev: cfg.Dev, mode: cfg.Mode, key: cfg.Key,
		nets: cfg.Nets, allowed: cfg.AllowedIPs, log: cfg.Log, warn: cfg.Warn}
}

// Check reports whether the packet or frame may enter the device.
func (g *sourceGuard) Check(pkt []byte) bool {
	src, v := sourceOf(pkt, g.mode)
	switch v {
	case sourcePass:
		return true
	case sourceRefuse:
		g.warnDrop("a router advertisement or redirect, or a tagged frame with neither IPv4, IPv6 nor ARP in it", netip.Addr{})
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.mine) - 1; i >= 0; i-- {
		if c := g.mine[i]; c.addr == src {
			if c.lost.Load() && !g.reclaim(c) {
				g.warnDrop("address taken over by a newer tunnel of the same key", src)
				return false
			}
			return true
		}
	}
	if g.inside(src) {
		return g.claim(src)
	}
	for _, n := range g.allowed {
		if n.Contains(src) {
			return true
		}
	}
	if g.refreshDeviceNets() && g.inside(src) {
		return g.claim(src)
	}
	g.warnDrop("source outside the tunnel's addresses (allow a client's own network with environment=\"SSHVPN_ALLOWED_IPS=…\")", src)
	return false
}

// reclaim routes a taken-over address back here once the newer tunnel
// that took it is gone; the caller holds g.mu.
func (g *sourceGuard) reclaim(c *claim) bool {
	if g.closed || !g.claims.reclaim(c) {
		return false
	}
	if err := g.undo.ReplaceRoute(netip.PrefixFrom(c.addr, c.addr.BitLen()), g.dev); err != nil {
		g.claims.abandon(c)
		g.log.Warn("cannot route the client's address back to its tunnel", "device", g.dev, "source", c.addr, "err", err)
		return false
	}
	g.log.Info("client address routed to its tunnel again: the newer tunnel of its key is gone", "device", g.dev, "address", c.addr)
	return true
}

// warnEvery is how often one kind of drop is logged.
const warnEvery = 10 * time.Second

// warnDrop logs a dropped packet, a line per kind and interval.
func (g *sourceGuard) warnDrop(why string, src netip.Addr) {
	if n, ok := g.warn.Allow(why); ok {
		g.log.Warn("dropping packets from the client", "device", g.dev, "why", why, "source", src, "dropped_since_last", n)
	}
}

// inside reports whether src is a client address of a tunnel network.
func (g *sourceGuard) inside(src netip.Addr) bool {
	for _, nets := range [2][]netip.Prefix{g.nets, g.devNets} {
		for _, n := range nets {
			if n.Contains(src) && n.Addr() != src {
				return true
			}
		}
	}
	return false
}

// refreshDeviceNets reads the device's networks again, unless it did in
// the last second, and reports whether it did.
func (g *sourceGuard) refreshDeviceNets() bool {
	if now := time.Now(); now.Sub(g.devNetAt) >= time.Second {
		g.devNetAt = now
		g.devNets = deviceNetworks(g.dev)
		return true
	}
	return false
}

func (g *sourceGuard) claim(src netip.Addr) bool {
	if g.closed {
		return false
	}
	c, r := g.claims.claim(src, g.dev, g.key)
	switch r {
	case claimHeld:
		g.warnDrop("address another tunnel holds", src)
		return false
	case claimLimited:
		g.warnDrop(g.claims.limitText, src)
		return false
	}
	route := g.undo.AddRoute
	if r == claimTakeover {
		route = g.undo.ReplaceRoute
	}
	if err := route(netip.PrefixFrom(src, src.BitLen()), g.dev); err != nil {
		g.claims.release(c)
		g.log.Warn("cannot route the client's address to its tunnel", "device", g.dev, "source", src, "err", err)
		return false
	}
	g.log.Info("client address routed to its tunnel", "device", g.dev, "address", src)
	g.mine = append(g.mine, c)
	return true
}

// Reserve hands this tunnel its key's address in each tunnel network and
// routes it here, so that the client can be told which address to use and
// is reachable before it sends anything. An address an older tunnel of the
// same key held is taken over: its route now leads here.
func (g *sourceGuard) Reserve() ([]netip.Prefix, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var got []netip.Prefix
	for _, n := range g.nets {
		c, takeover, ok := g.claims.reserve(n, g.dev, g.key)
		if !ok {
			return got, fmt.Errorf("no free client address left in %s", n.Masked())
		}
		route := g.undo.AddRoute
		if takeover {
			route = g.undo.ReplaceRoute
			g.log.Info("address taken over from an older tunnel of the same key", "device", g.dev, "address", c.addr)
		}
		if err := route(netip.PrefixFrom(c.addr, c.addr.BitLen()), g.dev); err != nil {
			g.claims.release(c)
			return got, err
		}
		g.mine = append(g.mine, c)
		got = append(got, netip.PrefixFrom(c.addr, n.Bits()))
	}
	return got, nil
}

// Close stops the tunnel from claiming more addresses, so that no route is
// added once its undoLog is reverting. Call Release after the revert.
func (g *sourceGuard) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Release gives up the tunnel's claims for good, after its undoLog removed
// their routes: an address freed earlier could be handed to another tunnel
// while the old route still holds it ("file exists").
func (g *sourceGuard) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for _, c := range g.mine {
		g.claims.release(c)
	}
	g.mine = nil
}

// sourceVerdict says what to do with a packet before its source is known.
type sourceVerdict int

const (
	sourceCheck  sourceVerdict = iota // check the source address
	sourcePass                        // no address to check: link-local, or no IP
	sourceRefuse                      // cannot be checked and must not pass
)

// Ethernet types (IEEE 802.3, 802.1Q, RFC 826).
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherIPv6 = 0x86dd
	etherVLAN = 0x8100
	etherQinQ = 0x88a8
)

// sourceOf finds the source address to check: of an IP packet
// (point-to-point), or of an Ethernet frame's IPv4, IPv6 or ARP payload,
// after up to two 802.1Q/802.1ad tags. A tagged frame whose payload is
// anything else is refused: nothing could vouch for it. An untagged frame
// of another type (LLDP, say) passes: it stays on the tunnel's own link.
func sourceOf(p []byte, mode relay.Mode) (netip.Addr, sourceVerdict) {
	if mode == relay.Ethernet {
		return frameSource(p)
	}
	return ipSource(p)
}

func frameSource(p []byte) (netip.Addr, sourceVerdict) {
	off, tagged := 12, false
	for range 3 {
		if len(p) < off+2 {
			return netip.Addr{}, refuseIf(tagged)
		}
		switch binary.BigEndian.Uint16(p[off:]) {
		case etherVLAN, etherQinQ:
			off, tagged = off+4, true
			continue
		case etherIPv4, etherIPv6:
			a, v := ipSource(p[off+2:])
			if v == sourcePass && tagged {
				v = sourceRefuse
			}
			return a, v
		case etherARP: // ARP for IPv4 over Ethernet: the sender's address
			arp := p[off+2:]
			if len(arp) < 18 || binary.BigEndian.Uint16(arp[2:]) != etherIPv4 || arp[4] != 6 || arp[5] != 4 {
				return netip.Addr{}, refuseIf(tagged)
			}
			a := netip.AddrFrom4([4]byte(arp[14:18]))
			if a.IsUnspecified() { // an ARP probe (RFC 5227) claims nothing
				return a, sourcePass
			}
			return a, sourceCheck
		}
		return netip.Addr{}, refuseIf(tagged)
	}
	return netip.Addr{}, sourceRefuse // three tags
}

func refuseIf(tagged bool) sourceVerdict {
	if tagged {
		return sourceRefuse
	}
	return sourcePass
}

// ipSource is the source of an IP packet. Unspecified sources (DHCP, DAD)
// and IPv6 link-local ones pass: neighbour discovery needs them, and no
// router forwards them. A router advertisement or redirect from a client is
// refused whatever its source: the gateway is the router here, and a host
// that took one would route through the client.
func ipSource(p []byte) (netip.Addr, sourceVerdict) {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		a := netip.AddrFrom4([4]byte(p[12:16]))
		if a.IsUnspecified() {
			return a, sourcePass
		}
		return a, sourceCheck
	case len(p) >= 40 && p[0]>>4 == 6:
		if p[6] == icmpv6 && len(p) > 40 && (p[40] == icmpv6RouterAdvert || p[40] == icmpv6Redirect) {
			return netip.Addr{}, sourceRefuse
		}
		a := netip.AddrFrom16([16]byte(p[8:24]))
		if a.IsUnspecified() || a.IsLinkLocalUnicast() {
			return a, sourcePass
		}
		return a, sourceCheck
	}
	return netip.Addr{}, sourcePass
}

// ICMPv6 (RFC 4443, 4861).
const (
	icmpv6             = 58
	icmpv6RouterAdvert = 134
	icmpv6Redirect     = 137
)

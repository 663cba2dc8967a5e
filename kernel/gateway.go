package kernel

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/sshvpn/sshvpn/kernel/tun"
	"github.com/sshvpn/sshvpn/relay"
)

// DefaultMTU is a kernel gateway's tunnel MTU unless told otherwise: what
// the stock ssh -w client's tun has, so that both ends agree untouched.
const DefaultMTU = 1500

// GatewayConfig is what a kernel-mode gateway puts on the host.
type GatewayConfig struct {
	Addrs  []netip.Prefix // the gateway's own address on every tunnel device, with the tunnel network
	Routes []netip.Prefix // networks sshvpn clients are told to route through the tunnel
	DNS    []netip.Addr   // name servers sshvpn clients are told
	NAT    bool           // forward and masquerade the tunnel networks
	MTU    int            // every tunnel device's; DefaultMTU when 0
	// Domains are the DNS domains the DNS servers answer for: clients send lookups under them there.
	Domains []string
	// ClaimsPerKey bounds the addresses one key may claim by sending
	// from them (DefaultClaimsPerKey when 0).
	ClaimsPerKey int
	// Bridge, when set, is an existing bridge on the gateway's LAN: every
	// ethernet tunnel's tap becomes its port, guarded by port security
	// (bridge.go), instead of carrying Addrs.
	Bridge string
	// CreateBridge, when set, is an interface swapped for a bridge made for
	// it (DefaultBridgeName) for as long as the gateway runs; then as Bridge.
	CreateBridge string
	// Journal, when set, keeps every host change on disk before it is
	// made, so that a gateway killed outright is undone by the next start.
	Journal *Journal
	Log     *slog.Logger
}

// Gateway is the kernel backend of a gateway (relay.Opener): each tunnel
// gets a tun/tap device it creates and configures, and the gateway-wide
// changes (forwarding, NAT) live as long as the Gateway.
type Gateway struct {
	cfg    GatewayConfig
	global *undoLog
	claims *claimTable
	warn   *relay.Throttle
	ports  *portSecurity // nil unless ethernet tunnels are bridged
}

var _ relay.Opener = (*Gateway)(nil)

// NewGateway checks that the host can take the configuration and makes the
// gateway-wide changes. Close undoes them.
func NewGateway(cfg GatewayConfig) (*Gateway, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if err := CheckAccess(); err != nil {
		return nil, err
	}
	if err := checkTunnelAddresses(cfg.Addrs); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, global: cfg.undo(), claims: newClaimTable(cfg.ClaimsPerKey), warn: relay.NewThrottle(warnEvery)}
	if err := g.setup(); err != nil {
		g.global.Revert()
		return nil, err
	}
	return g, nil
}

// undo returns an undoLog on the journal, if there is one.
func (c *GatewayConfig) undo() *undoLog {
	if c.Journal != nil {
		return c.Journal.newUndo(c.Log)
	}
	return newUndo(c.Log)
}

// setup makes the gateway-wide changes. Every tunnel device carries the
// gateway's address without a prefix route, and the tunnel network itself
// is unreachable: a packet for an address no tunnel holds (a client that
// just left, NAT replies in flight) is refused instead of reaching whichever
// tunnel's device would otherwise own the prefix.
func (g *Gateway) setup() error {
	for _, a := range g.cfg.Addrs {
		if err := g.global.AddUnreachable(a.Masked()); err != nil {
			return err
		}
	}
	if g.cfg.Bridge != "" || g.cfg.CreateBridge != "" {
		if err := g.setupBridge(); err != nil {
			return err
		}
	}
	if g.cfg.NAT {
		return g.enableNAT()
	}
	return nil
}

// checkTunnelAddresses refuses gateway addresses that cannot work: one an
// interface already holds (the gateway would answer for it on two links),
// one inside a network an interface has (its hosts, even the client's own
// SSH source, would be routed into tunnels), a prefix with no room for a
// client, and a prefix's network or broadcast address.
func checkTunnelAddresses(addrs []netip.Prefix) error {
	for _, a := range addrs {
		if err := checkTunnelAddress(a); err != nil {
			return fmt.Errorf("--tun-address %s: %w", a, err)
		}
	}
	return nil
}

func checkTunnelAddress(a netip.Prefix) error {
	host := a.Addr().BitLen() - a.Bits()
	switch {
	case host < 2:
		return fmt.Errorf("a /%d leaves no address for a client: use at least a /%d", a.Bits(), a.Addr().BitLen()-2)
	case a.Addr() == a.Masked().Addr():
		return fmt.Errorf("%s is the network's own address: pick a host address in it, like %s", a.Addr(), a.Masked().Addr().Next())
	case a.Addr().Is4() && !a.Contains(a.Addr().Next()):
		return fmt.Errorf("%s is the network's broadcast address: pick a host address in it", a.Addr())
	}
	owner, err := addressOwner(a.Addr())
	if err != nil {
		return err
	}
	if owner != "" {
		return fmt.Errorf("address in use: %s is already on %s; pick an address no interface has", a.Addr(), owner)
	}
	overlap, err := networkOverlap(a)
	if err != nil {
		return err
	}
	if overlap != "" {
		return fmt.Errorf("the tunnel network %s overlaps %s: its hosts would be routed into tunnels; pick a network no interface has", a.Masked(), overlap)
	}
	return nil
}

// enableNAT turns on forwarding for the families in use and masquerades
// the tunnel networks, so that hosts behind the gateway need no route back.
// It warns when another firewall's forward chain drops by default, which
// sshvpn's own accept rules cannot override.
func (g *Gateway) enableNAT() error {
	drops, err := forwardDrops()
	if err != nil {
		g.cfg.Log.Warn("cannot check other firewalls' forward chains", "err", err)
	}
	for _, chain := range drops {
		g.cfg.Log.Warn("NAT will pass nothing until this chain accepts the tunnel traffic: it drops forwarded packets by default",
			"chain", chain, "remedy", fmt.Sprintf("nft insert rule %s ip saddr <tunnel network> accept; nft insert rule %s ip daddr <tunnel network> accept", chain, chain))
	}
	v4, v6 := false, false
	for _, a := range g.cfg.Addrs {
		if a.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
		if err := g.global.Masquerade(a.Masked()); err != nil {
			return err
		}
	}
	if v4 {
		if err := g.global.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
			return err
		}
	}
	if v6 {
		// A forwarding interface ignores router advertisements unless
		// accept_ra is 2: the host would lose its own IPv6 default route.
		for _, dev := range acceptRAInterfaces() {
			if err := g.global.SetSysctl("net/ipv6/conf/"+dev+"/accept_ra", "2"); err != nil {
				return err
			}
		}
		if err := g.global.SetSysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
			return err
		}
	}
	return nil
}

// Close undoes the gateway-wide changes.
func (g *Gateway) Close() error { return g.global.Revert() }

// Open implements relay.Opener: a device for the tunnel, up, with the
// gateway's addresses and a client address reserved and routed to it.
func (g *Gateway) Open(ctx context.Context, req relay.TunnelRequest) (relay.Tunnel, error) {
	// A key's egress rules are the rootless backend's; a kernel tunnel
	// routes packets, and silently skipping a deny would let the key
	// reach what its line says it must not.
	if len(req.KeyRules) > 0 {
		return nil, fmt.Errorf("%s has SSHVPN_ALLOW or SSHVPN_DENY, which only --backend netstack enforces: remove them, or filter this key's tunnels with the host's firewall", req.KeySource)
	}
	// The MTU goes through the journal, not Open: a persistent device
	// must get its own MTU back even after a SIGKILL.
	dev, err := tun.Open(tun.Config{Mode: req.Mode, Unit: req.Unit, GSO: req.GSO})
	if err != nil {
		return nil, err
	}
	if g.ports != nil && req.Mode == relay.Ethernet {
		return g.openBridged(dev, req)
	}
	undo := g.cfg.undo()
	t := &gatewayTunnel{Tun: dev, undo: undo, cfg: &g.cfg,
		guard: newSourceGuard(g.claims, undo, guardConfig{Dev: dev.Name(), Mode: req.Mode, Key: req.Key,
			Nets: g.cfg.Addrs, AllowedIPs: req.AllowedIPs, Log: g.cfg.Log, Warn: g.warn})}
	if err := t.configure(); err != nil {
		t.Close()
		return nil, err
	}
	if t.clients, err = t.guard.Reserve(); err != nil {
		t.Close()
		return nil, fmt.Errorf("tunnel %s: %w", dev.Name(), err)
	}
	return t, nil
}

// gatewayTunnel is one tunnel's device plus the changes made for it.
type gatewayTunnel struct {
	*tun.Tun
	undo    *undoLog
	guard   *sourceGuard
	cfg     *GatewayConfig
	clients []netip.Prefix // the addresses reserved for this tunnel's client
}

// configure brings the device up first: Linux drops IPv6 addresses from a
// link that is down. Before that it stops the host from learning anything
// from the client's side of the link: a router advertisement would give the
// gateway host a default route through the client.
func (t *gatewayTunnel) configure() error {
	if err := setMTU(t.Tun, t.undo, t.cfg.MTU); err != nil {
		return err
	}
	if err := untrusting(t.undo, t.Name()); err != nil {
		return err
	}
	if err := t.undo.LinkUp(t.Name()); err != nil {
		return err
	}
	for _, a := range t.cfg.Addrs {
		// No prefix route: each client's address is routed to its own
		// device, and the rest of the network is unreachable.
		if err := t.undo.AddAddress(t.Name(), a, true); err != nil {
			return err
		}
	}
	return nil
}

// Write implements relay.Device: packets from the client pass the source
// guard on their way into the device.
func (t *gatewayTunnel) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if !t.guard.Check(b[offset:]) {
			n, err := t.Tun.Write(bufs[:i], offset)
			if err != nil {
				return n, err
			}
			return i, errSpoofed
		}
	}
	return t.Tun.Write(bufs, offset)
}

var errSpoofed = &relay.DropError{Reason: relay.DropSpoofed}

// Close reverts the device's configuration, then closes it, which removes
// a device sshvpn created.
func (t *gatewayTunnel) Close() error {
	t.guard.Close() // first: no route may be added once the revert runs
	err := t.undo.Revert()
	t.guard.Release() // last: the addresses are free once their routes are gone
	if cerr := t.Tun.Close(); err == nil {
		err = cerr
	}
	return err
}

// setMTU changes the device's MTU through undo, when asked.
func setMTU(dev *tun.Tun, undo *undoLog, mtu int) error {
	if mtu == 0 || mtu == dev.LinkMTU() {
		return nil
	}
	if err := undo.SetMTU(dev.Name(), mtu); err != nil {
		return err
	}
	return dev.RefreshMTU()
}

// untrusting makes the host ignore what a link's far end says about
// routing: IPv6 router advertisements (and the addresses and routes they
// bring) and redirects. A device with IPv6 disabled has none of these.
func untrusting(undo *undoLog, dev string) error {
	for _, p := range []string{"accept_ra", "autoconf", "accept_redirects"} {
		err := undo.SetSysctl("net/ipv6/conf/"+dev+"/"+p, "0")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Config implements relay.Tunnel: what an sshvpn client needs to set its
// side up without flags.
func (t *gatewayTunnel) Config() relay.TunnelConfig {
	c := relay.TunnelConfig{Device: t.Name(), MTU: t.LinkMTU(), Addresses: t.clients, Routes: t.cfg.Routes, DNS: t.cfg.DNS, Domains: t.cfg.Domains}
	for _, a := range t.cfg.Addrs {
		c.Gateways = append(c.Gateways, a.Addr())
	}
	return c
}

// Status implements relay.Tunnel: what the client must do on its side,
// commands a stock client pastes into one shell, the first of which sets
// $dev to its device (the gateway cannot know it). Over a tap, routes go
// via the gateway's address on the link: a route that names the tap alone
// makes the client ask ARP for every host of the network, and nobody
// answers.
func (t *gatewayTunnel) Status() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sshvpn: tunnel up on the gateway's %s (MTU %d).\n", t.Name(), t.LinkMTU())
	if len(t.cfg.Addrs) == 0 {
		b.WriteString("  The gateway's device has no address (start it with --tun-address to give it one).\n")
		return b.String()
	}
	for i, a := range t.cfg.Addrs {
		fmt.Fprintf(&b, "  gateway address %s; yours: %s\n", a.Addr(), t.clients[i])
	}
	b.WriteString("  on your side, as root, in one shell:\n")
	fmt.Fprintf(&b, "    %s\n", relay.ClientDeviceLine(t.guard.mode))
	b.WriteString("    ip link set $dev up\n")
	for _, c := range t.clients {
		fmt.Fprintf(&b, "    ip addr add %s dev $dev\n", c)
	}
	for _, r := range t.cfg.Routes {
		if c := t.routeCommand(r.String(), r.Addr().Is6()); c != "" {
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	if !t.cfg.NAT {
		return b.String()
	}
	if t.guard.mode != relay.Ethernet {
		fmt.Fprintf(&b, "  NAT is on: route any network through it:\n    %s\n", t.routeCommand("<network>", false))
		return b.String()
	}
	b.WriteString("  NAT is on: route any network through it, via the gateway's address on the link:\n")
	for _, v6 := range []bool{false, true} {
		network := "<IPv4 network>"
		if v6 {
			network = "<IPv6 network>"
		}
		if c := t.routeCommand(network, v6); c != "" {
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	return b.String()
}

// routeCommand is the client's command that routes network through the
// tunnel, or "" when an ethernet tunnel has no gateway address of its
// family to route it via.
func (t *gatewayTunnel) routeCommand(network string, v6 bool) string {
	if t.guard.mode != relay.Ethernet {
		return fmt.Sprintf("ip route add %s dev $dev", network)
	}
	for _, a := range t.cfg.Addrs {
		if a.Addr().Is6() == v6 {
			return fmt.Sprintf("ip route add %s via %s dev $dev", network, a.Addr())
		}
	}
	return ""
}

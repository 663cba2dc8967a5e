package kernel

import (
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sshvpn/sshvpn/kernel/tun"
	"github.com/sshvpn/sshvpn/relay"
)

// LocalConfig is how the client's own device is set up.
type LocalConfig struct {
	Mode relay.Mode
	Unit uint32 // relay.AnyUnit for the first free tunN/tapN
	MTU  int    // 0: the gateway's, else the device's own
	// Addrs, when set, are the device's addresses; otherwise those the
	// gateway assigns. Peer, when set, makes the address of its family the
	// local end of a point-to-point link, as `ip addr add A peer P` does.
	Addrs  []netip.Prefix
	Peer   netip.Addr
	Routes []netip.Prefix // routed through the tunnel, with the gateway's
	// Via are the next hops, one per family, of the routes through an
	// ethernet tunnel: the gateway's address on the link, or the LAN's
	// router. Without them, the gateway's (an sshvpn gateway tells them),
	// then Peer's.
	Via []netip.Addr
	// DHCP runs a DHCPv4 client on an ethernet tunnel's tap for the
	// tunnel's life: the lease's address goes on the tap, its router is
	// the IPv4 next hop, its name servers go where the gateway's would.
	DHCP bool
	// Bypass keeps the SSH transport out of a full tunnel: the default-like
	// routes (see defaultLike) go into its table. Zero refuses them.
	Bypass Bypass
	// Transport lists the addresses the SSH transport's sockets went to
	// (the server or first jump host, and name servers): a route in the
	// main table that covers one would carry the transport into the
	// tunnel itself, and is warned about.
	Transport []netip.Addr
	// DNSGlobal lets the gateway's name servers into /etc/resolv.conf
	// when the host has no per-link resolver (systemd-resolved).
	DNSGlobal bool
	// Journal, when set, keeps every host change on disk before it is
	// made, so that a client killed outright is undone by the next run or
	// sshvpn cleanup.
	Journal *Journal
	// Premade attaches the persistent device root made for this user
	// (FindPremade) and changes nothing on it or on the host: it reports
	// what the device lacks, with the command root would run. For a
	// client without CAP_NET_ADMIN.
	Premade bool
	Log     *slog.Logger
}

// Bypass is the routing table and firewall mark of a full tunnel: sockets
// with the mark (the SSH transport's) skip the table, which holds the
// default-like routes through the tunnel.
type Bypass struct {
	Table int
	Mark  uint32
}

// defaultLike reports whether a route through the tunnel stands for the
// default route: ::/0 and 0.0.0.0/0, or one of the /1 halves that people
// use to cover the default without replacing it.
func defaultLike(p netip.Prefix) bool { return p.Bits() <= 1 }

// Local is the client's device and what was set up on it.
type Local struct {
	*tun.Tun
	undo *undoLog
	cfg  LocalConfig
	// mu orders what changes the configuration after OpenLocal: a new
	// lease (the DHCP client's goroutine) and the gateway's Update.
	mu          sync.Mutex
	fromGateway []netip.Prefix     // addresses the gateway assigned, in place now
	peerRouted  bool               // the route to --peer is in place
	onDev       []netip.Prefix     // the device's addresses as configured, for what is on its link
	hops        nextHops           // an ethernet tunnel's next hops
	routes      []netip.Prefix     // routed through the tunnel
	dnsFrom     relay.TunnelConfig // the gateway's configuration, whose name servers come first
	// leaseDNS holds a DHCP lease's name servers and domains, in use while
	// the gateway names none.
	leaseDNS relay.TunnelConfig
	dhcp     *leaseKeeper // the DHCP client, with --dhcp
	// awaitingLease: --dhcp and no lease yet. The --route networks that
	// wait for the lease's router are deferred.
	awaitingLease bool
	deferred      []netip.Prefix
	// release, while a DHCP release is on its way out, watches for it in
	// what the Pump reads from the device (see Leave).
	release atomic.Pointer[releaseWatch]
	// premade: the device is root's (LocalConfig.Premade), and gaps are
	// what it lacks, as last reported (nil: not reported yet).
	premade bool
	gaps    []string
}

var _ relay.Device = (*Local)(nil)

// OpenLocal opens and configures the client's device, with what the gateway
// said (gw is nil from a stock sshd). Close undoes it all.
func OpenLocal(cfg LocalConfig, gw *relay.TunnelConfig) (*Local, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Premade {
		return openPremade(cfg, gw)
	}
	mtu := cfg.MTU
	if mtu == 0 && gw != nil {
		mtu = gw.MTU
	}
	// Super-packets whole only toward a gateway whose device passes them
	// so: anything else would split them, at the gateway's expense.
	dev, err := tun.Open(tun.Config{Mode: cfg.Mode, Unit: cfg.Unit, GSO: gw != nil && gw.GSO})
	if err != nil {
		return nil, err
	}
	undo := newUndo(cfg.Log)
	if cfg.Journal != nil {
		undo = cfg.Journal.newUndo(cfg.Log)
	}
	l := &Local{Tun: dev, undo: undo, cfg: cfg, awaitingLease: cfg.DHCP}
	if err := setMTU(dev, l.undo, mtu); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.configure(gw); err != nil {
		l.Close()
		return nil, err
	}
	if cfg.DHCP {
		// Once the tap is up: the client's packet socket needs it. Its
		// first messages may well be lost, as the Pump does not carry
		// frames until OpenLocal returns; it asks again.
		if err := l.startDHCP(); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// configure sets the device up with the flags, or else with what the
// gateway said.
func (l *Local) configure(gw *relay.TunnelConfig) error {
	name := l.Name()
	// Before the link comes up, so that the kernel's router solicitation
	// on carrier already counts.
	slaac, err := l.allowSLAAC()
	if err != nil {
		return err
	}
	if err := l.undo.LinkUp(name); err != nil {
		return err
	}
	addrs, routes := l.cfg.Addrs, slices.Clone(l.cfg.Routes)
	var gwRoutes []netip.Prefix
	l.hops = l.nextHops(gw)
	if gw != nil {
		if len(addrs) == 0 {
			addrs = gw.Addresses
			l.fromGateway = gw.Addresses
		}
		gwRoutes = gw.Routes
	}
	switch {
	case len(addrs) > 0:
	case l.cfg.DHCP:
		l.cfg.Log.Info("the tap takes its IPv4 address from a DHCP lease", "device", name)
	case slaac:
		l.cfg.Log.Info("the tap takes its IPv6 addresses from router advertisements on the link (SLAAC), if a router sends them; "+
			"nothing gives it an IPv4 address: pass --address for one", "device", name)
	case gw != nil:
		l.cfg.Log.Warn("the sshvpn gateway assigned the tunnel no address (it runs without --tun-address): pass --address", "device", name)
	default:
		l.cfg.Log.Warn("the tunnel has no address: pass --address (a stock sshd assigns none)", "device", name)
	}
	for _, a := range addrs {
		if err := l.addAddress(a); err != nil {
			return err
		}
		l.onDev = append(l.onDev, l.onDevice(a))
	}
	if err := l.addRoutes(routes, gwRoutes); err != nil {
		return err
	}
	routes = append(routes, gwRoutes...)
	// DNS last, so it is undone first: name servers on the tunnel are no
	// use before its routes exist or after they are gone.
	l.routes = routes
	if gw != nil {
		l.dnsFrom = *gw
		if err := l.setDNS(gw, routes); err != nil {
			return err
		}
	}
	l.cfg.Log.Info("local device configured", "device", name, "addresses", addrs, "routes", routes)
	if len(routes) == 0 && len(l.deferred) == 0 {
		l.cfg.Log.Info(noRoutes(gw != nil), "device", name)
	}
	return nil
}

// noRoutes says what a tunnel without routes reaches, and how to route
// more through it: the gateway's --route only an sshvpn gateway sends.
func noRoutes(sshvpnGateway bool) string {
	msg := "no routes through the tunnel: only the gateway and the tunnel's own network are reachable through it; to reach a network behind the gateway, pass --route NET (or --route default for everything) here"
	if sshvpnGateway {
		msg += ", or start the gateway with sshvpn serve --route NET"
	}
	return msg
}

// slaacSysctls let the kernel form IPv6 addresses on a tap from the
// prefixes routers advertise (SLAAC), the way a host on a LAN does: accept
// router advertisements even when the host forwards (accept_ra=2), and
// configure addresses from them (autoconf). The advertisement's default
// route is not taken (accept_ra_defrtr=0): it would pull the host's IPv6
// traffic, the SSH connection's with it, into the tunnel unasked; a full
// tunnel is --route default. accept_ra goes last, so that no
// advertisement counts before the others are in place.
var slaacSysctls = [...]struct{ name, value string }{
	{"accept_ra_defrtr", "0"},
	{"autoconf", "1"},
	{"accept_ra", "2"},
}

// allowSLAAC turns SLAAC on for an ethernet tunnel's tap, unless IPv6 is
// off there or --address gives it an IPv6 address. It reports whether it
// did.
func (l *Local) allowSLAAC() (bool, error) {
	if l.cfg.Mode != relay.Ethernet || !ipv6On(l.Name()) ||
		slices.ContainsFunc(l.cfg.Addrs, func(a netip.Prefix) bool { return a.Addr().Is6() }) {
		return false, nil
	}
	for _, s := range slaacSysctls {
		if err := l.undo.SetSysctl("net/ipv6/conf/"+l.Name()+"/"+s.name, s.value); err != nil {
			return false, err
		}
	}
	return true, nil
}

// nextHops gathers an ethernet tunnel's next hops: --via, then the
// gateway's addresses on the link, then --peer.
func (l *Local) nextHops(gw *relay.TunnelConfig) nextHops {
	var h nextHops
	if l.cfg.Mode != relay.Ethernet {
		return h
	}
	for _, a := range l.cfg.Via {
		h.add(a, "--via")
	}
	if gw != nil {
		for _, a := range gw.Gateways {
			h.add(a, "the gateway's tunnel configuration")
		}
	}
	h.add(l.cfg.Peer, "--peer")
	return h
}

// addRoutes routes the networks the user asked for and those the gateway
// told, the default-like ones through the full tunnel's table and the
// others through the main table, as ip route add does: via the next hop
// on an ethernet tunnel. A network of the user's that needs a next hop no
// one gave is an error; one of the gateway's is left out with a warning.
func (l *Local) addRoutes(user, fromGateway []netip.Prefix) error {
	var full []routePlan
	all := slices.Concat(user, fromGateway)
	for i, r := range all {
		r = r.Masked()
		if slices.ContainsFunc(all[:i], func(o netip.Prefix) bool { return o.Masked() == r }) {
			continue // the gateway's and the user's, or given twice
		}
		if r.Addr().Is6() && !ipv6On(l.Name()) {
			// --route default names both families; a host or device
			// without IPv6 takes the IPv4 half.
			l.cfg.Log.Warn("IPv6 is off on the device: route left out", "device", l.Name(), "route", r)
			continue
		}
		p, ok := planRoute(l.cfg.Mode, r, l.onDev, l.hops)
		switch {
		case !ok && i < len(user) && l.awaitingLease && r.Addr().Is4():
			l.deferred = append(l.deferred, r) // via the lease's router
			continue
		case !ok && i < len(user):
			return noNextHopError(r, l.cfg.DHCP && r.Addr().Is4())
		case !ok:
			l.cfg.Log.Warn("the gateway's route needs a next hop on the ethernet tunnel, and it names none: route left out; pass --via",
				"device", l.Name(), "route", r)
			continue
		case p.OnLink:
			l.cfg.Log.Debug("the network is on the link: the kernel's prefix route carries it", "device", l.Name(), "route", r)
			continue
		}
		if defaultLike(r) {
			if !slices.Contains(full, p) {
				full = append(full, p)
			}
			continue
		}
		l.warnTransport(r)
		if err := l.addRoute(p); err != nil {
			return err
		}
	}
	if len(full) == 0 {
		return nil
	}
	return l.fullTunnel(full)
}

// addRoute puts one planned route in the main table.
func (l *Local) addRoute(p routePlan) error {
	if p.Via.IsValid() {
		return l.undo.AddRouteVia(p.Dst, p.Via, l.Name())
	}
	return l.undo.AddRoute(p.Dst, l.Name())
}

// warnTransport warns when r would carry the SSH transport into the tunnel
// it carries: packets then loop until the connection dies, and every
// reconnect goes the same way.
func (l *Local) warnTransport(r netip.Prefix) {
	for _, a := range l.cfg.Transport {
		if r.Contains(a) {
			l.cfg.Log.Warn("the route covers the address of the SSH connection itself, which would then run through its own tunnel and die",
				"route", r, "transport", a, "remedy", "route a narrower network, or use --route default for a full tunnel, which keeps the SSH connection outside")
		}
	}
}

// addAddress puts a on the device, as the local end of a point-to-point
// link when a peer of its family was given.
func (l *Local) addAddress(a netip.Prefix) error {
	if !l.toPeer(a) {
		return l.undo.AddAddress(l.Name(), a, false)
	}
	if err := l.undo.AddAddress(l.Name(), l.onDevice(a), true); err != nil {
		return err
	}
	if l.peerRouted {
		return nil // a readdress: the route to the peer is in place
	}
	p := l.cfg.Peer
	l.peerRouted = true
	return l.undo.AddRoute(netip.PrefixFrom(p, p.BitLen()), l.Name())
}

// toPeer reports whether a is the local end of the point-to-point link to
// --peer.
func (l *Local) toPeer(a netip.Prefix) bool {
	p := l.cfg.Peer
	return p.IsValid() && a.Addr().Is4() == p.Is4()
}

// onDevice is a as addAddress put it on the device.
func (l *Local) onDevice(a netip.Prefix) netip.Prefix {
	if l.toPeer(a) {
		return netip.PrefixFrom(a.Addr(), a.Addr().BitLen())
	}
	return a
}

// Update follows the gateway when a reconnect brings another address (the
// gateway may still hold the old one for the session it has not yet seen
// die, and drops packets from it as another tunnel's) or other name
// servers.
func (l *Local) Update(gw *relay.TunnelConfig) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.premade {
		return l.reportPremade(gw)
	}
	if err := l.readdress(gw); err != nil {
		return err
	}
	if slices.Equal(gw.DNS, l.dnsFrom.DNS) && slices.Equal(gw.Domains, l.dnsFrom.Domains) {
		return nil
	}
	l.cfg.Log.Info("the gateway announces other name servers on reconnect", "old", l.dnsFrom.DNS, "new", gw.DNS)
	l.dnsFrom = *gw
	if len(gw.DNS) == 0 && len(l.leaseDNS.DNS) > 0 {
		// The gateway's came before the lease's; without them the
		// lease's are next.
		return l.setDNS(&l.leaseDNS, l.routes)
	}
	return l.setDNS(gw, l.routes)
}

// readdress replaces the gateway's addresses on the device with gw's.
func (l *Local) readdress(gw *relay.TunnelConfig) error {
	if len(l.cfg.Addrs) > 0 || slices.Equal(gw.Addresses, l.fromGateway) {
		return nil
	}
	l.cfg.Log.Warn("the gateway assigned a new address on reconnect; connections from the old one will break",
		"old", l.fromGateway, "new", gw.Addresses)
	// The new addresses go on before the old ones go, so that the device
	// never lacks an address of a family: the kernel deletes every IPv4
	// route through a device that loses its last IPv4 address. And a new
	// IPv4 address in the old one's subnet is its secondary, which the
	// kernel deletes along with the primary unless told to promote it.
	if err := l.promoteSecondaries(); err != nil {
		return err
	}
	for _, a := range gw.Addresses {
		if !slices.Contains(l.fromGateway, a) {
			if err := l.addAddress(a); err != nil {
				return err
			}
		}
	}
	for _, a := range l.fromGateway {
		if !slices.Contains(gw.Addresses, a) {
			if err := deleteAddress(l.Name(), l.onDevice(a)); err != nil {
				return err
			}
		}
	}
	l.fromGateway = gw.Addresses
	l.cfg.Log.Info("local device readdressed", "device", l.Name(), "addresses", gw.Addresses)
	return nil
}

// promoteSecondaries makes the kernel keep a device's secondary IPv4
// addresses when their primary goes, promoting one to primary.
func (l *Local) promoteSecondaries() error {
	err := l.undo.SetSysctl("net/ipv4/conf/"+l.Name()+"/promote_secondaries", "1")
	if errors.Is(err, fs.ErrNotExist) {
		return nil // IPv4 is off on the device
	}
	return err
}

// Close undoes the configuration and releases the device. A DHCP lease
// is not released (Leave does that, while the tunnel still carries it);
// its address goes with the rest.
func (l *Local) Close() error {
	if l.dhcp != nil {
		l.dhcp.close() // first: no lease may be applied once the revert runs
	}
	err := l.undo.Revert()
	if cerr := l.Tun.Close(); err == nil {
		err = cerr
	}
	return err
}

// ipv6On reports whether dev takes IPv6 addresses and routes.
func ipv6On(dev string) bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6")
	return err == nil && strings.TrimSpace(string(b)) == "0"
}

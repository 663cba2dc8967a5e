package kernel

import (
	"log/slog"
	"net/netip"
	"slices"

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
	Log    *slog.Logger
}

// Local is the client's device and what was set up on it.
type Local struct {
	*Tun
	undo        *Undo
	cfg         LocalConfig
	fromGateway []netip.Prefix // addresses the gateway assigned, in place now
}

var _ relay.Device = (*Local)(nil)

// OpenLocal opens and configures the client's device, with what the gateway
// said (gw is nil from a stock sshd). Close undoes it all.
func OpenLocal(cfg LocalConfig, gw *relay.TunnelConfig) (*Local, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	mtu := cfg.MTU
	if mtu == 0 && gw != nil {
		mtu = gw.MTU
	}
	tun, err := Open(Config{Mode: cfg.Mode, Unit: cfg.Unit})
	if err != nil {
		return nil, err
	}
	l := &Local{Tun: tun, undo: NewUndo(cfg.Log), cfg: cfg}
	if err := setMTU(tun, l.undo, mtu); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.configure(gw); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// configure sets the device up with the flags, or else with what the
// gateway said.
func (l *Local) configure(gw *relay.TunnelConfig) error {
	name := l.Name()
	if err := l.undo.LinkUp(name); err != nil {
		return err
	}
	addrs, routes := l.cfg.Addrs, slices.Clone(l.cfg.Routes)
	if gw != nil {
		if len(addrs) == 0 {
			addrs = gw.Addresses
			l.fromGateway = gw.Addresses
		}
		routes = append(routes, gw.Routes...)
		if len(gw.DNS) > 0 {
			l.cfg.Log.Info("the gateway offers name servers; sshvpn does not change the resolver", "dns", gw.DNS)
		}
	}
	if len(addrs) == 0 {
		l.cfg.Log.Warn("the tunnel has no address: pass --address (a stock sshd assigns none)", "device", name)
	}
	for _, a := range addrs {
		if err := l.addAddress(a); err != nil {
			return err
		}
	}
	for _, r := range routes {
		if err := l.undo.AddRoute(r.Masked(), name); err != nil {
			return err
		}
	}
	l.cfg.Log.Info("local device configured", "device", name, "addresses", addrs, "routes", routes)
	return nil
}

// addAddress puts a on the device, as the local end of a point-to-point
// link when a peer of its family was given.
func (l *Local) addAddress(a netip.Prefix) error {
	p := l.cfg.Peer
	if !p.IsValid() || a.Addr().Is4() != p.Is4() {
		return l.undo.AddAddress(l.Name(), a, false)
	}
	if err := l.undo.AddAddress(l.Name(), netip.PrefixFrom(a.Addr(), a.Addr().BitLen()), true); err != nil {
		return err
	}
	return l.undo.AddRoute(netip.PrefixFrom(p, p.BitLen()), l.Name())
}

// Update follows the gateway when a reconnect brings another address: the
// gateway may still hold the old one for the session it has not yet seen
// die, and drops packets from it as another tunnel's.
func (l *Local) Update(gw *relay.TunnelConfig) error {
	if len(l.cfg.Addrs) > 0 || slices.Equal(gw.Addresses, l.fromGateway) {
		return nil
	}
	l.cfg.Log.Warn("the gateway assigned a new address on reconnect; connections from the old one will break",
		"old", l.fromGateway, "new", gw.Addresses)
	for _, a := range gw.Addresses {
		if !slices.Contains(l.fromGateway, a) {
			if err := l.addAddress(a); err != nil {
				return err
			}
		}
	}
	for _, a := range l.fromGateway {
		if !slices.Contains(gw.Addresses, a) {
			if err := DeleteAddress(l.Name(), a); err != nil {
				return err
			}
		}
	}
	l.fromGateway = gw.Addresses
	return nil
}

// Close undoes the configuration and releases the device.
func (l *Local) Close() error {
	err := l.undo.Revert()
	if cerr := l.Tun.Close(); err == nil {
		err = cerr
	}
	return err
}

package kernel

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/sshvpn/sshvpn/relay"
)

// GatewayConfig is what a kernel-mode gateway puts on the host.
type GatewayConfig struct {
	Addrs  []netip.Prefix // the gateway's own address on every tunnel device, with the tunnel network
	Routes []netip.Prefix // networks sshvpn clients are told to route through the tunnel
	DNS    []netip.Addr   // name servers sshvpn clients are told
	NAT    bool           // forward and masquerade the tunnel networks
	MTU    int
	Log    *slog.Logger
}

// Gateway is the kernel backend of a gateway (relay.Opener): each tunnel
// gets a tun/tap device it creates and configures, and the gateway-wide
// changes (forwarding, NAT) live as long as the Gateway.
type Gateway struct {
	cfg    GatewayConfig
	global *Undo
	claims *Claims
}

var _ relay.Opener = (*Gateway)(nil)

// NewGateway checks that the host can take the configuration and makes the
// gateway-wide changes. Close undoes them.
func NewGateway(cfg GatewayConfig) (*Gateway, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := CheckAccess(); err != nil {
		return nil, err
	}
	if err := checkAddressesFree(cfg.Addrs); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, global: NewUndo(cfg.Log), claims: NewClaims()}
	if !cfg.NAT {
		return g, nil
	}
	if err := g.enableNAT(); err != nil {
		g.global.Revert()
		return nil, err
	}
	return g, nil
}

// checkAddressesFree refuses a gateway address that an interface already
// holds: the gateway would answer for it on two links.
func checkAddressesFree(addrs []netip.Prefix) error {
	for _, a := range addrs {
		owner, err := AddressOwner(a.Addr())
		if err != nil {
			return err
		}
		if owner != "" {
			return fmt.Errorf("--tun-address %s: address in use: %s is already on %s; pick an address no interface has", a, a.Addr(), owner)
		}
	}
	return nil
}

// enableNAT turns on forwarding for the families in use and masquerades
// the tunnel networks, so that hosts behind the gateway need no route back.
func (g *Gateway) enableNAT() error {
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
	tun, err := Open(Config{Mode: req.Mode, Unit: req.Unit, MTU: g.cfg.MTU})
	if err != nil {
		return nil, err
	}
	undo := NewUndo(g.cfg.Log)
	t := &gatewayTunnel{Tun: tun, undo: undo, cfg: &g.cfg,
		guard: NewSourceGuard(g.claims, undo, tun.Name(), req.Mode, g.cfg.Addrs, g.cfg.Log)}
	if err := t.configure(); err != nil {
		t.Close()
		return nil, err
	}
	if t.clients, err = t.guard.Reserve(); err != nil {
		t.Close()
		return nil, fmt.Errorf("tunnel %s: %w", tun.Name(), err)
	}
	return t, nil
}

// gatewayTunnel is one tunnel's device plus the changes made for it.
type gatewayTunnel struct {
	*Tun
	undo    *Undo
	guard   *SourceGuard
	cfg     *GatewayConfig
	clients []netip.Prefix // the addresses reserved for this tunnel's client
}

// configure brings the device up first: Linux drops IPv6 addresses from a
// link that is down.
func (t *gatewayTunnel) configure() error {
	if err := t.undo.LinkUp(t.Name()); err != nil {
		return err
	}
	for _, a := range t.cfg.Addrs {
		if err := t.undo.AddAddress(t.Name(), a, false); err != nil {
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
	t.guard.Release() // first: no route may be added after the revert
	err := t.undo.Revert()
	if cerr := t.Tun.Close(); err == nil {
		err = cerr
	}
	return err
}

// Config implements relay.Tunnel: what an sshvpn client needs to set its
// side up without flags.
func (t *gatewayTunnel) Config() relay.TunnelConfig {
	c := relay.TunnelConfig{Device: t.Name(), MTU: t.MTU(), Addresses: t.clients, Routes: t.cfg.Routes, DNS: t.cfg.DNS}
	for _, a := range t.cfg.Addrs {
		c.Gateways = append(c.Gateways, a.Addr())
	}
	return c
}

// Status implements relay.Tunnel: what the client must do on its side.
func (t *gatewayTunnel) Status() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sshvpn: tunnel up on the gateway's %s (MTU %d).\n", t.Name(), t.MTU())
	if len(t.cfg.Addrs) == 0 {
		b.WriteString("  The gateway's device has no address (start it with --tun-address to give it one).\n")
		return b.String()
	}
	for i, a := range t.cfg.Addrs {
		fmt.Fprintf(&b, "  gateway address %s; yours: %s\n", a.Addr(), t.clients[i])
	}
	b.WriteString("  on your side: ip link set <your tun> up")
	for _, c := range t.clients {
		fmt.Fprintf(&b, " && ip addr add %s dev <your tun>", c)
	}
	b.WriteString("\n")
	if t.cfg.NAT {
		b.WriteString("  NAT is on: route any network through it: ip route add <network> dev <your tun>\n")
	}
	return b.String()
}

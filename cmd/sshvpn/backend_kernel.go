package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/sshvpn/sshvpn/kernel"
	"github.com/sshvpn/sshvpn/relay"
)

// kernelBackend connects each tunnel to a kernel tun/tap device it creates
// and configures, and owns the gateway-wide changes (forwarding, NAT).
type kernelBackend struct {
	addrs  []netip.Prefix
	routes []netip.Prefix
	dns    []netip.Addr
	nat    bool
	mtu    int
	log    *slog.Logger
	global *kernel.Undo
	claims *kernel.Claims
}

func newKernelBackend(c *serveConfig, log *slog.Logger) (*kernelBackend, error) {
	if err := kernel.CheckAccess(); err != nil {
		return nil, err
	}
	if err := checkAddressesFree(c.tunAddrs); err != nil {
		return nil, err
	}
	b := &kernelBackend{addrs: c.tunAddrs, routes: c.routes, dns: c.dns, nat: c.nat, mtu: c.mtu, log: log,
		global: kernel.NewUndo(log), claims: kernel.NewClaims()}
	if !c.nat {
		return b, nil
	}
	if err := b.enableNAT(); err != nil {
		b.global.Revert()
		return nil, err
	}
	return b, nil
}

// checkAddressesFree refuses a --tun-address that an interface already
// holds: the gateway would answer for it on two links.
func checkAddressesFree(addrs []netip.Prefix) error {
	for _, a := range addrs {
		owner, err := kernel.AddressOwner(a.Addr())
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
func (b *kernelBackend) enableNAT() error {
	v4, v6 := false, false
	for _, a := range b.addrs {
		if a.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
		if err := b.global.Masquerade(a.Masked()); err != nil {
			return err
		}
	}
	if v4 {
		if err := b.global.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
			return err
		}
	}
	if v6 {
		if err := b.global.SetSysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
			return err
		}
	}
	return nil
}

// Close undoes the gateway-wide changes.
func (b *kernelBackend) Close() error { return b.global.Revert() }

// Open implements relay.Opener.
func (b *kernelBackend) Open(ctx context.Context, req relay.TunnelRequest) (relay.Device, error) {
	tun, err := kernel.Open(kernel.Config{Mode: req.Mode, Unit: req.Unit, MTU: b.mtu})
	if err != nil {
		return nil, err
	}
	undo := kernel.NewUndo(b.log)
	d := &kernelDevice{Tun: tun, undo: undo, addrs: b.addrs, routes: b.routes, dns: b.dns, nat: b.nat,
		guard: kernel.NewSourceGuard(b.claims, undo, tun.Name(), req.Mode, b.addrs, b.log)}
	if err := d.configure(); err != nil {
		d.Close()
		return nil, err
	}
	if d.clients, err = d.guard.Reserve(); err != nil {
		d.Close()
		return nil, fmt.Errorf("tunnel %s: %w", tun.Name(), err)
	}
	return d, nil
}

// kernelDevice is one tunnel's device plus the changes made to it.
type kernelDevice struct {
	*kernel.Tun
	undo    *kernel.Undo
	guard   *kernel.SourceGuard
	addrs   []netip.Prefix
	clients []netip.Prefix // the addresses reserved for this tunnel's client
	routes  []netip.Prefix // pushed to sshvpn clients
	dns     []netip.Addr
	nat     bool
}

// TunnelConfig implements relay.Configurer: what an sshvpn client needs to
// set its side up without flags.
func (d *kernelDevice) TunnelConfig() relay.TunnelConfig {
	c := relay.TunnelConfig{Device: d.Name(), MTU: d.MTU(), Addresses: d.clients, Routes: d.routes, DNS: d.dns}
	for _, a := range d.addrs {
		c.Gateways = append(c.Gateways, a.Addr())
	}
	return c
}

// Write implements relay.Device: packets from the client pass the source
// guard on their way into the device.
func (d *kernelDevice) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if !d.guard.Check(b[offset:]) {
			n, err := d.Tun.Write(bufs[:i], offset)
			if err != nil {
				return n, err
			}
			return i, &relay.DropError{Reason: relay.DropSpoofed}
		}
	}
	return d.Tun.Write(bufs, offset)
}

// configure brings the device up first: Linux drops IPv6 addresses from a
// link that is down.
func (d *kernelDevice) configure() error {
	if err := d.undo.LinkUp(d.Name()); err != nil {
		return err
	}
	for _, a := range d.addrs {
		if err := d.undo.AddAddress(d.Name(), a, false); err != nil {
			return err
		}
	}
	return nil
}

// Close reverts the device's configuration, then closes it, which removes
// a device sshvpn created.
func (d *kernelDevice) Close() error {
	d.guard.Release() // first: no route may be added after the revert
	err := d.undo.Revert()
	if cerr := d.Tun.Close(); err == nil {
		err = cerr
	}
	return err
}

// Describe implements relay.Describer: what the client must do on its side.
func (d *kernelDevice) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sshvpn: tunnel up on the gateway's %s (MTU %d).\n", d.Name(), d.MTU())
	if len(d.addrs) == 0 {
		b.WriteString("  The gateway's device has no address (start it with --tun-address to give it one).\n")
		return b.String()
	}
	for i, a := range d.addrs {
		fmt.Fprintf(&b, "  gateway address %s; yours: %s\n", a.Addr(), d.clients[i])
	}
	b.WriteString("  on your side: ip link set <your tun> up")
	for _, c := range d.clients {
		fmt.Fprintf(&b, " && ip addr add %s dev <your tun>", c)
	}
	b.WriteString("\n")
	if d.nat {
		b.WriteString("  NAT is on: route any network through it: ip route add <network> dev <your tun>\n")
	}
	return b.String()
}

//go:build linux

package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sshvpn/sshvpn/kernel/dhcp4"
	"github.com/sshvpn/sshvpn/relay"
)

// releaseGrace is how long Leave lets a DHCP release travel ahead of
// whatever closes the tunnel behind it.
const releaseGrace = 200 * time.Millisecond

// leaseKeeper is the DHCP client on an ethernet tunnel's tap, running for
// the tunnel's life.
type leaseKeeper struct {
	client  *dhcp4.Client
	cancel  context.CancelFunc
	done    chan struct{} // closed when its Run returned
	lease   *dhcp4.Lease  // the one applied; under Local.mu
	stopped sync.Once
	leave   sync.Once
}

// startDHCP starts the DHCP client on the tap.
func (l *Local) startDHCP() error {
	if l.cfg.Mode != relay.Ethernet {
		return errors.New("DHCP runs on an ethernet tunnel's tap: -o Tunnel=ethernet")
	}
	c, err := dhcp4.Open(l.Name(), l.leaseUsable, l.cfg.Log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &leaseKeeper{client: c, cancel: cancel, done: make(chan struct{})}
	l.dhcp = k
	go func() {
		defer close(k.done)
		if err := c.Run(ctx, l.applyLease); ctx.Err() == nil {
			l.cfg.Log.Error("the DHCP client stopped: the tap keeps what it has, unrenewed", "device", l.Name(), "err", err)
		}
	}()
	l.cfg.Log.Info("asking for a DHCP lease", "device", l.Name())
	return nil
}

// stop ends the client's Run; the lease stays held.
func (k *leaseKeeper) stop() {
	k.stopped.Do(k.cancel)
	<-k.done
}

// close ends the client and its socket.
func (k *leaseKeeper) close() {
	k.stop()
	k.client.Close()
}

// leaseUsable refuses a lease whose subnet holds an address the SSH
// transport goes to: the kernel's route for the subnet through the tap
// would carry the connection into its own tunnel, and it would die (the
// check warnTransport makes of a route). The server would grant the same
// again, so the tap goes without a lease; --address is the way out.
func (l *Local) leaseUsable(lease *dhcp4.Lease) error {
	subnet := lease.Addr.Masked()
	for _, a := range l.cfg.Transport {
		if subnet.Contains(a) {
			return fmt.Errorf("its subnet %s holds %s, the SSH connection's address, which would then run through its own tunnel and die; "+
				"give the tap an address in another subnet with --address", subnet, a)
		}
	}
	return nil
}

// applyLease puts a lease on the tap: its address (in place of the last
// lease's), and, with the first, the --route networks that waited for its
// router and its name servers. nil: the lease is lost, its address goes.
func (l *Local) applyLease(lease *dhcp4.Lease) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	k, name := l.dhcp, l.Name()
	old := k.lease
	switch {
	case lease == nil:
		k.lease = nil
		if old == nil {
			return nil
		}
		l.cfg.Log.Warn("the DHCP lease is lost: its address goes until a server grants another", "device", name, "address", old.Addr)
		return deleteAddress(name, old.Addr)
	case old != nil && old.Addr == lease.Addr:
		k.lease = lease
		l.cfg.Log.Debug("DHCP lease renewed", "device", name, "lease", lease, "renew_at", lease.RenewAt().Format(time.TimeOnly))
		if lease.Router != old.Router {
			l.cfg.Log.Warn("the renewed DHCP lease names another router; the routes keep the first one", "device", name, "router", lease.Router, "routes_via", old.Router)
		}
		return nil
	}
	if old != nil {
		// The new address goes on before the old one goes, as in
		// readdress: the kernel drops a device's IPv4 routes with its
		// last IPv4 address, and secondaries with their primary.
		if err := l.promoteSecondaries(); err != nil {
			return err
		}
	}
	if err := l.undo.AddLeasedAddress(name, lease.Addr, lease.Broadcast); err != nil {
		return err
	}
	if old != nil {
		if err := deleteAddress(name, old.Addr); err != nil {
			return err
		}
	}
	k.lease = lease
	l.cfg.Log.Info("DHCP lease", "device", name, "address", lease.Addr, "broadcast", lease.Broadcast, "server", lease.Server,
		"lease_time", lease.Duration, "router", lease.Router, "dns", lease.DNS, "domains", lease.Domains)
	if !l.awaitingLease {
		return nil
	}
	l.awaitingLease = false
	l.onDev = append(l.onDev, lease.Addr)
	l.hops.add(lease.Router, "the DHCP lease")
	if len(l.deferred) > 0 {
		routes := l.deferred
		l.deferred = nil
		if err := l.addRoutes(routes, nil); err != nil {
			// The lease stays: the address is of use without the routes.
			l.cfg.Log.Error("routes left out", "device", name, "err", err)
		}
	}
	if len(lease.DNS) > 0 {
		// Kept apart from the gateway's: Update compares a reconnect's
		// name servers with the gateway's alone.
		l.leaseDNS = relay.TunnelConfig{DNS: lease.DNS, Domains: lease.Domains}
		if len(l.dnsFrom.DNS) > 0 {
			l.cfg.Log.Info("the DHCP lease's name servers are not used: the gateway's are", "device", name, "dns", lease.DNS)
			return nil
		}
		if err := l.setDNS(&l.leaseDNS, l.routes); err != nil {
			l.cfg.Log.Error("the DHCP lease's name servers are not used", "device", name, "err", err)
		}
	}
	return nil
}

// Leave gives the DHCP lease back while the tunnel still carries frames:
// call it before the tunnel goes (Close cannot: by then nothing carries
// the release). It waits until the release is on its way through the
// tunnel, or for timeout. Without a lease it does nothing.
func (l *Local) Leave(timeout time.Duration) {
	k := l.dhcp
	if k == nil {
		return
	}
	k.leave.Do(func() {
		k.stop()
		ifi, err := net.InterfaceByName(l.Name())
		if err != nil {
			l.cfg.Log.Warn("DHCP lease not released", "device", l.Name(), "err", err)
			return
		}
		w := newReleaseWatch(ifi.HardwareAddr)
		l.release.Store(w)
		defer l.release.Store(nil)
		released, err := k.client.Release()
		switch {
		case err != nil:
			l.cfg.Log.Warn("DHCP lease not released", "device", l.Name(), "err", err)
			return
		case !released:
			return
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-w.done:
			// In the SSH connection now, but a stock sshd that reads the
			// release and the disconnect behind it in one go exits
			// before it writes the release to its tap: let the release
			// go first.
			time.Sleep(releaseGrace)
			l.cfg.Log.Info("DHCP lease released", "device", l.Name())
		case <-t.C:
			l.cfg.Log.Warn("DHCP release sent, but the tunnel did not take it on", "device", l.Name(), "waited", timeout)
		}
	})
}

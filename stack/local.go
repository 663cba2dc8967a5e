package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/sshvpn/sshvpn/relay"
)

// LocalConfig is the client's side of a tunnel.
type LocalConfig struct {
	MTU       int            // the tunnel MTU (0: 1500)
	Addresses []netip.Prefix // the client's tunnel addresses (from the gateway's config or --address)
	DNS       []netip.Addr   // name servers reachable through the tunnel (may be empty)
	Log       *slog.Logger
}

// localMTU is a tunnel's MTU when LocalConfig.MTU is 0: a stock peer's
// tun has it, and a larger one is only worth it when the gateway says so.
const localMTU = 1500

// Local is a userspace stack owning the client's tunnel addresses: a
// relay.Device toward the tunnel, and sockets for the process's own
// proxies. Unlike a gateway client's stack it is an ordinary host: its NIC
// accepts packets to its own addresses only and sends from them only, and
// it routes everything of a family it has an address of into the tunnel.
// Local starts no goroutine of its own: the caller's Pump drives the
// Device, and each call (a dial, a lookup) runs in its caller's goroutine.
type Local struct {
	s   *stack.Stack
	ep  *endpoint
	log *slog.Logger

	// ctx ends when Close begins, so that every dial and lookup in
	// flight returns; calls holds them, and Close waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	calls  *group

	mu    sync.Mutex
	addrs []netip.Prefix // guarded by mu
	dns   []netip.Addr   // guarded by mu

	// has4 and has6 say whether the tunnel has an address of each family,
	// read on every datagram sent.
	has4, has6 atomic.Bool

	stats             Stats // the link endpoint's counters
	bytesIn, bytesOut atomic.Uint64

	closeOnce sync.Once
}

var _ relay.Device = (*Local)(nil)

// LocalStats are a Local's counters: In is from the tunnel into the stack,
// Out from the stack into the tunnel.
type LocalStats struct {
	PacketsIn, PacketsOut, BytesIn, BytesOut uint64
	// DropsNotIP are tunnel packets that were neither IPv4 nor IPv6;
	// DropsNotOurs those to an address the stack does not own.
	DropsNotIP, DropsNotOurs uint64
	// DropsQueueFull, DropsQueueDelay and DropsTooBig are outbound
	// packets the queue toward the tunnel dropped: full, held too long
	// (CoDel), or larger than the reader's buffer.
	DropsQueueFull, DropsQueueDelay, DropsTooBig uint64
}

// NewLocal builds the stack of cfg.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if cfg.MTU == 0 {
		cfg.MTU = localMTU
	}
	if err := checkLocal(cfg.MTU, cfg.Addresses); err != nil {
		return nil, err
	}
	l := &Local{log: cfg.Log, calls: newGroup()}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.ep = newEndpoint(uint32(cfg.MTU), 0, &l.stats)
	var err error
	if l.s, err = newTunnelStack(l.ep); err != nil {
		l.cancel()
		l.ep.Close()
		return nil, err
	}
	// An ordinary host's NIC: neither promiscuous nor spoofing, the
	// defaults. A stack that answered for any address would take the
	// gateway's packets for others, and could not tell its own sockets'
	// traffic from a stray one.
	if err := l.setAddresses(cfg.Addresses); err != nil {
		l.cancel()
		l.ep.Close()
		l.s.Destroy()
		return nil, err
	}
	l.dns = slices.Clone(cfg.DNS)
	return l, nil
}

// checkLocal refuses a configuration the stack cannot carry.
func checkLocal(mtu int, addrs []netip.Prefix) error {
	if mtu < 576 || mtu > 65535 {
		return fmt.Errorf("stack: tunnel MTU %d: want 576 to 65535", mtu)
	}
	if len(addrs) == 0 {
		return errors.New("stack: no tunnel address: the gateway gave none; give one with --address")
	}
	for _, p := range addrs {
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return fmt.Errorf("stack: tunnel address %s: want a plain IPv4 or IPv6 prefix", p)
		}
		if p.Addr().Is6() && mtu < 1280 {
			return fmt.Errorf("stack: tunnel address %s: IPv6 needs an MTU of 1280 or more, not %d", p, mtu)
		}
	}
	return nil
}

// setAddresses makes addrs the NIC's addresses, removing those it held
// that are not in addrs, and routes each family it has an address of into
// the tunnel. The caller holds mu, or owns l alone.
func (l *Local) setAddresses(addrs []netip.Prefix) error {
	var gone []netip.Addr
	for _, old := range l.addrs {
		if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr() == old.Addr() }) {
			gone = append(gone, old.Addr())
		}
	}
	for _, a := range gone {
		if err := l.s.RemoveAddress(nicID, addrTo(a)); err != nil {
			return fmt.Errorf("stack: remove tunnel address %s: %s", a, err)
		}
	}
	for _, p := range addrs {
		if slices.ContainsFunc(l.addrs, func(o netip.Prefix) bool { return o.Addr() == p.Addr() }) {
			continue
		}
		pa := tcpip.ProtocolAddress{Protocol: netProto(p.Addr()), AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: addrTo(p.Addr()), PrefixLen: p.Bits(),
		}}
		if err := l.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			return fmt.Errorf("stack: add tunnel address %s: %s", p, err)
		}
	}
	l.addrs = slices.Clone(addrs)
	var routes []tcpip.Route
	has4 := slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr().Is4() })
	has6 := slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr().Is6() })
	if has4 {
		routes = append(routes, tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	}
	if has6 {
		routes = append(routes, tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	}
	l.s.SetRouteTable(routes)
	l.has4.Store(has4)
	l.has6.Store(has6)
	l.abortFrom(gone)
	return nil
}

// abortFrom resets every connection from an address the tunnel no longer
// has: the gateway would drop its packets as spoofed, and it would hang
// until its timeouts; reset, its proxy learns at once.
func (l *Local) abortFrom(gone []netip.Addr) {
	if len(gone) == 0 {
		return
	}
	type localAddresser interface {
		GetLocalAddress() (tcpip.FullAddress, tcpip.Error)
	}
	for _, e := range l.s.RegisteredEndpoints() {
		la, ok := e.(localAddresser)
		if !ok {
			continue
		}
		fa, err := la.GetLocalAddress()
		if err != nil || fa.Addr.Len() == 0 {
			continue
		}
		if slices.Contains(gone, addrFrom(fa.Addr)) {
			e.Abort()
		}
	}
}

// Update applies a later tunnel's configuration: a reconnect may bring
// other addresses, and other name servers. Connections from an address
// that is gone are reset; sockets from ListenUDP, bound to no address,
// carry on from the new ones.
func (l *Local) Update(addrs []netip.Prefix, dns []netip.Addr) error {
	if err := checkLocal(l.MTU(), addrs); err != nil {
		return err
	}
	if !l.calls.begin() {
		return net.ErrClosed
	}
	defer l.calls.done()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.setAddresses(addrs); err != nil {
		return err
	}
	l.dns = slices.Clone(dns)
	l.log.Info("tunnel stack updated", "addresses", addrs, "dns", dns)
	return nil
}

// hasFamily reports whether the tunnel has an address of a's family, and
// if not, an error that says so and wraps ENETUNREACH, as a host without
// a route to that family fails.
func (l *Local) hasFamily(a netip.Addr) error {
	if a.Is4() && l.has4.Load() || a.Is6() && l.has6.Load() {
		return nil
	}
	fam := "IPv4"
	if a.Is6() {
		fam = "IPv6"
	}
	return fmt.Errorf("no %s address on the tunnel: %w", fam, syscall.ENETUNREACH)
}

// nameServers are the tunnel's name servers now.
func (l *Local) nameServers() []netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dns
}

// Read implements relay.Device: the stack's packets for the tunnel.
func (l *Local) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := l.ep.readBatch(bufs, sizes, offset)
	var b int
	for _, s := range sizes[:n] {
		b += s
	}
	l.bytesOut.Add(uint64(b))
	return n, err
}

// Write implements relay.Device: the tunnel's packets, one batch per call.
func (l *Local) Write(bufs [][]byte, offset int) (int, error) {
	n, err := l.ep.writeBatch(bufs, offset)
	var b int
	for _, p := range bufs[:n] {
		b += len(p) - offset
	}
	l.bytesIn.Add(uint64(b))
	return n, err
}

// BatchSize implements relay.Device.
func (l *Local) BatchSize() int { return batchSize }

// MTU implements relay.Device.
func (l *Local) MTU() int { return int(l.ep.MTU()) }

// Stats returns a copy of the counters.
func (l *Local) Stats() LocalStats {
	return LocalStats{
		PacketsIn:       l.stats.PacketsIn.Load(),
		PacketsOut:      l.stats.PacketsOut.Load(),
		BytesIn:         l.bytesIn.Load(),
		BytesOut:        l.bytesOut.Load(),
		DropsNotIP:      l.stats.DropsNotIP.Load(),
		DropsNotOurs:    l.s.Stats().IP.InvalidDestinationAddressesReceived.Value(),
		DropsQueueFull:  l.stats.DropsQueueFull.Load(),
		DropsQueueDelay: l.stats.DropsQueueDelay.Load(),
		DropsTooBig:     l.stats.DropsTooBig.Load(),
	}
}

// Close implements relay.Device. It ends every call in flight (their
// endpoints are aborted, their contexts cancelled), waits for them,
// and destroys the stack, which aborts every connection and socket left.
// Later calls return net.ErrClosed.
func (l *Local) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.ep.Close() // unblocks Read and Write; removes the NIC
		l.calls.close(l.abortEndpoints)
		l.s.Destroy()
		l.log.Debug("tunnel stack closed", "stats", l.Stats())
	})
	return nil
}

// abortEndpoints aborts every endpoint the stack holds, which returns
// every call blocked on one.
func (l *Local) abortEndpoints() {
	for _, e := range l.s.RegisteredEndpoints() {
		e.Abort()
	}
}

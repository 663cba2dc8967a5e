package stack

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/dhcpd"
	"github.com/sshvpn/sshvpn/stack/segment"
)

// DefaultEthernetMTU caps an ethernet tunnel's IP MTU (the tunnel takes
// the smaller of it and Config.MTU): the largest a stock client's frames
// carry. OpenSSH reads a frame into
// 16 KiB (relay/wire.MaxFrame); less the 14-byte header and room for one VLAN tag
// (which serve's --mtu check keeps for the kernel's bridges too). The
// stack's cost is per packet, as on point-to-point tunnels; a client that
// keeps its tap's 1500 still works (TCP's MSS), and one that applies
// DHCP's option 26 gets the speed.
const DefaultEthernetMTU = 16384 - 14 - 4

// maxFramedEthernetMTU is the largest IP MTU of a framed channel's
// ethernet tunnel: a Linux tap takes at most 65535 less its 14-byte header
// (sshvpn connect failed to set 65535 on its tap), less room for a VLAN tag
// as above. The framed channel itself carries more.
const maxFramedEthernetMTU = 65535 - 14 - 4

// ethernetMTU is the IP MTU of req's ethernet tunnel.
func (g *Gateway) ethernetMTU(req relay.TunnelRequest) int {
	if req.Framed {
		return min(g.cfg.FramedMTU, maxFramedEthernetMTU)
	}
	return min(g.cfg.MTU, DefaultEthernetMTU)
}

// CheckEthernet reports what would keep every ethernet tunnel from
// opening, so that a gateway refuses to start instead: today a DHCP
// reply the routes, name servers and domains make too large to send.
func (g *Gateway) CheckEthernet() error { return g.checkEthernet(g.adv()) }

func (g *Gateway) checkEthernet(a *advertised) error {
	for i, s := range g.subnets {
		if !s.Addr().Is4() {
			continue
		}
		lease := netip.PrefixFrom(relay.AddOffset(s.Addr(), 2), s.Bits())
		if lease.Addr() == g.gateways[i] {
			lease = netip.PrefixFrom(relay.AddOffset(s.Addr(), 3), s.Bits())
		}
		_, err := dhcpd.New(dhcpd.Config{Lease: lease, ServerID: g.gateways[i], DNS: a.DNS,
			Domains: a.Domains, MTU: min(g.cfg.MTU, DefaultEthernetMTU), Routes: g.cfg.Routes})
		if err != nil {
			return fmt.Errorf("ethernet tunnels' DHCP: %w", err)
		}
	}
	return nil
}

// openSegment puts an Ethernet segment in front of t, the client's stack:
// DHCP hands out its IPv4 address, router advertisements its IPv6 prefix.
func (g *Gateway) openSegment(t *tunnel, req relay.TunnelRequest) (relay.Tunnel, error) {
	l := &l2Tunnel{tunnel: t, claims: &keyClaims{gw: g, key: req.Key}, dialled: dialled(req.Local)}
	adv := t.adv
	cfg := segment.Config{
		Inner: t, Injector: t.ep, Local: g.localAddrs(), Routed: req.AllowedIPs,
		DNS: adv.DNS, Domains: adv.Domains, Claims: l.claims, Stats: &t.stats.L2, Log: t.log,
	}
	for i, a := range t.addrs {
		if a.Addr().Is4() {
			cfg.Lease = a
			srv, err := dhcpd.New(dhcpd.Config{Lease: a, ServerID: g.gateways[i], DNS: adv.DNS,
				Domains: adv.Domains, MTU: t.MTU(), Routes: g.cfg.Routes, Log: t.log})
			if err != nil {
				t.Close()
				return nil, fmt.Errorf("stack: ethernet tunnel: %w", err)
			}
			l.dhcp = srv
			cfg.DHCP = l.handleDHCP
		} else {
			cfg.Addr6 = a
		}
	}
	seg, err := segment.New(cfg)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("stack: ethernet tunnel: %w", err)
	}
	l.Segment = seg
	return l, nil
}

// l2Tunnel is an ethernet tunnel: the client's stack behind a segment.
type l2Tunnel struct {
	*segment.Segment
	tunnel  *tunnel
	claims  *keyClaims
	dhcp    *dhcpd.Server
	dialled netip.Addr // the gateway's address the client's SSH connection came to
}

// dialled is the IP address of the gateway's end of the SSH connection;
// the zero Addr when unknown or loopback, which no route can take away.
func dialled(local net.Addr) netip.Addr {
	ap, err := netip.ParseAddrPort(fmt.Sprint(local))
	if err != nil || ap.Addr().IsLoopback() {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

var (
	_ relay.Tunnel    = (*l2Tunnel)(nil)
	_ relay.PathTuner = (*l2Tunnel)(nil)
)

// handleDHCP is the segment's DHCPFunc.
func (l *l2Tunnel) handleDHCP(msg []byte, now time.Time) (segment.DHCPReply, bool, error) {
	r, ok, err := l.dhcp.Handle(msg, now)
	return segment.DHCPReply{Payload: r.Payload, Dst: r.Dst}, ok, err
}

// Close implements relay.Device: the segment closes the stack, which
// gives its addresses back; then the key's SLAAC addresses go.
func (l *l2Tunnel) Close() error {
	err := l.Segment.Close()
	l.claims.release()
	return err
}

// SetPathRTT implements relay.PathTuner.
func (l *l2Tunnel) SetPathRTT(rtt time.Duration) { l.tunnel.SetPathRTT(rtt) }

// Config implements relay.Tunnel: what a point-to-point tunnel's says, so
// that an sshvpn client on a tap needs no flags either.
func (l *l2Tunnel) Config() relay.TunnelConfig { return l.tunnel.Config() }

// Status implements relay.Tunnel: what a stock ethernet client gets and
// the commands that get it, $dev standing for the device ssh opened, in
// the order they must run:
//
//   - first a host route to the gateway's address via the client's
//     current router, so that the default route DHCP installs does not take
//     the SSH connection that carries the tunnel into the tunnel itself.
//     It is printed with --route networks too: option 121 keeps RFC 3442
//     clients (dhclient) from installing a default route, but busybox
//     udhcpc's stock scripts ignore it and add one via option 3;
//   - accept_ra=2 before the link comes up, so that the advertisement
//     answering the kernel's first solicitation is taken on a host that
//     forwards (else SLAAC waits for the next one, up to 16 s), and with
//     --route networks accept_ra_defrtr=0: no IPv6 default route;
//   - DHCP, then a route per --route network (replace: a client that took
//     option 121 has the IPv4 ones already).
func (l *l2Tunnel) Status() string {
	t, g := l.tunnel, l.tunnel.gw
	var b strings.Builder
	fmt.Fprintf(&b, "sshvpn: rootless gateway (userspace stack), ethernet, MTU %d; the gateway is your router.\n", t.MTU())
	var gw4, gw6 netip.Addr
	for i, a := range t.addrs {
		if a.Addr().Is4() {
			gw4 = g.gateways[i]
			fmt.Fprintf(&b, "  DHCP gives you %s, router %s", a, gw4)
			if routes4(g.cfg.Routes) {
				b.WriteString(", and the gateway's routes as classless static routes (option 121: a client that takes it adds no default route)")
			}
			b.WriteString("\n")
		} else {
			gw6 = segment.DefaultLinkLocal
			if a.Bits() == 64 {
				fmt.Fprintf(&b, "  router advertisements give you a SLAAC address in %s, router %s\n", a.Masked(), gw6)
			} else {
				fmt.Fprintf(&b, "  your IPv6 address %s, the gateway's %s (no SLAAC: the subnet is not a /64), router %s\n", a, g.gateways[i], gw6)
			}
		}
	}
	for _, d := range t.adv.DNS {
		fmt.Fprintf(&b, "  name server %s\n", d)
	}
	b.WriteString("  on your side, as root, in one shell:\n")
	fmt.Fprintf(&b, "    %s\n", relay.ClientDeviceLine(relay.Ethernet))
	if a := l.dialled; a.IsValid() {
		fmt.Fprintf(&b, "    ip %sroute add %s $(ip %sroute get %s | grep -oE 'via [^ ]+|dev [^ ]+')   # first: keeps this SSH connection out of the tunnel\n",
			family(a), netip.PrefixFrom(a, a.BitLen()), family(a), a)
	}
	if gw6.IsValid() {
		b.WriteString("    sysctl -w net.ipv6.conf.$dev.accept_ra=2\n")
		if len(g.cfg.Routes) > 0 {
			b.WriteString("    sysctl -w net.ipv6.conf.$dev.accept_ra_defrtr=0   # the routes below, no IPv6 default route\n")
		}
	}
	b.WriteString("    ip link set $dev up\n")
	if gw4.IsValid() {
		b.WriteString("    udhcpc -i $dev    # or: dhclient $dev\n")
	}
	for _, r := range g.cfg.Routes {
		via := gw4
		if r.Addr().Is6() {
			via = gw6
		}
		if via.IsValid() {
			fmt.Fprintf(&b, "    ip %sroute replace %s via %s dev $dev\n", family(r.Addr()), r, via)
		}
	}
	return b.String()
}

// routes4 says whether rs holds an IPv4 network.
func routes4(rs []netip.Prefix) bool {
	for _, r := range rs {
		if r.Addr().Is4() {
			return true
		}
	}
	return false
}

// MaxSLAACPerKey bounds the SLAAC and privacy addresses one key holds over
// all its ethernet tunnels: a segment's own bound (segment.MaxSLAAC, what
// Linux keeps on one interface), so that a key cannot take more of the
// prefix by opening more tunnels.
const MaxSLAACPerKey = segment.MaxSLAAC

// keyClaims is a segment's Claimer: the key's SLAAC addresses, held in the
// gateway so that no two keys share one and no key holds more than
// MaxSLAACPerKey, and given back when the tunnel closes. Claim runs on the
// segment's Write goroutine and release on Close's, which may overlap: a
// mutex guards held, and once released no Claim is granted, so none is
// left behind in the gateway.
type keyClaims struct {
	gw  *Gateway
	key string

	mu       sync.Mutex
	held     []netip.Addr
	released bool
}

func (k *keyClaims) Claim(a netip.Addr) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.released || !k.gw.claimSLAAC(k.key, a) {
		return false
	}
	k.held = append(k.held, a)
	return true
}

func (k *keyClaims) release() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.released = true
	k.gw.releaseSLAAC(k.held)
	k.held = nil
}

// claimSLAAC gives key the address a, unless another key holds it (as its
// stable address or a SLAAC one) or key holds MaxSLAACPerKey already.
func (g *Gateway) claimSLAAC(key string, a netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if o := g.owners[a]; o != nil && o.key != key {
		return false
	}
	if o := g.slaac[a]; o != nil {
		if o.key != key {
			return false
		}
		o.refs++
		return true
	}
	if g.slaacPerKey[key] >= MaxSLAACPerKey {
		return false
	}
	g.slaac[a] = &owner{key: key, refs: 1}
	g.slaacPerKey[key]++
	return true
}

func (g *Gateway) releaseSLAAC(as []netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range as {
		o := g.slaac[a]
		if o == nil {
			continue
		}
		if o.refs--; o.refs <= 0 {
			delete(g.slaac, a)
			if g.slaacPerKey[o.key]--; g.slaacPerKey[o.key] <= 0 {
				delete(g.slaacPerKey, o.key)
			}
		}
	}
}

package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/dnsproxy"
	"github.com/sshvpn/sshvpn/stack/egress"
	"github.com/sshvpn/sshvpn/stack/segment"
)

// The default virtual subnets. 100.77.0.0/16 lies in the shared address
// space of RFC 6598 (100.64.0.0/10, carrier-grade NAT), which home and
// office LANs do not use and which no host reaches through its own LAN;
// it avoids ChromeOS's 100.115.92.0/23 too. The IPv6 one is a ULA
// (RFC 4193) whose global ID spells "shvp" in ASCII.
var (
	DefaultSubnet4 = netip.MustParsePrefix("100.77.0.0/16")
	DefaultSubnet6 = netip.MustParsePrefix("fd73:7368:7670::/64")
)

// The tunnel MTU when Config.MTU is zero. The stack's cost is per packet,
// so its tunnels take the largest packets their peers carry: 16380 from a
// stock OpenSSH peer (it reads a tunnel packet into 16 KiB), 64 KiB from an
// sshvpn client on the framed channel. A stock client that keeps its tun's
// 1500 still works: the stack's TCP honours each client's MSS.
const (
	DefaultMTU       = 16380
	DefaultFramedMTU = 65535
)

// Config is the rootless gateway's configuration. Every field may be zero.
type Config struct {
	// Subnets are the virtual subnets, at most one per family
	// (DefaultSubnet4 and DefaultSubnet6 when empty). Each client gets a
	// stable address in each.
	Subnets []netip.Prefix
	// Gateways are the gateway's own virtual addresses, one per subnet;
	// for a subnet without one, its first address (100.77.0.1).
	Gateways []netip.Addr
	// DNSProxy, when set, answers DNS on port 53 of DNSAddrs in every
	// client's stack (DNSAddrs empty: the gateway addresses). Each address
	// lies in a subnet.
	DNSProxy *dnsproxy.Proxy
	DNSAddrs []netip.Addr
	// DNS are the name servers sshvpn clients are told; DNSAddrs when
	// empty and DNSProxy is set.
	DNS []netip.Addr
	// Routes are the networks sshvpn clients route through the tunnel
	// and stock clients are shown commands for.
	Routes []netip.Prefix
	// Domains are the DNS domains sshvpn clients send to DNS (all names
	// when they route everything through the tunnel).
	Domains []string
	// MTU is a tunnel's MTU (DefaultMTU when 0); FramedMTU that of tunnels
	// whose client is sshvpn on the framed channel, which carries packets
	// up to 64 KiB: when 0, DefaultFramedMTU if MTU is 0 too, else MTU.
	// Such a client's TCP takes the MSS the stack offers.
	MTU, FramedMTU int
	// QueueLen is each client's outbound queue (DefaultQueueLen).
	QueueLen int
	// Rules are --allow and --deny; HostAddrs the host's own addresses as
	// they change, denied like loopback (egress.Config).
	Rules     []egress.Rule
	HostAddrs *egress.HostSet
	// PolicyFor, when set, gives one tunnel its policy, from the gateway's
	// (base) and the request (per-key rules: egress.Policy.ForKey).
	// Without it, a key's KeyRules are parsed as egress rules (ForKey).
	PolicyFor func(req relay.TunnelRequest, base *egress.Policy) (*egress.Policy, error)
	Limits    Limits
	// HostSockets bounds the host sockets the flows of all clients hold
	// together, one key at most a quarter of them: 0 takes the process's
	// fd limit less a reserve for logins and DNS; negative, no bound.
	HostSockets int64
	Dial        DialFunc // net.Dialer.DialContext when nil
	// Resolver looks up the names of direct-tcpip targets (ssh -L, -D):
	// the resolvers the gateway's DNS forwards to. net.DefaultResolver
	// when nil.
	Resolver *net.Resolver
	Logger   *slog.Logger
}

// Gateway is the rootless backend: a relay.Opener that gives each
// tunnel, point-to-point or ethernet, a gVisor stack of its own (65 KiB and two
// goroutines when idle), whose forwarders re-originate the client's flows
// from the gateway process's ordinary sockets.
type Gateway struct {
	cfg      Config
	subnets  []netip.Prefix
	gateways []netip.Addr
	dnsAddrs []netip.Addr
	local    []netip.Prefix                // gateway and DNS addresses, as each stack owns them
	policy   atomic.Pointer[egress.Policy] // SetRules replaces it
	advert   atomic.Pointer[advertised]    // SetDNS replaces it
	rules    atomic.Pointer[[]egress.Rule] // the policy's, for LogValue
	ping     *pingSockets
	sockets  *hostSockets

	mu     sync.Mutex
	owners map[netip.Addr]*owner // client addresses in use
	// slaac are the addresses ethernet clients took by SLAAC, and how
	// many each key holds (MaxSLAACPerKey).
	slaac       map[netip.Addr]*owner
	slaacPerKey map[string]int

	// Tests only: clientConfig's fields of the same names.
	pingTarget  func(netip.Addr) netip.Addr
	listenPing  func(v6 bool) (pingConn, error)
	pingTimeout time.Duration
}

type owner struct {
	key  string
	refs int
}

var _ relay.Opener = (*Gateway)(nil)

// New checks cfg and builds a Gateway. It probes for unprivileged ping
// sockets once, and warns when there are none.
func New(cfg Config) (*Gateway, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
		if cfg.FramedMTU == 0 {
			cfg.FramedMTU = DefaultFramedMTU
		}
	}
	if cfg.FramedMTU == 0 {
		cfg.FramedMTU = cfg.MTU
	}
	for _, m := range []int{cfg.MTU, cfg.FramedMTU} {
		if m < 1280 || m > 65535 {
			return nil, fmt.Errorf("stack: MTU %d: want 1280 to 65535 (IPv6 needs 1280)", m)
		}
	}
	g := &Gateway{cfg: cfg, owners: map[netip.Addr]*owner{}, slaac: map[netip.Addr]*owner{}, slaacPerKey: map[string]int{},
		sockets: newHostSockets(cfg.HostSockets)}
	if g.sockets.max > 0 {
		cfg.Logger.Debug("host sockets for the clients' flows", "all", g.sockets.max, "per_key", g.sockets.perKey)
	}
	if err := g.addressing(); err != nil {
		return nil, err
	}
	g.policy.Store(g.newPolicy(cfg.Rules))
	g.advert.Store(&advertised{DNS: g.cfg.DNS, Domains: g.cfg.Domains})
	if g.cfg.PolicyFor == nil {
		g.cfg.PolicyFor = keyPolicy
	}
	g.ping = newPingSockets(PingAvailable, cfg.Logger)
	return g, nil
}

// addressing checks the subnets and picks the gateway's addresses.
func (g *Gateway) addressing() error {
	subnets := g.cfg.Subnets
	if len(subnets) == 0 {
		subnets = []netip.Prefix{DefaultSubnet4, DefaultSubnet6}
	}
	var have4, have6 bool
	for _, s := range subnets {
		s = s.Masked()
		seen := &have4
		if s.Addr().Is6() {
			seen = &have6
		}
		if *seen {
			return fmt.Errorf("stack: subnet %s: one subnet per address family", s)
		}
		*seen = true
		if hostBits(s) < 2 {
			return fmt.Errorf("stack: subnet %s is too small for a gateway and its clients", s)
		}
		gw := relay.AddOffset(s.Addr(), 1)
		for _, a := range g.cfg.Gateways {
			if s.Contains(a) {
				gw = a
			}
		}
		g.subnets = append(g.subnets, s)
		g.gateways = append(g.gateways, gw)
		if s.Addr().Is6() && s.Bits() != 64 {
			g.cfg.Logger.Warn("the IPv6 subnet is not a /64: ethernet tunnels' router advertisements carry no prefix, so their clients form no SLAAC address",
				"subnet", s)
		}
	}
	for _, a := range g.cfg.Gateways {
		if !relay.ContainsAny(g.subnets, a) {
			return fmt.Errorf("stack: gateway address %s is in no subnet (%v)", a, g.subnets)
		}
	}
	for i, a := range g.gateways {
		g.local = append(g.local, netip.PrefixFrom(a, g.subnets[i].Bits()))
	}
	if g.cfg.DNSProxy == nil {
		return nil
	}
	g.dnsAddrs = g.cfg.DNSAddrs
	if len(g.dnsAddrs) == 0 {
		g.dnsAddrs = g.gateways
	}
	for _, a := range g.dnsAddrs {
		i := slices.IndexFunc(g.subnets, func(s netip.Prefix) bool { return s.Contains(a) })
		if i < 0 {
			return fmt.Errorf("stack: DNS address %s is in no subnet (%v)", a, g.subnets)
		}
		if s := g.subnets[i]; a == s.Addr() || (a.Is4() && a == relay.AddOffset(s.Addr(), (uint64(1)<<hostBits(s))-1)) {
			return fmt.Errorf("stack: DNS address %s is the subnet's network or broadcast address", a)
		}
		if !slices.Contains(g.gateways, a) {
			g.local = append(g.local, netip.PrefixFrom(a, g.subnets[i].Bits()))
		}
	}
	if len(g.cfg.DNS) == 0 {
		g.cfg.DNS = g.dnsAddrs
	}
	return nil
}

// localAddrs are the addresses every client's stack owns.
func (g *Gateway) localAddrs() []netip.Addr {
	as := make([]netip.Addr, len(g.local))
	for i, p := range g.local {
		as[i] = p.Addr()
	}
	return as
}

// keyPolicy is the default Config.PolicyFor: the key's own rules first.
func keyPolicy(req relay.TunnelRequest, base *egress.Policy) (*egress.Policy, error) {
	if len(req.KeyRules) == 0 {
		return base, nil
	}
	rules := make([]egress.Rule, 0, len(req.KeyRules))
	for _, kr := range req.KeyRules {
		r, err := egress.ParseRule(kr.Rule, kr.Allow)
		if err != nil {
			name := "SSHVPN_DENY"
			if kr.Allow {
				name = "SSHVPN_ALLOW"
			}
			return nil, fmt.Errorf("%s: %s rule %q: %w", req.KeySource, name, kr.Rule, err)
		}
		rules = append(rules, r)
	}
	return base.ForKey(req.KeySource, rules), nil
}

// LogValue implements slog.LogValuer: the addressing and the policy a
// gateway runs with, for its start line.
func (g *Gateway) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("subnets", joinStrings(g.subnets)),
		slog.String("gateway", joinStrings(g.gateways)),
		slog.String("mtu", fmt.Sprint(g.cfg.MTU)),
	}
	if len(g.dnsAddrs) > 0 {
		attrs = append(attrs, slog.String("dns", joinStrings(g.dnsAddrs)))
	}
	if rules := *g.rules.Load(); len(rules) > 0 {
		rs := make([]string, len(rules))
		for i, r := range rules {
			rs[i] = "--deny " + r.String()
			if r.Allow {
				rs[i] = "--allow " + r.String()
			}
		}
		attrs = append(attrs, slog.String("rules", strings.Join(rs, " ")))
	}
	return slog.GroupValue(attrs...)
}

func joinStrings[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// Policy is the gateway's egress policy, before per-key rules.
func (g *Gateway) Policy() *egress.Policy { return g.policy.Load() }

// Open implements relay.Opener. An ethernet tunnel gets the same stack
// as a point-to-point one, behind an Ethernet segment (openSegment).
func (g *Gateway) Open(ctx context.Context, req relay.TunnelRequest) (relay.Tunnel, error) {
	if req.Mode != relay.PointToPoint && req.Mode != relay.Ethernet {
		return nil, fmt.Errorf("stack: %s tunnel: %w", req.Mode, errors.ErrUnsupported)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("stack: open tunnel: %w", err)
	}
	policy, err := g.livePolicy(req)
	if err != nil {
		return nil, err
	}
	addrs, err := g.claim(req.Key)
	if err != nil {
		return nil, err
	}
	mtu, local := g.cfg.MTU, g.local
	if req.Framed {
		mtu = g.cfg.FramedMTU
	}
	if req.Mode == relay.Ethernet {
		// The stack answers the client's traffic to the gateway's
		// link-local address too: its router, as the RAs name it.
		mtu = g.ethernetMTU(req)
		local = append(slices.Clip(local), netip.PrefixFrom(segment.DefaultLinkLocal, 64))
	}
	c, err := newClient(clientConfig{
		MTU: mtu, QueueLen: g.cfg.QueueLen, Policy: policy, Dial: g.cfg.Dial,
		Limits: g.cfg.Limits, Local: local, Ping: g.ping,
		pingTarget: g.pingTarget, listenPing: g.listenPing, pingTimeout: g.pingTimeout,
		DNS: g.cfg.DNSProxy, DNSAddrs: g.dnsAddrs, Key: req.Key, Sockets: g.sockets,
		Logger: g.cfg.Logger.With("key", req.Key, "remote", req.Remote),
	})
	if err != nil {
		g.release(addrs)
		return nil, err
	}
	t := &tunnel{client: c, gw: g, addrs: addrs, adv: g.adv()}
	if req.Mode == relay.Ethernet {
		return g.openSegment(t, req)
	}
	return t, nil
}

// claim gives key its stable address in each subnet: a hash of the key and
// the subnet in the subnet's upper half, as the kernel backend does, so
// clients who number themselves (.2, by habit) rarely meet it. The same
// key connected twice shares it: each tunnel has a stack of its own, so
// nothing conflicts. Another key's address is passed over.
func (g *Gateway) claim(key string) ([]netip.Prefix, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var got []netip.Prefix
	for i, s := range g.subnets {
		a, ok := relay.PickAddress(key, s, g.gateways[i], func(a netip.Addr) bool {
			o, sl := g.owners[a], g.slaac[a]
			return (o == nil || (key != "" && o.key == key)) && (sl == nil || sl.key == key)
		})
		if !ok {
			g.releaseLocked(got)
			return nil, fmt.Errorf("stack: subnet %s is full: no address for key %s", s, key)
		}
		o := g.owners[a]
		if o == nil {
			o = &owner{key: key}
			g.owners[a] = o
		}
		o.refs++
		got = append(got, netip.PrefixFrom(a, s.Bits()))
	}
	return got, nil
}

func (g *Gateway) release(addrs []netip.Prefix) {
	g.mu.Lock()
	g.releaseLocked(addrs)
	g.mu.Unlock()
}

func (g *Gateway) releaseLocked(addrs []netip.Prefix) {
	for _, p := range addrs {
		if o := g.owners[p.Addr()]; o != nil {
			if o.refs--; o.refs <= 0 {
				delete(g.owners, p.Addr())
			}
		}
	}
}

func hostBits(p netip.Prefix) int { return p.Addr().BitLen() - p.Bits() }

// tunnel is one client's stack as a relay.Tunnel.
type tunnel struct {
	*client
	gw    *Gateway
	addrs []netip.Prefix
	// adv is the DNS the client was told at open: a reload changes what
	// tunnels opened later are told, and this one's status says what it has.
	adv       *advertised
	closeOnce sync.Once
}

// Close implements relay.Device: it tears the client's stack down, then
// gives its addresses back.
func (t *tunnel) Close() error {
	err := t.client.Close()
	t.closeOnce.Do(func() { t.gw.release(t.addrs) })
	return err
}

// SetPathRTT implements relay.PathTuner: the client's outbound queue sizes
// its CoDel interval by the path's round trip (see paramsFor).
func (t *tunnel) SetPathRTT(rtt time.Duration) { t.ep.pathRTT.Store(int64(rtt)) }

// Config implements relay.Tunnel.
func (t *tunnel) Config() relay.TunnelConfig {
	adv := t.adv
	return relay.TunnelConfig{
		Device:    "netstack",
		MTU:       t.MTU(),
		Addresses: append([]netip.Prefix(nil), t.addrs...),
		Gateways:  append([]netip.Addr(nil), t.gw.gateways...),
		Routes:    append([]netip.Prefix(nil), t.gw.cfg.Routes...),
		DNS:       append([]netip.Addr(nil), adv.DNS...),
		Domains:   append([]string(nil), adv.Domains...),
	}
}

// Status implements relay.Tunnel: the commands a stock ssh -w client
// pastes, as root, into one shell: the first sets $dev to the device ssh
// opened, which the gateway cannot know.
func (t *tunnel) Status() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sshvpn: rootless gateway (userspace stack), point-to-point, MTU %d.\n", t.MTU())
	for i, a := range t.addrs {
		fmt.Fprintf(&b, "  your address %s, the gateway's %s\n", a, t.gw.gateways[i])
	}
	for _, d := range t.adv.DNS {
		fmt.Fprintf(&b, "  name server %s\n", d)
	}
	b.WriteString("  on your side, as root, in one shell:\n")
	fmt.Fprintf(&b, "    %s\n", relay.ClientDeviceLine(relay.PointToPoint))
	fmt.Fprintf(&b, "    ip link set $dev mtu %d up\n", t.MTU())
	for _, a := range t.addrs {
		fmt.Fprintf(&b, "    ip %saddr add %s dev $dev\n", family(a.Addr()), a)
	}
	for _, r := range t.gw.cfg.Routes {
		fmt.Fprintf(&b, "    ip %sroute add %s dev $dev\n", family(r.Addr()), r)
	}
	if len(t.gw.cfg.Routes) == 0 {
		b.WriteString("    ip route add <network> dev $dev   # each network to reach through the gateway\n")
	}
	return b.String()
}

func family(a netip.Addr) string {
	if a.Is6() {
		return "-6 "
	}
	return ""
}

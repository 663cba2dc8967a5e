package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack"
	"github.com/sshvpn/sshvpn/stack/dnsproxy"
	"github.com/sshvpn/sshvpn/stack/egress"
	"github.com/sshvpn/sshvpn/stack/hostaddr"
)

// rootlessConfig is what only the netstack backend reads.
type rootlessConfig struct {
	subnets    []netip.Prefix
	dnsAddrs   []netip.Addr
	rules      egress.Rules
	resolvConf string
	limits     stack.Limits
}

func (r *rootlessConfig) flags(fs *flag.FlagSet) {
	fs.Var(prefixList(&r.subnets), "subnet", fmt.Sprintf("netstack: the tunnels' virtual `network`, one IPv4 and one IPv6 (default %s and %s); the gateway is its first address",
		stack.DefaultSubnet4, stack.DefaultSubnet6))
	fs.Var(addrList(&r.dnsAddrs), "dns-address", "netstack: `address` in a --subnet where the gateway answers DNS, forwarding to the host's resolvers (repeatable; default the gateway's addresses)")
	fs.Var(r.rules.Flag(true), "allow", "netstack: let clients reach `target` CIDR[:ports][/tcp|udp|icmp], even one denied by default (repeatable; first match of --allow and --deny wins)")
	fs.Var(r.rules.Flag(false), "deny", "netstack: keep clients from `target` CIDR[:ports][/tcp|udp|icmp] (repeatable)")
	fs.StringVar(&r.resolvConf, "resolv-conf", "/etc/resolv.conf", "netstack: resolv.conf `file` naming the resolvers DNS queries are forwarded to")
	def := stack.DefaultLimits
	fs.IntVar(&r.limits.TCPInFlight, "max-tcp-in-flight", def.TCPInFlight, "netstack: TCP connections one client may have being dialled or handshaking at once")
	fs.IntVar(&r.limits.TCPEstablished, "max-tcp-connections", def.TCPEstablished, "netstack: TCP connections one client may have open at once")
	fs.IntVar(&r.limits.UDPFlows, "max-udp-flows", def.UDPFlows, "netstack: UDP flows (each a host socket) one client may have at once")
	fs.IntVar(&r.limits.ICMPInFlight, "max-icmp-in-flight", def.ICMPInFlight, "netstack: echo requests (pings) one client may have waiting for their replies at once; more are dropped")
	r.limits.Memory = def.Memory
	fs.Var(sizeFlag{&r.limits.Memory}, "max-client-memory", "netstack: `bytes` one client's flows may hold in buffers (suffix K, M or G)")
}

// sizeFlag is a byte count with an optional K, M or G (powers of 1024).
type sizeFlag struct{ n *int64 }

// String gives the size in the largest unit that holds it whole, as it
// would be written: 256M.
func (f sizeFlag) String() string {
	if f.n == nil || *f.n == 0 {
		return ""
	}
	n := *f.n
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (f sizeFlag) Set(s string) error {
	mult := int64(1)
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult, t = 1<<10, t[:len(t)-1]
		case 'M':
			mult, t = 1<<20, t[:len(t)-1]
		case 'G':
			mult, t = 1<<30, t[:len(t)-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 1<<20/mult || v > (1<<40)/mult {
		return fmt.Errorf("%q is not a size from 1M to 1T, like 256M", s)
	}
	*f.n = v * mult
	return nil
}

// kernelOnly and netstackOnly are the flags one backend reads and the
// other would ignore; naming one with the wrong backend is an error, so
// that nobody believes --nat changed a rootless gateway.
var (
	kernelOnly   = []string{"tun-address", "nat", "max-claims-per-key", "bridge", "create-bridge"}
	netstackOnly = []string{"subnet", "dns-address", "allow", "deny", "resolv-conf", "max-tcp-in-flight", "max-tcp-connections", "max-udp-flows", "max-icmp-in-flight", "max-client-memory"}
)

// checkBackendFlags refuses flags of the other backend and fills in the
// defaults that depend on the backend.
func checkBackendFlags(c *serveConfig, set map[string]bool) error {
	wrong, other := netstackOnly, "netstack"
	if c.backend == "netstack" {
		wrong, other = kernelOnly, "kernel"
	}
	for _, name := range wrong {
		if set[name] {
			return fmt.Errorf("--%s is for --backend %s; this gateway runs --backend %s", name, other, c.backend)
		}
	}
	if c.backend != "netstack" {
		return nil
	}
	for _, s := range c.rootless.subnets {
		if s.Addr().Is4() && s.Bits() > 30 || s.Addr().Is6() && s.Bits() > 126 {
			return fmt.Errorf("--subnet %s: too small for the gateway and its clients", s)
		}
	}
	return nil
}

// netstackBackend is the rootless gateway: a DNS forwarder to the host's
// resolvers and the stacks, denied the host's own addresses as they
// change. It needs no privilege; stop closes the DNS forwarder and stops
// following the addresses.
func netstackBackend(c *serveConfig, log *slog.Logger) (*stack.Gateway, func(), error) {
	var proxy *dnsproxy.Proxy
	var resolver *net.Resolver
	ups, err := dnsproxy.Upstreams(c.rootless.resolvConf)
	if len(ups) > 0 {
		// ssh -L and -D name their targets; look them up where the
		// clients' DNS goes, not wherever the host's resolv.conf points.
		first := ups[0].String()
		resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, first)
		}}
	}
	if len(ups) > 0 {
		if err != nil {
			log.Warn("resolv.conf: some lines skipped", "err", err)
		}
		proxy, err = dnsproxy.New(dnsproxy.Config{Upstreams: ups, Log: log})
	}
	if err != nil {
		log.Warn("no DNS service for the clients: the host's resolvers are unknown", "err", err)
	}
	hosts, unfollow := followHostAddrs(log)
	g, err := stack.New(stack.Config{
		Subnets: c.rootless.subnets, DNSProxy: proxy, DNSAddrs: c.rootless.dnsAddrs, DNS: c.dns,
		Routes: c.routes, Domains: c.dnsDomains, MTU: c.mtu, Rules: c.rootless.rules, HostAddrs: hosts,
		Limits: c.rootless.limits, Resolver: resolver, Logger: log,
	})
	stop := func() {
		unfollow()
		if proxy != nil {
			proxy.Close()
		}
	}
	if err == nil && c.permit.Allows(relay.Ethernet) {
		if err = g.CheckEthernet(); err != nil {
			err = fmt.Errorf("%w: fewer --route, --dns or --dns-domain, or --permit-tunnel point-to-point", err)
		}
	}
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("netstack backend: %w", err)
	}
	if off := familyOff(c.rootless.subnets); off != "" {
		log.Warn(off)
	}
	return g, stop, nil
}

// familyOff says which family the tunnels lose when --subnet names one
// family only, and how to keep it; "" when both are there (or neither is
// given, which means the defaults of both).
func familyOff(subnets []netip.Prefix) string {
	var have4, have6 bool
	for _, s := range subnets {
		have4, have6 = have4 || s.Addr().Is4(), have6 || s.Addr().Is6()
	}
	switch {
	case have4 && !have6:
		return fmt.Sprintf("--subnet names an IPv4 network only: the tunnels carry no IPv6; add --subnet %s (or another IPv6 /64) to turn it on", stack.DefaultSubnet6)
	case have6 && !have4:
		return fmt.Sprintf("--subnet names an IPv6 network only: the tunnels carry no IPv4; add --subnet %s (or another IPv4 network) to turn it on", stack.DefaultSubnet4)
	}
	return ""
}

// followHostAddrs gives the host's own addresses, which the egress policy
// denies as it denies loopback, kept current as the host gains and loses
// them; stop stops following them.
func followHostAddrs(log *slog.Logger) (hosts *egress.HostSet, stop func()) {
	hosts = egress.NewHostSet()
	w, err := hostaddr.Watch(hostaddr.Config{Update: hosts.Set, Logger: log})
	if err != nil {
		log.Warn("cannot list the host's addresses: only loopback and link-local are denied by default", "err", err)
		return hosts, func() {}
	}
	return hosts, func() { w.Close() }
}

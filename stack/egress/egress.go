package egress

import (
	"net/netip"
)

// Config is what a Policy is built from. The gateway fills it in; every
// field may be empty.
type Config struct {
	// Rules are the operator's --allow and --deny rules in command-line
	// order (Rules.Flag keeps one order across both flags).
	Rules []Rule
	// Subnets are the tunnels' virtual subnets. Clients may not reach
	// addresses in them (one another) unless a rule allows it.
	Subnets []netip.Prefix
	// GatewayAddrs are the gateway's own virtual addresses (DNS) in
	// Subnets, which clients may reach. The stack serves them itself and
	// never dials them on the host's network.
	GatewayAddrs []netip.Addr
	// HostAddrs are the gateway host's own addresses (its interfaces'), as
	// they change. A connection from the host to its own public or LAN
	// address reaches the same listeners as loopback, including services
	// bound to 0.0.0.0 that a firewall hides from the outside, so they are
	// denied like loopback. nil denies none.
	HostAddrs *HostSet
}

// Policy decides whether a client may open a flow to a destination. Its
// rules are immutable, and the host's addresses are read afresh at each
// decision, so one Policy serves every flow of every client at once.
type Policy struct {
	key  []entry  // per-key rules, checked first
	base []entry  // the operator's rules, the gateway's addresses, the built-ins
	host *HostSet // then the host's own addresses
	tail []entry  // then the tunnels' subnets
}

// entry is a rule with the text Decide returns for it, built once so that
// Decide does not allocate.
type entry struct {
	rule Rule
	why  string
	// nat64 is set on the built-in host denies: they also match a
	// destination in 64:ff9b::/96 whose embedded IPv4 address they cover,
	// and nat64 is the why for that case.
	nat64 string
}

// builtin is one of the built-in denies, in the order they are checked.
type builtin struct {
	prefix string
	what   string
}

// builtins are denied after the operator's rules. Each names why, for logs.
var builtins = []builtin{
	{"0.0.0.0/8", "this network: Linux delivers 0.0.0.0 to loopback"},
	{"::/128", "unspecified: Linux delivers :: to loopback"},
	{"127.0.0.0/8", "loopback"},
	{"::1/128", "loopback"},
	{"169.254.0.0/16", "link-local, cloud metadata 169.254.169.254"},
	{"fe80::/10", "link-local"},
	{"fd00:ec2::254/128", "cloud metadata, AWS IPv6"},
	{"100.100.100.200/32", "cloud metadata, Alibaba Cloud"},
	{"224.0.0.0/4", "multicast: it would reach the host's LAN"},
	{"255.255.255.255/32", "broadcast: it would reach the host's LAN"},
	{"ff00::/8", "multicast: it would reach the host's LAN"},
}

// nat64Prefix is the well-known NAT64 prefix (RFC 6052): a NAT64 on the
// host's path turns 64:ff9b::7f00:1 into 127.0.0.1.
var nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")

const defaultWhy = "default allow"

// New builds the policy of cfg: the operator's rules in order, then the
// built-in denies (package documentation), then allow.
func New(cfg Config) *Policy {
	var base []entry
	for _, r := range cfg.Rules {
		base = append(base, entry{rule: r, why: flagName(r.Allow) + " " + r.String()})
	}
	for _, a := range cfg.GatewayAddrs {
		p := hostPrefix(a)
		base = append(base, entry{
			rule: Rule{Prefix: p, Allow: true},
			why:  "built-in allow " + p.Addr().String() + " (the gateway's own address)",
		})
	}
	for _, b := range builtins {
		base = append(base, hostDeny(netip.MustParsePrefix(b.prefix), b.what))
	}
	var tail []entry
	for _, s := range cfg.Subnets {
		s = unmapPrefix(s)
		tail = append(tail, entry{
			rule: Rule{Prefix: s},
			why:  "built-in deny " + s.String() + " (clients may not reach one another)",
		})
	}
	return &Policy{base: base, host: cfg.HostAddrs, tail: tail}
}

func flagName(allow bool) string {
	if allow {
		return "--allow"
	}
	return "--deny"
}

// hostPrefix is a's single-address prefix, judged as Decide judges a
// destination: unmapped and unzoned.
func hostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen())
}

// unmapPrefix turns an IPv4-mapped prefix into its IPv4 form, since Decide
// judges mapped destinations as IPv4.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

func hostDeny(p netip.Prefix, what string) entry {
	why := "built-in deny " + p.String() + " (" + what + ")"
	e := entry{rule: Rule{Prefix: p}, why: why}
	if p.Addr().Is4() {
		e.nat64 = why + " via NAT64 " + nat64Prefix.String()
	}
	return e
}

// ForKey returns p with one key's rules (SSHVPN_ALLOW and SSHVPN_DENY, in
// the order of its authorized_keys line) checked before all others. source
// names the line, as "file:line", for the why Decide returns. Calling it on
// a Policy from ForKey replaces the key's rules.
func (p *Policy) ForKey(source string, rules []Rule) *Policy {
	key := make([]entry, 0, len(rules))
	for _, r := range rules {
		name := "SSHVPN_DENY="
		if r.Allow {
			name = "SSHVPN_ALLOW="
		}
		why := name + r.String()
		if source != "" {
			why = source + ": " + why
		}
		key = append(key, entry{rule: r, why: why})
	}
	return &Policy{key: key, base: p.base, host: p.host, tail: p.tail}
}

// Decide says whether a flow to dst over proto may be opened, and why: the
// rule that matched, for logs. proto is ProtoTCP, ProtoUDP or ProtoICMP
// (the port of an ICMP flow is ignored). Decide does not allocate; it runs
// for every new flow. A nil Policy denies everything.
func (p *Policy) Decide(dst netip.AddrPort, proto Proto) (allow bool, why string) {
	if p == nil {
		return false, "no egress policy"
	}
	// A mapped destination is dialled as IPv4, and a zoned one would slip
	// past every prefix (netip.Prefix.Contains is false for zones).
	addr := dst.Addr().Unmap().WithZone("")
	if !addr.IsValid() {
		return false, "invalid destination"
	}
	embedded, viaNAT64 := nat64Embedded(addr)
	for _, list := range [...][]entry{p.key, p.base} {
		if e, why := match(list, addr, embedded, viaNAT64, dst.Port(), proto); e != nil {
			return e.rule.Allow, why
		}
	}
	if why, ok := p.host.deny(addr, embedded, viaNAT64); ok {
		return false, why
	}
	if e, why := match(p.tail, addr, embedded, viaNAT64, dst.Port(), proto); e != nil {
		return e.rule.Allow, why
	}
	return true, defaultWhy
}

// match finds the first entry of list that covers the flow, and its why.
func match(list []entry, addr, embedded netip.Addr, viaNAT64 bool, port uint16, proto Proto) (*entry, string) {
	for i := range list {
		e := &list[i]
		if e.rule.matches(addr, port, proto) {
			return e, e.why
		}
		if viaNAT64 && e.nat64 != "" && e.rule.matches(embedded, port, proto) {
			return e, e.nat64
		}
	}
	return nil, ""
}

// nat64Embedded gives the IPv4 address inside a 64:ff9b::/96 address.
func nat64Embedded(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || !nat64Prefix.Contains(a) {
		return netip.Addr{}, false
	}
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

// Explain lists the rules in the order Decide checks them, one why each,
// ending with the default; for logs at start and for --help texts. The
// host's addresses are those of the moment.
func (p *Policy) Explain() []string {
	var out []string
	for _, list := range [...][]entry{p.key, p.base} {
		for _, e := range list {
			out = append(out, e.why)
		}
	}
	out = append(out, p.host.whys()...)
	for _, e := range p.tail {
		out = append(out, e.why)
	}
	return append(out, defaultWhy)
}

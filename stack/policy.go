package stack

import (
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/egress"
)

// livePolicy is one client's egress policy: its key's rules over the
// gateway's, rebuilt when the gateway's change (SetRules). So a deny
// added by a reload refuses the client's next flow, on a tunnel opened
// before it; flows already open are not cut.
type livePolicy struct {
	gw  *Gateway // nil: fixed
	req relay.TunnelRequest
	cur atomic.Pointer[builtPolicy]
}

// builtPolicy is a client's policy and the gateway's it was built on.
type builtPolicy struct{ base, p *egress.Policy }

func fixedPolicy(p *egress.Policy) *livePolicy {
	l := &livePolicy{}
	l.cur.Store(&builtPolicy{p: p})
	return l
}

// livePolicy builds req's policy on the gateway's.
func (g *Gateway) livePolicy(req relay.TunnelRequest) (*livePolicy, error) {
	base := g.Policy()
	p, err := g.cfg.PolicyFor(req, base)
	if err != nil {
		return nil, err
	}
	l := &livePolicy{gw: g, req: req}
	l.cur.Store(&builtPolicy{base, p})
	return l, nil
}

// get is the policy in force: a flow's first packet pays a pointer
// compare, and once per reload a rebuild.
func (l *livePolicy) get() *egress.Policy {
	cur := l.cur.Load()
	if l.gw == nil {
		return cur.p
	}
	base := l.gw.Policy()
	if base == cur.base {
		return cur.p
	}
	p, err := l.gw.cfg.PolicyFor(l.req, base)
	if err != nil {
		// The key's rules parsed when the tunnel opened and the
		// gateway's do not enter this; keep what was in force, for this
		// base, so that the failure is logged once, not on every flow.
		l.gw.cfg.Logger.Error("egress policy not rebuilt; the one before stays", "key", l.req.Key, "err", err)
		l.cur.CompareAndSwap(cur, &builtPolicy{base, cur.p})
		return cur.p
	}
	l.cur.CompareAndSwap(cur, &builtPolicy{base, p})
	return p
}

func (g *Gateway) newPolicy(rules []egress.Rule) *egress.Policy {
	g.rules.Store(&rules)
	return egress.New(egress.Config{
		Rules: rules, Subnets: g.subnets, GatewayAddrs: g.localAddrs(), HostAddrs: g.cfg.HostAddrs,
	})
}

// SetRules replaces the gateway's --allow and --deny rules (sshvpn serve
// calls it on SIGHUP). Every client's next flow and direct-tcpip channel is
// judged by them, on tunnels open now too; flows already established go
// on, as a stateful firewall keeps established connections.
func (g *Gateway) SetRules(rules []egress.Rule) {
	g.policy.Store(g.newPolicy(slices.Clone(rules)))
}

// advertised is what the gateway tells clients of DNS.
type advertised struct {
	DNS     []netip.Addr
	Domains []string
}

func (g *Gateway) adv() *advertised { return g.advert.Load() }

// SetDNS replaces the name servers and domains sshvpn clients are told
// (Config.DNS, Config.Domains; an empty dns means the gateway's DNS
// addresses): tunnels opened from now on get them, those open keep what
// they were told. With ethernet, they must fit the DHCP answers that
// ethernet tunnels get (CheckEthernet); if not, nothing changes.
func (g *Gateway) SetDNS(dns []netip.Addr, domains []string, ethernet bool) error {
	a := &advertised{DNS: slices.Clone(dns), Domains: slices.Clone(domains)}
	if len(a.DNS) == 0 {
		a.DNS = g.dnsAddrs
	}
	if ethernet {
		if err := g.checkEthernet(a); err != nil {
			return fmt.Errorf("stack: DNS not changed: %w", err)
		}
	}
	g.advert.Store(a)
	return nil
}

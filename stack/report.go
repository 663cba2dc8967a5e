package stack

import (
	"net/netip"
	"slices"
	"time"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/dnsproxy"
)

var (
	_ relay.Reporter = (*tunnel)(nil)
	_ relay.Reporter = (*l2Tunnel)(nil)
)

// Report implements relay.Reporter: the flows the client's stack holds
// (TCP connections and UDP flows) and the memory they buffer, against
// its Limits.
func (t *tunnel) Report() relay.TunnelReport {
	s, l := &t.stats, t.limits
	flows := relay.Usage{
		Used:    s.TCPEstablished.Load() + s.UDPFlows.Load(),
		Refused: s.TCPLimited.Load() + s.UDPLimited.Load(),
	}
	if l.TCPEstablished > 0 && l.UDPFlows > 0 {
		flows.Limit = int64(l.TCPEstablished + l.UDPFlows)
	}
	mem := relay.Usage{
		Used:    t.mem.charged.Load() + t.mem.held.Load() + t.ep.queued.Load(),
		Limit:   max(l.Memory, 0),
		Refused: s.MemoryLimited.Load(),
	}
	return relay.TunnelReport{Flows: &flows, Memory: &mem}
}

// Report implements relay.Reporter: the stack's, with the address the
// segment's DHCP server leased and the SLAAC addresses the client took.
func (l *l2Tunnel) Report() relay.TunnelReport {
	r := l.tunnel.Report()
	if l.dhcp != nil { // none on an IPv6-only segment
		if a, ok := l.dhcp.Leased(time.Now()); ok {
			r.Leased = []netip.Addr{a}
		}
	}
	l.claims.mu.Lock()
	r.Claimed = slices.Clone(l.claims.held)
	l.claims.mu.Unlock()
	return r
}

// DNSStats are the counters of the resolver the clients' stacks answer
// DNS with; false when the gateway has none.
func (g *Gateway) DNSStats() (dnsproxy.Stats, bool) {
	if g.cfg.DNSProxy == nil {
		return dnsproxy.Stats{}, false
	}
	return g.cfg.DNSProxy.Stats(), true
}

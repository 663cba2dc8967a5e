package kernel

import (
	"net/netip"

	"github.com/sshvpn/sshvpn/relay"
)

var _ relay.Reporter = (*gatewayTunnel)(nil)

// Report implements relay.Reporter: the addresses the client took by
// sending from them, beyond those it was given. A kernel tunnel has no
// per-client flow or memory limits; the host's own are the bound.
func (t *gatewayTunnel) Report() relay.TunnelReport {
	return relay.TunnelReport{Claimed: t.guard.Claimed()}
}

// Claimed are the addresses the tunnel holds by sending from them, not
// those Reserve handed out; an address a newer tunnel took over is not
// this one's any more.
func (g *sourceGuard) Claimed() []netip.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	var as []netip.Addr
	for _, c := range g.mine {
		if !c.reserved && !c.lost.Load() {
			as = append(as, c.addr)
		}
	}
	return as
}

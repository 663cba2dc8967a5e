package stack

import (
	"context"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/sshvpn/sshvpn/stack/dnsproxy"
	"github.com/sshvpn/sshvpn/stack/egress"
)

// serveDNS answers DNS over UDP and TCP on port 53 of each address in
// addrs, which the stack owns, from proxy (a Share of the gateway's, so
// that this client's queries fill only its own slots and its own share of
// the cache). The sockets are the stack's own endpoints, so they take
// precedence over the forwarders: a query to the gateway's DNS address is
// never dialled on the host, even when the policy refuses it (admitDNS).
func (c *client) serveDNS(proxy *dnsproxy.Proxy, addrs []netip.Addr) error {
	ctx := context.Background()
	for _, a := range addrs {
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		fa := tcpip.FullAddress{NIC: nicID, Addr: addrTo(a), Port: 53}
		pc, err := gonet.DialUDP(c.s, &fa, nil, proto)
		if err != nil {
			return fmt.Errorf("stack: dns on udp %s: %w", netip.AddrPortFrom(a, 53), err)
		}
		ln, err := gonet.ListenTCP(c.s, fa, proto)
		if err != nil {
			pc.Close()
			return fmt.Errorf("stack: dns on tcp %s: %w", netip.AddrPortFrom(a, 53), err)
		}
		for _, serve := range []func() error{
			func() error { return proxy.ServePacket(ctx, pc) },
			func() error { return proxy.ServeStream(ctx, ln) },
		} {
			if !c.group.begin() {
				pc.Close()
				ln.Close()
				return nil
			}
			go func() {
				defer c.group.done()
				if err := serve(); err != nil {
					c.log.Warn("dns service stopped", "addr", a, "err", err)
				}
			}()
		}
	}
	return nil
}

// admitDNS judges the client's queries to the gateway's DNS service as any
// other flow of the client is judged: by its egress policy (the key's
// SSHVPN_ALLOW and SSHVPN_DENY, then --allow and --deny, then the
// built-ins, which allow the gateway's own addresses), with the
// destination as the client addressed it: the DNS address, port 53, over
// UDP or TCP. A client refused it gets REFUSED from the query alone and
// none of its queries reaches the cache or the upstream resolvers.
//
// The upstream resolvers' addresses are not judged: the gateway process,
// not the client, asks them, on behalf of every client alike, and they are
// often the host's loopback (a local stub resolver), which the built-ins
// deny to clients. A rule on an upstream's address governs the client's
// own flows to it, not the gateway's DNS service.
//
// REFUSED rather than no answer: it is what a resolver tells a client its
// access rules turn away, and a stub then asks its next server at once
// instead of waiting out its timeouts; the socket stays the stack's, so
// the query cannot fall through to the forwarders, which would take the
// gateway's address for the host's loopback.
func (c *client) admitDNS(local netip.AddrPort, network string) bool {
	proto := egress.ProtoUDP
	if network == "tcp" {
		proto = egress.ProtoTCP
	}
	ok, why := c.policy.get().Decide(local, proto)
	if !ok {
		c.log.Debug("dns refused by egress policy: queries get REFUSED", "dst", local, "proto", network, "rule", why)
	}
	return ok
}

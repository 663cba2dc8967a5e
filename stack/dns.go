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
)

// serveDNS answers DNS over UDP and TCP on port 53 of each address in
// addrs, which the stack owns, from proxy (a Share of the gateway's, so
// that this client's queries fill only its own slots). The sockets are
// the stack's own endpoints, so they take precedence over the forwarders:
// a query to the gateway's DNS address is never dialled on the host.
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

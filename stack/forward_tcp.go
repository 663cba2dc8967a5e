package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/sshvpn/sshvpn/stack/egress"
)

// installTCP makes c's stack terminate every TCP connection the client
// opens and re-originate it from a host socket. The handshake waits for
// the real dial: the client sees SYN-ACK only when the destination
// accepted, and a reset when the policy, a limit or the dial refused.
func (c *client) installTCP() {
	fwd := tcp.NewForwarder(c.s, 0, c.limits.TCPInFlight, c.forwardTCP)
	c.s.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
}

// forwardTCP runs in a goroutine of its own (gVisor starts one per
// request). It calls r.Complete exactly once on every path: never leaks the
// in-flight slot (and gVisor then ignores that client's SYN retransmits for
// good), and twice panics.
func (c *client) forwardTCP(r *tcp.ForwarderRequest) {
	if !c.group.begin() {
		r.Complete(true)
		return
	}
	defer c.group.done()
	// gVisor drops SYNs past TCPInFlight silently; this is where the
	// client is seen reaching it.
	if n := c.stats.TCPInFlight.Add(1); n >= int64(c.limits.TCPInFlight) {
		c.stats.TCPInFlightFull.Add(1)
		c.warnLimit("tcp in flight", c.limits.TCPInFlight)
	}
	id := r.ID() // Local* is the destination the client asked for, Remote* the client
	dst := netip.AddrPortFrom(addrFrom(id.LocalAddress), id.LocalPort)
	out, err := c.dialTCP(dst)
	if err != nil {
		r.Complete(true) // a reset: the client fails fast
		c.stats.TCPInFlight.Add(-1)
		return
	}
	// The handshake waits for the client's ACK; the host socket is the
	// group's meanwhile, and Close aborts the handshake. A client that
	// never ACKs would hold that socket for the two minutes gVisor
	// retransmits its SYN-ACK: it gets a dial's time to answer.
	giveUp := time.AfterFunc(c.limits.DialTimeout, func() { c.abortHandshake(id) })
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	giveUp.Stop()
	if terr != nil { // the client gave up, left, or did not answer
		r.Complete(true)
		c.stats.TCPInFlight.Add(-1)
		c.releaseTCP(out)
		c.stats.TCPCreateFailed.Add(1)
		return
	}
	r.Complete(false)
	c.stats.TCPInFlight.Add(-1)
	ep.SocketOptions().SetKeepAlive(true)
	in := gonet.NewTCPConn(&wq, ep)
	c.relayTCP(in, ep, out)
}

// abortHandshake aborts the handshake of the connection id, if it is
// still in the stack.
func (c *client) abortHandshake(id stack.TransportEndpointID) {
	if !c.group.begin() {
		return // Close aborts it
	}
	defer c.group.done()
	if ep := c.s.FindTransportEndpoint(netProto(addrFrom(id.LocalAddress)), tcp.ProtocolNumber, id, nicID); ep != nil {
		ep.Abort()
	}
}

// dialTCP asks the policy and the established limit, then dials under the
// client's context, so that Close ends the dial at once. The connection it
// returns is tracked by the client's group from the moment it exists, and
// is charged as established until releaseTCP. Every refusal is counted;
// limits are logged too, since they mean a client is pushing.
func (c *client) dialTCP(dst netip.AddrPort) (net.Conn, error) {
	dst = c.target(dst)
	if ok, why := c.policy.get().Decide(dst, egress.ProtoTCP); !ok {
		c.stats.TCPDenied.Add(1)
		c.log.Debug("tcp refused by egress policy", "dst", dst, "rule", why)
		return nil, errDenied
	}
	if n := c.stats.TCPEstablished.Add(1); c.limits.TCPEstablished > 0 && n > int64(c.limits.TCPEstablished) {
		c.stats.TCPEstablished.Add(-1)
		c.stats.TCPLimited.Add(1)
		c.warnLimit("tcp established", c.limits.TCPEstablished)
		return nil, errLimited
	}
	if !c.mem.take(tcpRelayCost) {
		c.stats.TCPEstablished.Add(-1)
		return nil, errLimited
	}
	if !c.takeSocket() {
		c.stats.TCPEstablished.Add(-1)
		c.mem.give(tcpRelayCost)
		return nil, errLimited
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.limits.DialTimeout)
	defer cancel()
	out, err := c.dial(ctx, "tcp", dst.String())
	if err == nil && !c.group.track(out) { // the client left during the dial
		err = net.ErrClosed
	}
	if err != nil {
		c.stats.TCPEstablished.Add(-1)
		c.mem.give(tcpRelayCost)
		c.sockets.give(c.key)
		c.stats.TCPDialFailed.Add(1)
		c.log.Debug("tcp dial failed", "dst", dst, "err", err)
		return nil, err
	}
	return out, nil
}

// releaseTCP closes a host connection dialTCP returned and gives back what
// it was charged.
func (c *client) releaseTCP(out net.Conn) {
	c.group.untrack(out)
	out.Close()
	c.stats.TCPEstablished.Add(-1)
	c.mem.give(tcpRelayCost)
	c.sockets.give(c.key)
}

var (
	errDenied  = errors.New("refused by the gateway's egress policy")
	errLimited = errors.New("refused by a per-client limit")
)

// relayTCP copies both ways until both sides finished, passing each
// half-close on, then closes both, which releases the gVisor endpoint.
// While it runs the client's group can abort the endpoint (a reset to the
// client) and close the host socket, which ends both copies.
func (c *client) relayTCP(in *gonet.TCPConn, ep tcpip.Endpoint, out net.Conn) {
	defer c.releaseTCP(out)
	c.mem.addTCP(ep)
	defer c.mem.removeTCP(ep)
	abort := aborter{ep}
	if !c.group.track(abort) { // the client left: track aborted it
		in.Close()
		return
	}
	defer c.group.untrack(abort)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); copyHalf(out, in) }()
	go func() { defer wg.Done(); copyHalf(in, out) }()
	wg.Wait()
	in.Close()
}

// copyHalf copies one direction. At EOF it passes the half-close on and
// leaves the other direction running; on an error (a reset, an abort) it
// closes both so that the other copy ends too.
func copyHalf(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		src.Close()
		dst.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// aborter resets a gVisor endpoint: on teardown a graceful close would
// leave it retransmitting a FIN into a NIC that is gone.
type aborter struct{ ep tcpip.Endpoint }

func (a aborter) Close() error { a.ep.Abort(); return nil }

// addrFrom converts a gVisor address.
func addrFrom(a tcpip.Address) netip.Addr {
	if a.Len() == 4 {
		return netip.AddrFrom4(a.As4())
	}
	return netip.AddrFrom16(a.As16())
}

// netProto is the network protocol of a's family.
func netProto(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// addrTo converts to a gVisor address.
func addrTo(a netip.Addr) tcpip.Address {
	if a.Is4() {
		return tcpip.AddrFrom4(a.As4())
	}
	return tcpip.AddrFrom16(a.As16())
}

// target is where a flow to dst is dialled: dst itself, or for the
// gateway's own virtual address (when no service of the stack listens
// there) the host's loopback address of that family, which the policy
// denies unless --allow opens it. That is how a tunnel client reaches a
// service on the gateway host's 127.0.0.1, and why the policy judges the
// loopback address rather than the virtual one it allows.
func (c *client) target(dst netip.AddrPort) netip.AddrPort {
	if !c.isLocal(dst.Addr()) {
		return dst
	}
	return loopbackFor(dst)
}

// loopbackFor is the host's loopback address of dst's family, at dst's port.
func loopbackFor(dst netip.AddrPort) netip.AddrPort {
	if dst.Addr().Is4() {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port())
	}
	return netip.AddrPortFrom(netip.IPv6Loopback(), dst.Port())
}

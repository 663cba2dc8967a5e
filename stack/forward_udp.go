package stack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/sshvpn/sshvpn/stack/egress"
)

// installUDP makes c's stack re-originate each UDP flow (one client
// address and port to one destination) from a host socket of its own,
// closed when the flow has been idle for Limits.UDPIdle (DNSIdle to port
// 53, whose flows are one question and one answer).
func (c *client) installUDP() {
	fwd := udp.NewForwarder(c.s, c.forwardUDP)
	c.s.SetTransportProtocolHandler(udp.ProtocolNumber, fwd.HandlePacket)
}

// forwardUDP runs on the inbound path, under the stack's delivery of the
// flow's first datagram, so it must not block: it decides, creates the
// endpoint (which takes that datagram) and hands the rest to a goroutine.
// Returning false makes the stack answer ICMP port unreachable.
func (c *client) forwardUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst := c.target(netip.AddrPortFrom(addrFrom(id.LocalAddress), id.LocalPort))
	if ok, why := c.policy.get().Decide(dst, egress.ProtoUDP); !ok {
		c.stats.UDPDenied.Add(1)
		c.log.Debug("udp refused by egress policy", "dst", dst, "rule", why)
		return false
	}
	if n := c.stats.UDPFlows.Add(1); c.limits.UDPFlows > 0 && n > int64(c.limits.UDPFlows) {
		c.stats.UDPFlows.Add(-1)
		c.stats.UDPLimited.Add(1)
		c.warnLimit("udp flows", c.limits.UDPFlows)
		return true // dropped: an unreachable would tell a scanner more
	}
	if !c.mem.take(udpRelayCost) {
		c.stats.UDPFlows.Add(-1)
		return true
	}
	if !c.takeSocket() {
		c.stats.UDPFlows.Add(-1)
		c.mem.give(udpRelayCost)
		return true
	}
	if !c.group.begin() {
		c.stats.UDPFlows.Add(-1)
		c.mem.give(udpRelayCost)
		c.sockets.give(c.key)
		return true
	}
	var wq waiter.Queue
	ep, err := r.CreateEndpoint(&wq)
	if err != nil {
		c.stats.UDPFlows.Add(-1)
		c.mem.give(udpRelayCost)
		c.sockets.give(c.key)
		c.group.done()
		c.log.Debug("udp endpoint", "dst", dst, "err", err)
		return true
	}
	in := gonet.NewUDPConn(&wq, ep)
	idle := c.limits.UDPIdle
	if dst.Port() == 53 {
		idle = c.limits.DNSIdle
	}
	go c.relayUDP(in, dst, idle)
	return true
}

// relayUDP dials the destination and copies datagrams both ways until the
// flow is idle, then closes both sockets (closing the gVisor endpoint
// frees the flow's 4-tuple).
func (c *client) relayUDP(in *gonet.UDPConn, dst netip.AddrPort, idle time.Duration) {
	defer c.group.done()
	defer c.stats.UDPFlows.Add(-1)
	defer c.mem.give(udpRelayCost)
	defer c.sockets.give(c.key)
	defer in.Close()
	if !c.group.track(in) {
		return
	}
	defer c.group.untrack(in)
	ctx, cancel := context.WithTimeout(c.ctx, c.limits.DialTimeout)
	out, err := c.dial(ctx, "udp", dst.String())
	cancel()
	if err != nil {
		c.stats.UDPDialFailed.Add(1)
		c.log.Debug("udp dial failed", "dst", dst, "err", err)
		return
	}
	defer out.Close()
	if !c.group.track(out) {
		return
	}
	defer c.group.untrack(out)
	var last atomic.Int64 // either direction's last datagram, UnixNano
	last.Store(time.Now().UnixNano())
	done := make(chan struct{}, 2)
	go func() { c.copyDatagrams(out, in, idle, &last); done <- struct{}{} }()
	go func() { c.copyDatagrams(in, out, idle, &last); done <- struct{}{} }()
	<-done
	in.Close()
	out.Close()
	<-done
}

// copyDatagrams copies until an error or until neither direction has seen
// a datagram for idle: each side's read deadline expires on its own, and
// it goes on while the other side was active.
func (c *client) copyDatagrams(dst, src net.Conn, idle time.Duration, last *atomic.Int64) {
	bp := c.datagramBufs.Get().(*[65535]byte)
	defer c.datagramBufs.Put(bp)
	buf := bp[:]
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if err != nil {
			if isTimeout(err) && time.Since(time.Unix(0, last.Load())) < idle {
				continue
			}
			return
		}
		last.Store(time.Now().UnixNano())
		if _, err := dst.Write(buf[:n]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

package stack

import (
	"net"
	"net/netip"
	"time"

	xicmp "golang.org/x/net/icmp"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"

	"github.com/sshvpn/sshvpn/stack/egress"
)

// pingTimeout is how long an echo waits for the real host's reply.
const pingTimeout = 3 * time.Second

// PingAvailable reports whether this process may open unprivileged ping
// sockets (Linux: its group is in net.ipv4.ping_group_range, which covers
// IPv6 too), for IPv6 when v6 is set. Without them the gateway answers no
// echo at all: it never fakes a reply for a host that did not answer.
func PingAvailable(v6 bool) bool {
	network, addr := "udp4", "0.0.0.0"
	if v6 {
		network, addr = "udp6", "::"
	}
	c, err := xicmp.ListenPacket(network, addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// installICMP handles echo requests to any destination. Returning true
// from the handler also keeps gVisor, which in promiscuous mode owns every
// address, from answering on the destination's behalf. Echo to the
// gateway's own addresses is left to gVisor: that answer is true.
func (c *client) installICMP(ping4, ping6 bool) {
	c.s.SetTransportProtocolHandler(icmp.ProtocolNumber4, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		h := header.ICMPv4(pkt.TransportHeader().Slice())
		if len(h) < header.ICMPv4MinimumSize || h.Type() != header.ICMPv4Echo {
			return false
		}
		return c.echo(false, ping4, id, h.Ident(), h.Sequence(), pkt)
	})
	c.s.SetTransportProtocolHandler(icmp.ProtocolNumber6, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		h := header.ICMPv6(pkt.TransportHeader().Slice())
		if len(h) < header.ICMPv6EchoMinimumSize || h.Type() != header.ICMPv6EchoRequest {
			return false
		}
		return c.echo(true, ping6, id, h.Ident(), h.Sequence(), pkt)
	})
}

// echo decides on one request and, when allowed, pings from a goroutine
// (this runs on the inbound path). It copies what it needs: pkt is
// released when the handler returns.
func (c *client) echo(v6, avail bool, id stack.TransportEndpointID, ident, seq uint16, pkt *stack.PacketBuffer) bool {
	dst := addrFrom(id.LocalAddress)
	if c.isLocal(dst) {
		return false
	}
	c.stats.ICMPRequests.Add(1)
	to := dst
	if c.pingTarget != nil {
		to = c.pingTarget(dst)
	}
	if ok, _ := c.policy.Decide(netip.AddrPortFrom(to, 0), egress.ProtoICMP); !ok || !avail {
		c.stats.ICMPDenied.Add(1)
		return true
	}
	if !c.group.begin() {
		return true
	}
	payload := pkt.Data().AsRange().ToSlice()
	go func() {
		defer c.group.done()
		c.ping(v6, ident, seq, payload, id.RemoteAddress, id.LocalAddress, to)
	}()
	return true
}

// ping sends one echo through a ping socket and, when the host got the
// reply, writes the client its answer from the destination. The kernel
// picks the socket's ident, so the reply carries the client's back.
func (c *client) ping(v6 bool, ident, seq uint16, payload []byte, guest, dst tcpip.Address, to netip.Addr) {
	network, laddr, typ := "udp4", "0.0.0.0", byte(header.ICMPv4Echo)
	if v6 {
		network, laddr, typ = "udp6", "::", byte(header.ICMPv6EchoRequest)
	}
	pc, err := xicmp.ListenPacket(network, laddr)
	if err != nil {
		c.stats.ICMPNoReply.Add(1)
		return
	}
	defer pc.Close()
	if !c.group.track(pc) {
		return
	}
	defer c.group.untrack(pc)
	msg := make([]byte, 8+len(payload))
	msg[0] = typ
	msg[6], msg[7] = byte(seq>>8), byte(seq)
	copy(msg[8:], payload)
	if _, err := pc.WriteTo(msg, &net.UDPAddr{IP: to.AsSlice()}); err != nil {
		c.stats.ICMPNoReply.Add(1)
		return
	}
	pc.SetReadDeadline(time.Now().Add(pingTimeout))
	buf := make([]byte, 65536)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			c.stats.ICMPNoReply.Add(1) // never a fake reply
			return
		}
		if n < 8 || uint16(buf[6])<<8|uint16(buf[7]) != seq {
			continue
		}
		reply := echoReply4(dst, guest, ident, seq, buf[8:n])
		if v6 {
			reply = echoReply6(dst, guest, ident, seq, buf[8:n])
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(reply)})
		pkt.TransportProtocolNumber = header.ICMPv4ProtocolNumber // its lane (fastLane)
		if v6 {
			pkt.TransportProtocolNumber = header.ICMPv6ProtocolNumber
		}
		if c.ep.queue(pkt) {
			c.stats.ICMPReplies.Add(1)
		}
		pkt.DecRef()
		return
	}
}

func echoReply4(src, dst tcpip.Address, ident, seq uint16, payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.ICMPv4MinimumSize+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     src,
		DstAddr:     dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	ic := header.ICMPv4(b[header.IPv4MinimumSize:])
	ic.SetType(header.ICMPv4EchoReply)
	ic.SetIdent(ident)
	ic.SetSequence(seq)
	copy(ic.Payload(), payload)
	ic.SetChecksum(^checksum.Checksum(ic, 0))
	return b
}

func echoReply6(src, dst tcpip.Address, ident, seq uint16, payload []byte) []byte {
	b := make([]byte, header.IPv6MinimumSize+header.ICMPv6EchoMinimumSize+len(payload))
	ip := header.IPv6(b)
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(header.ICMPv6EchoMinimumSize + len(payload)),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          64,
		SrcAddr:           src,
		DstAddr:           dst,
	})
	ic := header.ICMPv6(b[header.IPv6MinimumSize:])
	ic.SetType(header.ICMPv6EchoReply)
	ic.SetIdent(ident)
	ic.SetSequence(seq)
	copy(ic.Payload(), payload)
	ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: ic[:header.ICMPv6EchoMinimumSize], Src: src, Dst: dst,
		PayloadCsum: checksum.Checksum(payload, 0), PayloadLen: len(payload),
	}))
	return b
}

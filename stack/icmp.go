package stack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"

	"github.com/sshvpn/sshvpn/stack/egress"
)

// PingAvailable reports whether this process may open unprivileged ping
// sockets (Linux: its group is in net.ipv4.ping_group_range, which covers
// IPv6 too), for IPv6 when v6 is set. Without them the gateway answers no
// echo at all: it never fakes a reply for a host that did not answer.
func PingAvailable(v6 bool) bool {
	c, err := listenPing(v6)
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
func (c *client) installICMP(ping *pingSockets) {
	c.s.SetTransportProtocolHandler(icmp.ProtocolNumber4, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		h := header.ICMPv4(pkt.TransportHeader().Slice())
		if len(h) < header.ICMPv4MinimumSize || h.Type() != header.ICMPv4Echo {
			return false
		}
		return c.echo(false, ping, id, h.Ident(), h.Sequence(), pkt)
	})
	c.s.SetTransportProtocolHandler(icmp.ProtocolNumber6, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		h := header.ICMPv6(pkt.TransportHeader().Slice())
		if len(h) < header.ICMPv6EchoMinimumSize || h.Type() != header.ICMPv6EchoRequest {
			return false
		}
		return c.echo(true, ping, id, h.Ident(), h.Sequence(), pkt)
	})
}

// echo decides on one request and, when allowed, hands it to the client's
// pinger of its family. It runs on the inbound path and must not block.
func (c *client) echo(v6 bool, ping *pingSockets, id stack.TransportEndpointID, ident, seq uint16, pkt *stack.PacketBuffer) bool {
	dst := addrFrom(id.LocalAddress)
	if c.isLocal(dst) {
		return false
	}
	c.stats.ICMPRequests.Add(1)
	to := dst
	if c.pingTarget != nil {
		to = c.pingTarget(dst)
	}
	if ok, _ := c.policy.get().Decide(netip.AddrPortFrom(to, 0), egress.ProtoICMP); !ok || !ping.available(v6) {
		c.stats.ICMPDenied.Add(1)
		return true
	}
	size := pkt.Data().Size()
	if echoReplySize(v6, size) > int(c.ep.MTU()) {
		// Its reply could not reach the client whole (the stack does
		// not fragment what it sends), nor fit the pinger's buffer.
		c.stats.DropsTooBig.Add(1)
		return true
	}
	p := c.pinger(v6)
	if p == nil {
		c.stats.ICMPNoReply.Add(1)
		return true
	}
	payload, _ := pkt.Data().PullUp(size)
	p.send(echo{guest: id.RemoteAddress, dst: id.LocalAddress, to: to, ident: ident, seq: seq}, payload)
	return true
}

// echoReplySize is the size of the IP packet that answers an echo of n
// payload bytes.
func echoReplySize(v6 bool, n int) int {
	if v6 {
		return header.IPv6MinimumSize + header.ICMPv6EchoMinimumSize + n
	}
	return header.IPv4MinimumSize + header.ICMPv4MinimumSize + n
}

// echoReply is the packet that answers e with payload, from the address
// the client pinged, in a buffer of gVisor's pool.
func echoReply(v6 bool, e echo, payload []byte) *stack.PacketBuffer {
	v := buffer.NewViewSize(echoReplySize(v6, len(payload)))
	proto := header.ICMPv4ProtocolNumber
	if v6 {
		proto = header.ICMPv6ProtocolNumber
		echoReply6(v.AsSlice(), e.dst, e.guest, e.ident, e.seq, payload)
	} else {
		echoReply4(v.AsSlice(), e.dst, e.guest, e.ident, e.seq, payload)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(v)})
	pkt.TransportProtocolNumber = proto // its lane (fastLane)
	return pkt
}

// echoReply4 writes into b, which is exactly its size, an IPv4 echo reply.
func echoReply4(b []byte, src, dst tcpip.Address, ident, seq uint16, payload []byte) {
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
}

// echoReply6 writes into b, which is exactly its size, an IPv6 echo reply.
func echoReply6(b []byte, src, dst tcpip.Address, ident, seq uint16, payload []byte) {
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
}

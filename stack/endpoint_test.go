package stack

import (
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/sshvpn/sshvpn/relay"
)

// outPacket is an IPv4 packet as gVisor hands it to WritePackets: size
// bytes, its network and transport headers parsed, id in its last byte
// so the test can tell packets apart. A UDP packet's ports are port.
func outPacket(t *testing.T, id byte, size int, proto tcpip.TransportProtocolNumber, flags header.TCPFlags, port uint16) *stack.PacketBuffer {
	t.Helper()
	b := make([]byte, size)
	b[0] = 0x45
	thl := 8
	switch proto {
	case header.TCPProtocolNumber:
		thl = header.TCPMinimumSize
		header.TCP(b[header.IPv4MinimumSize:]).Encode(&header.TCPFields{DataOffset: header.TCPMinimumSize, Flags: flags})
	case header.UDPProtocolNumber:
		header.UDP(b[header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: port, DstPort: port})
	}
	b[size-1] = id
	p := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	if _, ok := p.NetworkHeader().Consume(header.IPv4MinimumSize); !ok {
		t.Fatal("network header")
	}
	if _, ok := p.TransportHeader().Consume(thl); !ok {
		t.Fatal("transport header")
	}
	p.NetworkProtocolNumber = header.IPv4ProtocolNumber
	p.TransportProtocolNumber = proto
	return p
}

// queueEach hands e the packets one WritePackets call each, as gVisor
// does for packets of different flows.
func queueEach(t *testing.T, e *endpoint, in []*stack.PacketBuffer) {
	t.Helper()
	for i, p := range in {
		var l stack.PacketBufferList
		l.PushBack(p)
		if n, err := e.WritePackets(l); n != 1 || err != nil {
			t.Fatalf("WritePackets packet %d = %d, %v", i, n, err)
		}
	}
}

// readBufs are a Pump's buffers for packets of up to size bytes.
func readBufs(size int) ([][]byte, []int) {
	bufs := make([][]byte, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, relay.Headroom+size)
	}
	return bufs, make([]int, batchSize)
}

// drainOrder queues in through WritePackets, reads one batch and returns
// the ids in the order they came out; every packet must have given its
// reference back and the queue must count nothing.
func drainOrder(t *testing.T, in []*stack.PacketBuffer) []byte {
	t.Helper()
	var stats Stats
	e := newEndpoint(1500, 0, &stats)
	defer e.Close()
	queueEach(t, e, in)
	bufs, sizes := readBufs(1500)
	n, err := e.readBatch(bufs, sizes, relay.Headroom)
	if err != nil || n != len(in) {
		t.Fatalf("readBatch = %d, %v; want %d", n, err, len(in))
	}
	var got []byte
	for i := range n {
		got = append(got, bufs[i][relay.Headroom+sizes[i]-1])
	}
	for i, p := range in {
		if r := p.ReadRefs(); r != 1 {
			t.Errorf("packet %d holds %d references, want only the test's", i, r)
		}
		p.DecRef()
	}
	if q := e.queued.Load(); q != 0 {
		t.Errorf("%d bytes still counted on the empty queue", q)
	}
	return got
}

// Small packets that cannot overtake their own flow's data are read
// before a download's full-size packets queued ahead of them: a ping, a
// pure ACK and a DNS answer do not wait for the bulk (fastLane). A small
// TCP segment with data, the tail of a bulk flow's chunk, and a small
// datagram of another UDP flow (QUIC's) keep their place; the bulk keeps
// its order.
func TestEndpointSmallPacketsGoFirst(t *testing.T) {
	tcp, udp, icmp := header.TCPProtocolNumber, header.UDPProtocolNumber, header.ICMPv4ProtocolNumber
	got := drainOrder(t, []*stack.PacketBuffer{
		outPacket(t, 0, 1500, tcp, header.TCPFlagAck, 0),
		outPacket(t, 1, 200, tcp, header.TCPFlagAck|header.TCPFlagPsh, 0), // 160 bytes of data
		outPacket(t, 2, 1500, udp, 0, 443),
		outPacket(t, 3, 100, udp, 0, 443),                                                        // a QUIC ACK
		outPacket(t, 4, 84, icmp, 0, 0),                                                          // a ping
		outPacket(t, 5, header.IPv4MinimumSize+header.TCPMinimumSize, tcp, header.TCPFlagAck, 0), // a pure ACK
		outPacket(t, 6, 120, udp, 0, 53),                                                         // a DNS answer
	})
	if want := []byte{4, 5, 6, 0, 1, 2, 3}; string(got) != string(want) {
		t.Errorf("packets out in the order %v, want %v: ping, ACK and DNS first, then the rest in order", got, want)
	}
}

// A flood of pings does not hold the bulk back: while bulk waits, a batch
// takes at most fastShare packets from the fast lane.
func TestEndpointFastLaneShare(t *testing.T) {
	var in []*stack.PacketBuffer
	const bulk, pings = 8, fastShare + 4
	for i := range bulk {
		in = append(in, outPacket(t, byte(i), 1500, header.TCPProtocolNumber, header.TCPFlagAck, 0))
	}
	for i := range pings {
		in = append(in, outPacket(t, byte(bulk+i), 84, header.ICMPv4ProtocolNumber, 0, 0))
	}
	got := drainOrder(t, in)
	var want []byte
	for i := range fastShare {
		want = append(want, byte(bulk+i))
	}
	for i := range bulk {
		want = append(want, byte(i))
	}
	for i := fastShare; i < pings; i++ {
		want = append(want, byte(bulk+i))
	}
	if string(got) != string(want) {
		t.Errorf("packets out in the order %v, want %v: %d pings, the bulk, then the other pings", got, want, fastShare)
	}
}

// One Read of the queue ends at maxBatchBytes, so that a ping queued
// just after it waits for a quarter MiB, not for 128 of the stack's 64 KiB
// segments; the rest stays queued for the next Read, in order.
func TestEndpointBatchBytes(t *testing.T) {
	var stats Stats
	e := newEndpoint(65535, 0, &stats)
	defer e.Close()
	const size, count = 60000, 8
	var in []*stack.PacketBuffer
	for i := range count {
		in = append(in, outPacket(t, byte(i), size, header.TCPProtocolNumber, header.TCPFlagAck, 0))
	}
	queueEach(t, e, in)
	bufs, sizes := readBufs(size)
	want := (maxBatchBytes + size - 1) / size // the first Read stops once it holds maxBatchBytes
	var got []byte
	for _, w := range []int{want, count - want} {
		n, err := e.readBatch(bufs, sizes, relay.Headroom)
		if err != nil || n != w {
			t.Fatalf("readBatch = %d, %v; want %d packets of %d bytes (at most %d bytes a Read)", n, err, w, size, maxBatchBytes)
		}
		for i := range n {
			got = append(got, bufs[i][relay.Headroom+sizes[i]-1])
		}
	}
	for i := range count {
		if got[i] != byte(i) {
			t.Fatalf("packets out in the order %v, want them in order", got)
		}
	}
	for _, p := range in {
		p.DecRef()
	}
}

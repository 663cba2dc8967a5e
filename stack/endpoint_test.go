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
// bytes, its network and transport headers parsed, id in the first byte
// after the IP header's 20 (so the test can tell packets apart; for TCP
// that is the source port's high byte).
func outPacket(t *testing.T, id byte, size int, proto tcpip.TransportProtocolNumber, flags header.TCPFlags) *stack.PacketBuffer {
	t.Helper()
	b := make([]byte, size)
	b[0] = 0x45
	thl := 8
	if proto == header.TCPProtocolNumber {
		thl = header.TCPMinimumSize
		header.TCP(b[header.IPv4MinimumSize:]).Encode(&header.TCPFields{DataOffset: header.TCPMinimumSize, Flags: flags})
	}
	b[header.IPv4MinimumSize] = id
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

// Small packets that cannot overtake their own flow's data are read
// before a download's full-size packets queued ahead of them: a ping and a
// pure ACK do not wait for the bulk (fastLane). A small TCP segment with
// data, the tail of a bulk flow's chunk, keeps its place; the bulk keeps
// its order; every packet gives its reference back.
func TestEndpointSmallPacketsGoFirst(t *testing.T) {
	var stats Stats
	e := newEndpoint(1500, 0, &stats)
	defer e.Close()
	tcp, icmp := header.TCPProtocolNumber, header.ICMPv4ProtocolNumber
	in := []*stack.PacketBuffer{
		outPacket(t, 0, 1500, tcp, header.TCPFlagAck),
		outPacket(t, 1, 1500, tcp, header.TCPFlagAck),
		outPacket(t, 2, 200, tcp, header.TCPFlagAck|header.TCPFlagPsh), // 160 bytes of data
		outPacket(t, 3, 1500, tcp, header.TCPFlagAck),
		outPacket(t, 4, 84, icmp, 0),                                                          // a ping
		outPacket(t, 5, header.IPv4MinimumSize+header.TCPMinimumSize, tcp, header.TCPFlagAck), // a pure ACK
	}
	want := []byte{4, 5, 0, 1, 2, 3}
	for i, p := range in {
		var l stack.PacketBufferList
		l.PushBack(p)
		if n, err := e.WritePackets(l); n != 1 || err != nil {
			t.Fatalf("WritePackets packet %d = %d, %v", i, n, err)
		}
	}
	bufs := make([][]byte, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, relay.Headroom+1500)
	}
	sizes := make([]int, batchSize)
	n, err := e.readBatch(bufs, sizes, relay.Headroom)
	if err != nil || n != len(in) {
		t.Fatalf("readBatch = %d, %v; want %d", n, err, len(in))
	}
	var got []byte
	for i := range n {
		got = append(got, bufs[i][relay.Headroom+header.IPv4MinimumSize])
	}
	if string(got) != string(want) {
		t.Errorf("packets out in the order %v, want %v: the ping and the ACK first, then the rest in order", got, want)
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
}

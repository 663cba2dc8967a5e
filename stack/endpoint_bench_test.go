package stack

import (
	"bytes"
	"encoding/binary"
	"runtime/debug"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/sshvpn/sshvpn/relay"
)

// benchPackets and benchSize are one outbound burst: 64 full-size IPv4
// packets at MTU 1500.
const (
	benchPackets = 64
	benchSize    = 1500
)

// outBench is the outbound hot path without gVisor's stack: the packets
// gVisor would hand WritePackets, and the Pump's buffers readBatch copies
// them into. The packets are built once; the reference NewPacketBuffer
// returns is ours and is held for the whole benchmark, so the reference
// queue takes and readBatch drops leaves them alive to be queued again.
type outBench struct {
	e     *endpoint
	stats Stats
	data  []byte // every packet's bytes
	pkts  []*stack.PacketBuffer
	list  stack.PacketBufferList
	bufs  [][]byte
	sizes []int
}

func newOutBench(tb testing.TB) *outBench {
	tb.Helper()
	o := &outBench{}
	o.e = newEndpoint(benchSize, 0, &o.stats)
	data := make([]byte, benchSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	data[0] = 0x45 // IPv4, 20-byte header; the endpoint never parses it
	o.data = data
	for range benchPackets {
		p := stack.NewPacketBuffer(stack.PacketBufferOptions{
			Payload: buffer.MakeWithData(data),
		})
		if _, ok := p.NetworkHeader().Consume(header.IPv4MinimumSize); !ok {
			tb.Fatal("NetworkHeader().Consume failed")
		}
		p.NetworkProtocolNumber = header.IPv4ProtocolNumber
		if p.Size() != benchSize {
			tb.Fatalf("packet size %d, want %d", p.Size(), benchSize)
		}
		o.pkts = append(o.pkts, p)
		o.list.PushBack(p)
	}
	o.bufs = make([][]byte, batchSize)
	o.sizes = make([]int, batchSize)
	for i := range o.bufs {
		o.bufs[i] = make([]byte, relay.Headroom+benchSize)
	}
	tb.Cleanup(func() {
		o.e.Close()
		for _, p := range o.pkts {
			p.DecRef()
		}
	})
	return o
}

// cycle queues the burst through WritePackets and reads it back in one
// readBatch, as one Pump Read would.
func (o *outBench) cycle(tb testing.TB) {
	if n, err := o.e.WritePackets(o.list); err != nil || n != benchPackets {
		tb.Fatalf("WritePackets = %d, %v", n, err)
	}
	n, err := o.e.readBatch(o.bufs, o.sizes, relay.Headroom)
	if err != nil || n != benchPackets {
		tb.Fatalf("readBatch = %d, %v (drops: full %d, delay %d, too big %d)", n, err,
			o.stats.DropsQueueFull.Load(), o.stats.DropsQueueDelay.Load(), o.stats.DropsTooBig.Load())
	}
}

func BenchmarkEndpointOut(b *testing.B) {
	o := newOutBench(b)
	b.SetBytes(benchPackets * benchSize)
	b.ReportAllocs()
	for b.Loop() {
		o.cycle(b)
	}
}

// TestEndpointOutAllocs checks the design's claim for the outbound path:
// queueing a packet and copying it out allocate nothing per packet.
// copyOut walks the packet's views: gVisor's PacketBuffer.AsSlices, which
// it used before, allocated the slice it returns, one allocation per
// packet. Under the race detector sync.Pool drops items on purpose, so
// gVisor's view and PacketBuffer pools allocate too and the count is not
// exact: the test skips there.
func TestEndpointOutAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are not exact under -race: sync.Pool drops items at random")
	}
	o := newOutBench(t)
	o.cycle(t) // warm the view pool
	for i := range benchPackets {
		if got := o.bufs[i][relay.Headroom : relay.Headroom+o.sizes[i]]; !bytes.Equal(got, o.data) {
			t.Fatalf("packet %d came out as %d bytes that differ from the %d queued", i, len(got), len(o.data))
		}
	}
	if got := testing.AllocsPerRun(100, func() { o.cycle(t) }); got != 0 {
		t.Errorf("queue+readBatch of %d packets: %v allocations, want none", benchPackets, got)
	}
}

// raceEnabled reports whether the test binary was built with -race, from
// its build settings (one file cannot carry a race build tag of its own).
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// countDispatcher is the lightest NetworkDispatcher: it counts what GRO
// delivers. GRO keeps its own reference to every packet it delivers and
// drops it afterwards, so the dispatcher holds none and releases none.
type countDispatcher struct {
	pkts, bytes int
}

func (d *countDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.pkts++
	d.bytes += pkt.Data().Size()
}

func (d *countDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// inboundTCP is one flow's burst of n 1500-byte IPv4 TCP segments in
// sequence, with valid checksums, so GRO can merge them, each at
// relay.Headroom in its buffer as the Pump passes them to Write.
func inboundTCP(n int) [][]byte {
	src := tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	dst := tcpip.AddrFrom4([4]byte{192, 0, 2, 1})
	const payload = benchSize - header.IPv4MinimumSize - header.TCPMinimumSize
	bufs := make([][]byte, n)
	for i := range bufs {
		b, pkt := inboundIPv4(i, header.TCPProtocolNumber, src, dst)
		tcp := header.TCP(pkt[header.IPv4MinimumSize:])
		tcp.Encode(&header.TCPFields{
			SrcPort:    40000,
			DstPort:    443,
			SeqNum:     1 + uint32(i*payload),
			AckNum:     1,
			DataOffset: header.TCPMinimumSize,
			Flags:      header.TCPFlagAck,
			WindowSize: 65535,
		})
		data := tcp[header.TCPMinimumSize:]
		for j := range data {
			data[j] = byte(i + j)
		}
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(tcp)))
		xsum = checksum.Checksum(data, xsum)
		tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
		bufs[i] = b
	}
	return bufs
}

// inboundIPv4 is the i-th inbound packet's buffer and, at relay.Headroom
// in it, the packet: a benchSize-byte IPv4 packet of proto with its header
// written, the rest for the caller.
func inboundIPv4(i int, proto tcpip.TransportProtocolNumber, src, dst tcpip.Address) (buf, pkt []byte) {
	buf = make([]byte, relay.Headroom+benchSize)
	pkt = buf[relay.Headroom:]
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: benchSize,
		ID:          uint16(i),
		TTL:         64,
		Protocol:    uint8(proto),
		SrcAddr:     src,
		DstAddr:     dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	return buf, pkt
}

// inboundUDP is n 1500-byte IPv4 UDP datagrams, which GRO passes through
// one by one. The UDP checksum is 0 (none) and nothing here checks it.
func inboundUDP(n int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		b, pkt := inboundIPv4(i, header.UDPProtocolNumber,
			tcpip.AddrFrom4([4]byte{10, 0, 0, 2}), tcpip.AddrFrom4([4]byte{192, 0, 2, 1}))
		binary.BigEndian.PutUint16(pkt[header.IPv4MinimumSize+4:], benchSize-header.IPv4MinimumSize)
		bufs[i] = b
	}
	return bufs
}

// BenchmarkEndpointIn is the inbound hot path: writeBatch copies each
// packet into a PacketBuffer and hands the batch to GRO, which delivers to
// a counting dispatcher instead of gVisor's stack. "tcp" is one flow GRO
// merges (checksums verified, 64 segments into a few 64 KiB ones); "udp"
// is GRO's pass-through.
func BenchmarkEndpointIn(b *testing.B) {
	for _, c := range []struct {
		name string
		bufs [][]byte
	}{
		{"tcp", inboundTCP(benchPackets)},
		{"udp", inboundUDP(benchPackets)},
	} {
		b.Run(c.name, func(b *testing.B) {
			var stats Stats
			e := newEndpoint(benchSize, 0, &stats)
			d := &countDispatcher{}
			e.Attach(d)
			defer e.Close()
			b.SetBytes(benchPackets * benchSize)
			b.ReportAllocs()
			for b.Loop() {
				if n, err := e.writeBatch(c.bufs, relay.Headroom); err != nil || n != benchPackets {
					b.Fatalf("writeBatch = %d, %v", n, err)
				}
			}
			b.StopTimer()
			if d.pkts == 0 || d.bytes == 0 {
				b.Fatal("nothing delivered")
			}
			if stats.DropsNotIP.Load() != 0 {
				b.Fatalf("%d packets dropped as not IP", stats.DropsNotIP.Load())
			}
			b.ReportMetric(float64(d.pkts)/float64(b.N), "delivered/op")
		})
	}
}

// A packet queued while the endpoint closes gives its reference back:
// none is left on the queue after Close. closeWindow puts the Close
// between queue's check and its send, where it races in production.
func TestEndpointCloseReleasesQueued(t *testing.T) {
	o := newOutBench(t)
	closeAt := func(e *endpoint) { e.Close() }
	closeWindow.Store(&closeAt)
	t.Cleanup(func() { closeWindow.Store(nil) })
	o.e.WritePackets(o.list)
	closeWindow.Store(nil)
	for i, p := range o.pkts {
		if r := p.ReadRefs(); r != 1 {
			t.Fatalf("packet %d holds %d references after Close, want only the test's", i, r)
		}
	}
	if q := o.e.queued.Load(); q != 0 {
		t.Fatalf("%d bytes still counted on the queue after Close", q)
	}
}

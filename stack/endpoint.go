package stack

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// DefaultQueueLen is the outbound queue of one client, in packets. At MTU
// 1500 a queue of 500 cost tens of thousands of TCP retransmits in an
// iperf3 run through a gVisor NAT gateway; 5000 removed them.
const DefaultQueueLen = 5000

// maxQueueBytes bounds the outbound queue in bytes too: 5000 packets at a
// 64 KiB MTU would be 320 MiB. 16 MiB holds the 5000 at MTU 1500 and is
// more than a 2 MiB SSH window drains between two reads.
const maxQueueBytes = 16 << 20

// Small packets that cannot overtake their own flow's data wait in a fast
// lane of their own, which the reader serves first: pure TCP ACKs, ICMP
// (pings) and DNS, of fastMax bytes at most: behind the bulk of a
// download, which CoDel holds to a few milliseconds at best (a TCP segment
// in the stack can be 64 KiB), they would wait those milliseconds too
// (what the lane saves: bench/README.md).
//
// Small packets of a flow that also sends large ones stay in line: a TCP
// bulk flow ends every chunk it reads from its host socket with a short
// segment, and three of them SACKed ahead of the full ones made the
// sender retransmit the whole queue as lost (TestSlowPathDownload fell
// from 40 to 8 Mbit/s). Other UDP stays in line for the same reason:
// QUIC's short packets, or those of a VPN inside the tunnel, would
// overtake their own flow's full ones. The lane is bounded, and a small
// packet that finds it full queues as any. Strict priority would let a
// flood of pings hold the bulk back indefinitely, so a batch takes at most
// fastShare packets from the lane while bulk waits.
const (
	fastMax     = 256
	fastLaneLen = 512
	fastShare   = batchSize / 4
)

// fastLane says whether p may take the fast lane.
func fastLane(p *stack.PacketBuffer) bool {
	if p.Size() > fastMax {
		return false
	}
	switch p.TransportProtocolNumber {
	case header.TCPProtocolNumber:
		h := header.TCP(p.TransportHeader().Slice())
		return len(h) >= header.TCPMinimumSize && h.Flags()&^(header.TCPFlagPsh|header.TCPFlagEce|header.TCPFlagCwr) == header.TCPFlagAck &&
			p.Data().Size() == 0
	case header.UDPProtocolNumber:
		h := header.UDP(p.TransportHeader().Slice())
		return len(h) >= header.UDPMinimumSize && (h.SourcePort() == 53 || h.DestinationPort() == 53)
	case header.ICMPv4ProtocolNumber, header.ICMPv6ProtocolNumber:
		return true
	}
	return false
}

// maxBatchBytes ends one Read of the queue once it holds this much: a
// ping that reaches the fast lane still waits for the batch the pump took
// before it, and 128 of the stack's 64 KiB segments are 8 MiB, 14 ms at
// 4.5 Gbit/s. 256 KiB is a framed channel's one flush (bench/README.md).
const maxBatchBytes = 256 << 10

// batchSize is the most packets one Read or Write of a client's Device
// handles; Pump allocates that many buffers once.
const batchSize = 128

// endpoint is a point-to-point (L3) gVisor link endpoint of our own: no link
// header, no ARP or NDP. Inbound, Write hands gVisor every packet one SSH
// read returned as one batch through GRO, so TCP segments merge before the
// stack sees them. Outbound, gVisor calls WritePackets with its endpoint
// locks held, so it copies each packet into a bounded queue and never
// blocks: a full queue drops, as a wire does, and TCP recovers. The queue
// holds the packets themselves, a reference each, and Read copies them
// straight into the Pump's buffers: no allocation per packet.
type endpoint struct {
	mtu atomic.Uint32

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	onClose    func()

	out   chan queued
	fast  chan queued // small packets, read first
	codel codel       // the reader's drop state
	// tailDropOnly turns codel off, for a test that needs every slow
	// start to overflow the queue whatever the host's speed: codel's
	// single early drops end a slow start first on a slow host.
	tailDropOnly bool
	// pathRTT is the SSH path's round trip (SetPathRTT), which sizes
	// codel; 0 until it is measured.
	pathRTT atomic.Int64
	queued  atomic.Int64 // bytes in out and fast, bounded by maxQueueBytes
	done    chan struct{}
	closed  atomic.Bool

	injectMu sync.Mutex // GRO state is not safe for concurrent use
	gro      gro.GRO

	stats *Stats
}

var _ stack.LinkEndpoint = (*endpoint)(nil)

// queued is one outbound packet and when it was queued.
type queued struct {
	pkt *stack.PacketBuffer
	at  time.Duration
}

func newEndpoint(mtu uint32, queueLen int, stats *Stats) *endpoint {
	if queueLen <= 0 {
		queueLen = DefaultQueueLen
	}
	e := &endpoint{out: make(chan queued, queueLen), fast: make(chan queued, fastLaneLen), done: make(chan struct{}), stats: stats}
	e.mtu.Store(mtu)
	e.gro.Init(true)
	return e
}

// writeBatch is the client Device's Write: it delivers bufs[i][offset:] to the stack
// as one batch. Packets that are not IPv4 or IPv6 are dropped and counted;
// the stack's own checks (and its counters) handle the rest.
func (e *endpoint) writeBatch(bufs [][]byte, offset int) (int, error) {
	select {
	case <-e.done:
		return 0, net.ErrClosed
	default:
	}
	e.mu.RLock()
	d := e.dispatcher
	e.mu.RUnlock()
	if d == nil {
		return 0, net.ErrClosed
	}
	e.injectMu.Lock()
	defer e.injectMu.Unlock()
	e.gro.Dispatcher = d
	for _, b := range bufs {
		e.inject(b[offset:])
	}
	e.gro.Flush()
	return len(bufs), nil
}

func (e *endpoint) inject(b []byte) {
	var proto tcpip.NetworkProtocolNumber
	switch {
	case len(b) == 0:
		e.stats.DropsNotIP.Add(1)
		return
	case header.IPVersion(b) == header.IPv4Version:
		proto = header.IPv4ProtocolNumber
	case header.IPVersion(b) == header.IPv6Version:
		proto = header.IPv6ProtocolNumber
	default:
		e.stats.DropsNotIP.Add(1)
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		Payload: buffer.MakeWithData(b), // a copy: the caller reuses b
	})
	pkt.NetworkProtocolNumber = proto // GRO reads it
	e.gro.Enqueue(pkt)
	pkt.DecRef()
	e.stats.PacketsIn.Add(1)
}

// readBatch is the client Device's Read: it blocks for one outbound
// packet, then takes whatever else is queued, up to len(bufs), batchSize
// and maxBatchBytes, the fast lane first up to its share. A packet larger than
// its buffer is dropped and counted.
func (e *endpoint) readBatch(bufs [][]byte, sizes []int, offset int) (int, error) {
	limit := min(len(bufs), batchSize)
	mtu := int(e.MTU())
	e.codel.codelParams = paramsFor(time.Duration(e.pathRTT.Load()))
	n, fast, bytes := 0, 0, 0
	for n == 0 {
		var q queued
		var bulk bool
		select {
		case q = <-e.fast: // first, even when both are ready
		default:
			select {
			case q = <-e.fast:
			case q = <-e.out:
				bulk = true
			case <-e.done:
				return 0, net.ErrClosed
			}
		}
		t := now()
		for {
			p := q.pkt
			size := p.Size()
			backlog := e.queued.Add(-int64(size))
			switch {
			case bulk && !e.tailDropOnly && e.codel.drop(t-q.at, t, backlog, mtu):
				e.stats.DropsQueueDelay.Add(1)
			case size > len(bufs[n])-offset:
				e.stats.DropsTooBig.Add(1)
			default:
				sizes[n] = copyOut(bufs[n][offset:], p)
				bytes += sizes[n]
				n++
			}
			p.DecRef()
			if n == limit || bytes >= maxBatchBytes {
				return n, nil
			}
			if !bulk {
				fast++
			}
			var more bool
			q, bulk, more = e.next(fast >= fastShare)
			if !more {
				break
			}
		}
	}
	return n, nil
}

// next takes a queued packet without waiting, from the fast lane first
// unless bulkFirst (once a batch had its share of the lane); bulk says
// which lane it came from, ok whether there was one.
func (e *endpoint) next(bulkFirst bool) (q queued, bulk, ok bool) {
	first, second := e.fast, e.out
	if bulkFirst {
		first, second = second, first
	}
	select {
	case q = <-first:
		return q, bulkFirst, true
	default:
	}
	select {
	case q = <-second:
		return q, !bulkFirst, true
	default:
		return q, false, false
	}
}

// copyOut copies a packet's headers and payload into b, which holds them.
// It walks the views itself: PacketBuffer.AsSlices returns a slice it
// allocates, one allocation per packet (TestEndpointOutAllocs).
func copyOut(b []byte, p *stack.PacketBuffer) int {
	views, skip := p.AsViewList()
	n := 0
	for v := views.Front(); v != nil; v = v.Next() {
		s := v.AsSlice()
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		n += copy(b[n:], s[skip:])
		skip = 0
	}
	return n
}

// closeWindow, when a test sets it, runs in queue between the check for
// Close and the send: where a Close that races with WritePackets lands.
var closeWindow atomic.Pointer[func(*endpoint)]

// queue puts one outbound packet, with a reference of its own, on the
// queue without blocking; false means it was dropped (queue full or
// endpoint closed). A small packet takes the fast lane (fastLane) while it
// has room.
func (e *endpoint) queue(p *stack.PacketBuffer) bool { return e.enqueue(p, fastLane(p)) }

// Inject implements segment.Injector: a packet of the link layer's own
// (an ARP payload, a router advertisement, a DHCP reply), copied, on the
// fast lane: it answers the client's own request and is small.
func (e *endpoint) Inject(b []byte) bool {
	p := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	defer p.DecRef()
	return e.enqueue(p, true)
}

// enqueue is queue, with the lane chosen by the caller.
func (e *endpoint) enqueue(p *stack.PacketBuffer, fast bool) bool {
	select {
	case <-e.done:
		return false
	default:
	}
	if f := closeWindow.Load(); f != nil {
		(*f)(e)
	}
	size := int64(p.Size())
	if e.queued.Add(size) > maxQueueBytes {
		e.queued.Add(-size)
		e.stats.DropsQueueFull.Add(1)
		return false
	}
	p.IncRef()
	q := queued{p, now()}
	ok := false
	if fast {
		select {
		case e.fast <- q:
			ok = true
		default:
		}
	}
	if !ok {
		select {
		case e.out <- q:
			ok = true
		default:
		}
	}
	if !ok {
		p.DecRef()
		e.queued.Add(-size)
		e.stats.DropsQueueFull.Add(1)
		return false
	}
	e.stats.PacketsOut.Add(1)
	// A Close between the check above and this send has drained the queue
	// already: drain again, so no packet keeps its reference.
	if e.closed.Load() {
		e.drain()
	}
	return true
}

// drain releases the packets left on the queue once the endpoint is
// closed, so their buffers go back to gVisor's pool.
func (e *endpoint) drain() {
	for {
		var q queued
		select {
		case q = <-e.out:
		case q = <-e.fast:
		default:
			return
		}
		e.queued.Add(-int64(q.pkt.Size()))
		q.pkt.DecRef()
	}
}

// WritePackets implements stack.LinkWriter. gVisor holds endpoint locks
// here and owns the packets: take a reference, never block.
func (e *endpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		select {
		case <-e.done:
			if n == 0 {
				return 0, &tcpip.ErrClosedForSend{}
			}
			return n, nil
		default:
		}
		e.queue(pkt)
		n++
	}
	return n, nil
}

func (e *endpoint) MTU() uint32 { return e.mtu.Load() }

func (e *endpoint) SetMTU(mtu uint32)                { e.mtu.Store(mtu) }
func (e *endpoint) MaxHeaderLength() uint16          { return 0 }
func (e *endpoint) LinkAddress() tcpip.LinkAddress   { return "" }
func (e *endpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities: GRO merges segments whose checksums it does not rewrite, so
// without RX checksum offload the stack drops every merged segment as
// malformed. The SSH channel has its own integrity, and IP header checksums
// are still checked.
func (e *endpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}
func (e *endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }
func (e *endpoint) AddHeader(*stack.PacketBuffer)           {}
func (e *endpoint) ParseHeader(*stack.PacketBuffer) bool    { return true }
func (e *endpoint) Wait()                                   {}

func (e *endpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}

func (e *endpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

func (e *endpoint) SetOnCloseAction(f func()) {
	e.mu.Lock()
	e.onClose = f
	e.mu.Unlock()
}

// Close implements stack.LinkEndpoint and unblocks Read and Write. It is
// idempotent and returns at once when called again from within: the
// on-close action the stack installs (RemoveNIC) closes the endpoint too.
func (e *endpoint) Close() {
	if e.closed.Swap(true) {
		return
	}
	close(e.done)
	e.drain()
	e.mu.Lock()
	f := e.onClose
	e.dispatcher = nil
	e.mu.Unlock()
	if f != nil {
		f()
	}
}

// String names the endpoint in messages.
func (e *endpoint) String() string { return fmt.Sprintf("stack endpoint mtu %d", e.MTU()) }

package stack

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/sshvpn/sshvpn/relay"
)

// FlowConfig is what a FlowTerminator is built from.
type FlowConfig struct {
	// Dial opens the byte stream that carries the application's
	// connection from src to dst: a direct-tcpip channel. It honours
	// ctx, which ends at the dial timeout and at Close. Its errors say
	// what the application is told: ErrFlowProhibited (the server allows
	// no forwarding at all), an error wrapping ErrFlowRefused or
	// syscall.ECONNREFUSED (a reset), anything else (ICMP unreachable).
	Dial        func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error)
	DialTimeout time.Duration // 0: DefaultFlowDialTimeout
	MaxFlows    int           // connections dialled or carried at once; 0: DefaultMaxFlows
	Log         *slog.Logger
}

// DefaultMaxFlows bounds the connections one terminator carries: as the
// gateway's TCPEstablished, far above what one machine opens, and each a
// channel on the SSH connection.
const DefaultMaxFlows = 4096

// DefaultFlowDialTimeout is how long a connection's SYN waits for its
// dial: as the gateway's own dials wait (DefaultLimits.DialTimeout).
const DefaultFlowDialTimeout = 10 * time.Second

var (
	// ErrFlowProhibited says the server refuses every forward (sshd's
	// AllowTcpForwarding no, a key's no-port-forwarding or permitopen):
	// the terminator then passes TCP on as packets.
	ErrFlowProhibited = errors.New("the server refuses TCP forwarding")
	// ErrFlowRefused says the destination refused the connection.
	ErrFlowRefused = errors.New("connection refused by the destination")
)

// FlowStats are a FlowTerminator's counters. Active is a gauge; the rest
// only grow. Up is from the application to the destination.
type FlowStats struct {
	MaxFlows                              int // the limit Active is held to
	Active, Total                         uint64
	Refused, Unreachable, Prohibited      uint64 // dial failures by kind
	AtLimit                               uint64 // SYNs reset at MaxFlows
	PassedThrough                         uint64 // TCP packets sent on as packets
	BytesUp, BytesDown                    uint64
	PacketsToStack, PacketsFromStack      uint64
	DropsQueueFull, DropsQueueDelay, Held uint64
}

// flow is one application connection the terminator dialled or dials.
type flow struct {
	key     flowKey
	syn     []byte   // the SYN, held while the dial runs
	conn    net.Conn // the dialled stream until the stack's forwarder takes it
	pending bool     // the dial runs: retransmitted SYNs are dropped
	unclaim *time.Timer
}

// FlowTerminator is a relay.Device in front of the client's tun. It
// terminates the application's TCP connections in a gVisor stack of its
// own and carries each as a byte stream that Dial opens (a direct-tcpip
// channel), so that no TCP runs inside TCP; every other packet goes on to
// the tunnel unchanged. Read runs in the caller's (the pump's) goroutine;
// the terminator's own goroutines are one writer toward the tun, each
// dial, and two copies per connection, all ended and waited for by Close.
type FlowTerminator struct {
	tun  relay.Device
	cfg  FlowConfig
	log  *slog.Logger
	s    *stack.Stack
	ep   *endpoint
	wmu  sync.Mutex // the tun's Write: the pump's and the stack's writer
	toEp [][]byte   // Read's TCP packets for the stack, reused

	mu       sync.Mutex
	flows    map[flowKey]*flow // guarded by mu
	passed   [][]byte          // held SYNs to pass on, guarded by mu
	passThru atomic.Bool       // the server refused forwarding: SYNs pass
	// mixed says some connections went as packets: those of a
	// connection the terminator does not know pass too, for the
	// connections carried as packets outlive a Resume.
	mixed  atomic.Bool
	warned atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	group  *group
	writer sync.WaitGroup

	stats  Stats // the link endpoint's
	active atomic.Int64
	total, refused, unreachable, prohibited, atLimit, passedThrough,
	bytesUp, bytesDown, held atomic.Uint64

	closeOnce sync.Once
}

var _ relay.Device = (*FlowTerminator)(nil)

// NewFlowTerminator puts a terminator in front of tun, which it owns from
// then on: Close closes it. tun must pass plain packets (no GSO).
func NewFlowTerminator(tun relay.Device, cfg FlowConfig) (*FlowTerminator, error) {
	if cfg.Dial == nil {
		return nil, errors.New("stack: flow terminator without a Dial")
	}
	if relay.GSO(tun) {
		return nil, errors.New("stack: flow terminator: the tun passes GSO super-packets; open it without GSO")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultFlowDialTimeout
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	f := &FlowTerminator{tun: tun, cfg: cfg, log: cfg.Log, flows: map[flowKey]*flow{}, group: newGroup()}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.toEp = make([][]byte, 0, max(tun.BatchSize(), batchSize))
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.ep = newEndpoint(uint32(tun.MTU()), 0, &f.stats)
	var err error
	if f.s, err = newTunnelStack(f.ep); err != nil {
		f.cancel()
		f.ep.Close()
		return nil, err
	}
	// Promiscuous and spoofing, as a gateway client's stack: it answers
	// for every destination the application dials.
	if err := terminateAll(f.s); err != nil {
		f.cancel()
		f.ep.Close()
		f.s.Destroy()
		return nil, err
	}
	fwd := tcp.NewForwarder(f.s, 0, cfg.MaxFlows, f.accept)
	f.s.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
	f.writer.Add(1)
	go f.writeToTun()
	return f, nil
}

// Read implements relay.Device: the tun's packets that go to the tunnel
// as packets. TCP goes to the terminator's stack instead, unless the
// server refused forwarding.
func (f *FlowTerminator) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		if n := f.takePassed(bufs, sizes, offset); n > 0 {
			return n, nil
		}
		n, err := f.tun.Read(bufs, sizes, offset)
		kept := f.sort(bufs, sizes, offset, n)
		if kept > 0 || err != nil {
			return kept, err
		}
	}
}

// sort hands the TCP packets among the first n to the stack (or holds or
// answers them) and moves the others to the front, in order; it returns
// how many are left there.
func (f *FlowTerminator) sort(bufs [][]byte, sizes []int, offset, n int) int {
	f.toEp = f.toEp[:0]
	kept := 0
	for i := range n {
		// The packets for the stack stay where they are until the batch
		// is delivered: swapping buffers moves no bytes.
		if f.classify(bufs[i][offset : offset+sizes[i]]) {
			bufs[i], bufs[kept] = bufs[kept], bufs[i]
			sizes[kept] = sizes[i]
			kept++
		}
	}
	if len(f.toEp) > 0 {
		// One batch, so that the stack's GRO merges the segments.
		f.ep.writeBatch(f.toEp, 0)
		clear(f.toEp) // no buffer of the caller's kept past the call
	}
	return kept
}

// classify decides one packet: true sends it on to the tunnel.
func (f *FlowTerminator) classify(p []byte) bool {
	t := parseTCP(p)
	if !t.isTCP {
		return true
	}
	if !t.opens {
		if f.mixed.Load() && !f.known(t) {
			f.passedThrough.Add(1)
			return true
		}
		f.toStack(p)
		return false
	}
	return f.open(t, p)
}

// toStack queues p for the stack's batch.
func (f *FlowTerminator) toStack(p []byte) { f.toEp = append(f.toEp, p) }

// known reports whether t belongs to a connection the terminator carries.
func (f *FlowTerminator) known(t tcpPacket) bool {
	if !t.hasKey {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.flows[t.key]
	return ok
}

// open handles a SYN: a new connection is dialled while its SYN waits; a
// retransmit during the dial is dropped; one past MaxFlows is reset. It
// returns true when the SYN goes on to the tunnel as a packet.
func (f *FlowTerminator) open(t tcpPacket, p []byte) bool {
	f.mu.Lock()
	if fl, ok := f.flows[t.key]; ok {
		pending := fl.pending
		f.mu.Unlock()
		if pending {
			f.held.Add(1)
		} else {
			f.toStack(p) // the stack has it, or its forwarder will
		}
		return false
	}
	if f.passThru.Load() {
		f.mu.Unlock()
		f.passedThrough.Add(1)
		return true
	}
	if len(f.flows) >= f.cfg.MaxFlows {
		f.mu.Unlock()
		f.atLimit.Add(1)
		f.warnOnce("flows at their limit; further SYNs are reset and counted", "max_flows", f.cfg.MaxFlows)
		f.reply(resetFor(t, relay.Headroom))
		return false
	}
	if !f.group.begin() {
		f.mu.Unlock()
		return false // closing
	}
	fl := &flow{key: t.key, syn: append([]byte(nil), p...), pending: true}
	f.flows[t.key] = fl
	f.mu.Unlock()
	f.active.Add(1)
	f.total.Add(1)
	go f.dial(fl, t)
	return false
}

// warnOnce logs the first time a terminator hits its limit.
func (f *FlowTerminator) warnOnce(msg string, args ...any) {
	if !f.warned.Swap(true) {
		f.log.Warn(msg, args...)
	}
}

// dial runs in a goroutine of the group's. On success the held SYN goes
// into the stack, whose forwarder (accept) completes the handshake with
// the application; on failure the application is told at once.
func (f *FlowTerminator) dial(fl *flow, t tcpPacket) {
	defer f.group.done()
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.DialTimeout)
	conn, err := f.cfg.Dial(ctx, fl.key.src, fl.key.dst)
	timedOut := ctx.Err() != nil
	cancel()
	if err == nil && !f.group.track(conn) { // Close came during the dial
		err = net.ErrClosed
	}
	if err != nil {
		f.failed(fl, t, err, timedOut)
		return
	}
	// Should the stack never take the SYN (the application left), the
	// stream goes after a dial's time; the application's retransmits
	// reach the forwarder before that.
	f.mu.Lock()
	fl.conn, fl.pending = conn, false
	syn := fl.syn
	fl.syn = nil
	fl.unclaim = time.AfterFunc(f.cfg.DialTimeout, func() { f.unclaimed(fl) })
	f.mu.Unlock()
	f.injectSYN(syn)
}

// injectSYN gives the stack a held SYN. It shares the stack's inbound
// path with Read, whose batch is its own: writeBatch serializes them.
func (f *FlowTerminator) injectSYN(syn []byte) {
	f.ep.writeBatch([][]byte{syn}, 0)
}

// unclaimed ends fl if the forwarder never took its stream.
func (f *FlowTerminator) unclaimed(fl *flow) {
	f.mu.Lock()
	conn := fl.conn
	fl.conn = nil
	f.mu.Unlock()
	if conn != nil {
		f.group.untrack(conn)
		conn.Close()
		f.end(fl)
	}
}

// failed forgets the flow and tells the application its connection
// failed, as a host or router would: forgotten first, so that a SYN the
// application sends once it knows dials again rather than waits.
func (f *FlowTerminator) failed(fl *flow, t tcpPacket, err error, timedOut bool) {
	f.mu.Lock()
	syn := fl.syn
	fl.syn = nil
	f.mu.Unlock()
	f.end(fl)
	switch {
	case f.ctx.Err() != nil:
		// Closing: nobody to tell.
	case errors.Is(err, ErrFlowProhibited):
		f.prohibited.Add(1)
		f.mixed.Store(true)
		if !f.passThru.Swap(true) {
			f.log.Warn("the server refuses TCP forwarding: TCP goes as packets through the tunnel from now on", "err", err)
		}
		f.mu.Lock()
		f.passed = append(f.passed, syn)
		f.mu.Unlock()
	case !timedOut && (errors.Is(err, ErrFlowRefused) || errors.Is(err, syscall.ECONNREFUSED)):
		f.refused.Add(1)
		f.log.Debug("flow refused", "src", fl.key.src, "dst", fl.key.dst, "err", err)
		f.reply(resetFor(t, relay.Headroom))
	default:
		f.unreachable.Add(1)
		f.log.Debug("flow unreachable", "src", fl.key.src, "dst", fl.key.dst, "err", err, "timed_out", timedOut)
		f.reply(unreachableFor(syn, t, relay.Headroom))
	}
}

// end forgets fl: a later SYN of the same connection dials again.
func (f *FlowTerminator) end(fl *flow) {
	f.mu.Lock()
	if f.flows[fl.key] == fl {
		delete(f.flows, fl.key)
	}
	f.mu.Unlock()
	f.active.Add(-1)
}

// takePassed moves held SYNs that go on as packets into bufs.
func (f *FlowTerminator) takePassed(bufs [][]byte, sizes []int, offset int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for n < len(f.passed) && n < len(bufs) && len(f.passed[n]) <= len(bufs[n])-offset {
		sizes[n] = copy(bufs[n][offset:], f.passed[n])
		n++
	}
	f.passed = f.passed[n:]
	f.passedThrough.Add(uint64(n))
	return n
}

// reply writes a packet of the terminator's own, behind relay.Headroom,
// to the application.
func (f *FlowTerminator) reply(b []byte) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if _, err := f.tun.Write([][]byte{b}, relay.Headroom); err != nil {
		f.log.Debug("flow: write a reply to the tun", "err", err)
	}
}

// writeToTun moves the stack's packets to the application until the
// stack's endpoint closes.
func (f *FlowTerminator) writeToTun() {
	defer f.writer.Done()
	bufs := make([][]byte, batchSize)
	sizes := make([]int, batchSize)
	out := make([][]byte, batchSize)
	for i := range bufs {
		bufs[i] = make([]byte, relay.Headroom+f.tun.MTU())
	}
	for {
		n, err := f.ep.readBatch(bufs, sizes, relay.Headroom)
		if err != nil {
			return
		}
		for i := range n {
			out[i] = bufs[i][:relay.Headroom+sizes[i]]
		}
		if err := f.writeTun(out[:n]); err != nil {
			f.log.Debug("flow: write to the tun", "err", err)
			return
		}
	}
}

// writeTun writes a batch, going on past packets the tun drops.
func (f *FlowTerminator) writeTun(pkts [][]byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	for len(pkts) > 0 {
		n, err := f.tun.Write(pkts, relay.Headroom)
		if err == nil {
			return nil
		}
		if !errors.Is(err, relay.ErrDropped) {
			return err
		}
		pkts = pkts[n+1:]
	}
	return nil
}

// Write implements relay.Device: the tunnel's packets go to the tun
// unchanged.
func (f *FlowTerminator) Write(bufs [][]byte, offset int) (int, error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	return f.tun.Write(bufs, offset)
}

// BatchSize implements relay.Device.
func (f *FlowTerminator) BatchSize() int { return f.tun.BatchSize() }

// MTU implements relay.Device.
func (f *FlowTerminator) MTU() int { return f.tun.MTU() }

// Resume ends pass-through for new connections: a new SSH connection may
// allow forwarding again, so their SYNs are dialled again. Connections
// that went as packets go on as packets.
func (f *FlowTerminator) Resume() { f.passThru.Store(false) }

// Stats returns a copy of the counters.
func (f *FlowTerminator) Stats() FlowStats {
	return FlowStats{
		MaxFlows:         f.cfg.MaxFlows,
		Active:           uint64(max(f.active.Load(), 0)),
		Total:            f.total.Load(),
		Refused:          f.refused.Load(),
		Unreachable:      f.unreachable.Load(),
		Prohibited:       f.prohibited.Load(),
		AtLimit:          f.atLimit.Load(),
		PassedThrough:    f.passedThrough.Load(),
		BytesUp:          f.bytesUp.Load(),
		BytesDown:        f.bytesDown.Load(),
		PacketsToStack:   f.stats.PacketsIn.Load(),
		PacketsFromStack: f.stats.PacketsOut.Load(),
		DropsQueueFull:   f.stats.DropsQueueFull.Load(),
		DropsQueueDelay:  f.stats.DropsQueueDelay.Load(),
		Held:             f.held.Load(),
	}
}

// Close implements relay.Device: it ends every dial and connection (a
// reset to the application), waits for their goroutines and the writer,
// destroys the stack and closes the tun.
func (f *FlowTerminator) Close() error {
	var err error
	f.closeOnce.Do(func() {
		f.cancel()
		f.ep.Close() // ends the writer; removes the NIC
		f.group.close(f.abortEndpoints)
		f.writer.Wait()
		f.s.Destroy()
		err = f.tun.Close()
		st := f.Stats()
		f.log.Info("flow terminator closed", "flows", st.Total, "refused", st.Refused, "unreachable", st.Unreachable,
			"prohibited", st.Prohibited, "at_limit", st.AtLimit, "passed_through", st.PassedThrough,
			"bytes_up", st.BytesUp, "bytes_down", st.BytesDown)
	})
	return err
}

// abortEndpoints aborts every connection the stack holds.
func (f *FlowTerminator) abortEndpoints() {
	for _, e := range f.s.RegisteredEndpoints() {
		e.Abort()
	}
}

package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// The application's addresses, and a destination beyond the tunnel.
var (
	flowApp4 = netip.MustParsePrefix("198.18.0.2/32")
	flowApp6 = netip.MustParsePrefix("2001:2::2/128")
	flowDst4 = netip.MustParseAddrPort("198.18.1.1:80")
	flowDst6 = netip.MustParseAddrPort("[2001:2:1::1]:80")
)

// flowRig is an application (a Local stack, standing for the host's
// sockets behind the tun) with a terminator in front of its "tun", and a
// pump from the terminator to a tunnel channel the test reads.
type flowRig struct {
	app    *Local
	term   *FlowTerminator
	tunnel *relaytest.Dev
	stop   func()
}

// connect is the application's connection to dst through the
// terminator, made within d or the test fails; the test's end closes it.
func (r *flowRig) connect(t *testing.T, dst netip.AddrPort, d time.Duration) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := r.app.DialTCP(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newFlowRig(t *testing.T, cfg FlowConfig) *flowRig {
	t.Helper()
	app, err := NewLocal(LocalConfig{Addresses: []netip.Prefix{flowApp4, flowApp6}})
	if err != nil {
		t.Fatal(err)
	}
	term, err := NewFlowTerminator(app, cfg)
	if err != nil {
		app.Close()
		t.Fatal(err)
	}
	tunnel := relaytest.New(1500, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.NewPump(term, tunnel, nil, nil, nil).Run(ctx) }()
	r := &flowRig{app: app, term: term, tunnel: tunnel}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("pump: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

// dialLoopback dials the loopback server at to, whatever the destination.
func dialLoopback(to netip.AddrPort) func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	return func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", to.String())
	}
}

func TestFlowTransfer(t *testing.T) {
	srv := tcpListener(t, "tcp4", "127.0.0.1:0")
	for _, dst := range []netip.AddrPort{flowDst4, flowDst6} {
		t.Run(dst.Addr().String(), func(t *testing.T) {
			r := newFlowRig(t, FlowConfig{Dial: dialLoopback(srv)})
			c := r.connect(t, dst, 20*time.Second)
			up := make([]byte, 4<<20)
			rand.Read(up)
			go func() {
				c.Write(up)
				c.(interface{ CloseWrite() error }).CloseWrite() // the server answers at EOF
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			want := append([]byte("got:"), up...)
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Fatalf("got %d bytes, want %d, not the same", len(got), len(want))
			}
			st := r.term.Stats()
			if st.BytesUp != uint64(len(up)) || st.BytesDown != uint64(len(want)) || st.Total != 1 {
				t.Errorf("stats %+v: want %d up, %d down, 1 flow", st, len(up), len(want))
			}
		})
	}
}

// TestFlowHalfCloseFromServer: the destination ends its side first; the
// application still sends, and the destination reads all of it.
func TestFlowHalfCloseFromServer(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	down := make([]byte, 1<<20)
	rand.Read(down)
	gotUp := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			gotUp <- nil
			return
		}
		defer c.Close()
		c.Write(down)
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		gotUp <- b
	}()
	r := newFlowRig(t, FlowConfig{Dial: dialLoopback(l.Addr().(*net.TCPAddr).AddrPort())})
	c := r.connect(t, flowDst4, 20*time.Second)
	got, err := io.ReadAll(c) // ends at the destination's half-close
	if err != nil || !bytes.Equal(got, down) {
		t.Fatalf("read %d bytes, err %v: want the %d the server sent", len(got), err, len(down))
	}
	up := make([]byte, 1<<20)
	rand.Read(up)
	if _, err := c.Write(up); err != nil {
		t.Fatalf("write after the server's half-close: %v", err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	select {
	case b := <-gotUp:
		if !bytes.Equal(b, up) {
			t.Fatalf("server read %d bytes, want the %d sent", len(b), len(up))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the server never saw the application's data and EOF")
	}
}

// A stream that breaks (its destination reset it, or the SSH connection
// went) resets the application's connection rather than ending it
// cleanly: the application must not take a cut transfer for a whole one.
func TestFlowStreamResetResetsApplication(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("partial"))
		time.Sleep(100 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0) // Close sends a reset
		c.Close()
	}()
	r := newFlowRig(t, FlowConfig{Dial: dialLoopback(l.Addr().(*net.TCPAddr).AddrPort())})
	c := r.connect(t, flowDst4, 10*time.Second)
	got, err := io.ReadAll(c)
	if string(got) != "partial" || !errors.Is(err, syscall.ECONNRESET) && (err == nil || !strings.Contains(err.Error(), "reset")) {
		t.Fatalf("read %q, %v: want the partial data, then a reset", got, err)
	}
}

func TestFlowRefused(t *testing.T) {
	r := newFlowRig(t, FlowConfig{Dial: func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
		return nil, fmt.Errorf("open direct-tcpip: %w", ErrFlowRefused)
	}})
	for _, dst := range []netip.AddrPort{flowDst4, flowDst6} {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := r.app.DialTCP(ctx, dst)
		cancel()
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v, want ECONNREFUSED", dst, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("dial %s failed after %v, want well under a second", dst, d)
		}
	}
	if st := r.term.Stats(); st.Refused != 2 || st.Active != 0 {
		t.Errorf("stats %+v: want 2 refused, none active", st)
	}
}

// neverAnswers is a Dial whose server never answers.
func neverAnswers(ctx context.Context, _, _ netip.AddrPort) (net.Conn, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// An IPv4 application learns EHOSTUNREACH at the dial timeout. (gVisor
// ignores ICMPv6 "address unreachable", which Linux turns into
// EHOSTUNREACH: TestFlowDialTimeoutICMPv6 checks the message itself.)
func TestFlowDialTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	r := newFlowRig(t, FlowConfig{DialTimeout: timeout, Dial: neverAnswers})
	for _, dst := range []netip.AddrPort{flowDst4, flowDst4} { // twice: a failed flow is forgotten
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := r.app.DialTCP(ctx, dst)
		cancel()
		if !errors.Is(err, syscall.EHOSTUNREACH) {
			t.Fatalf("dial %s: %v, want EHOSTUNREACH", dst, err)
		}
		if d := time.Since(start); d > timeout+time.Second {
			t.Errorf("dial %s failed after %v, want about the dial timeout %v", dst, d, timeout)
		}
	}
	if st := r.term.Stats(); st.Unreachable != 2 || st.Active != 0 {
		t.Errorf("stats %+v: want 2 unreachable, none active", st)
	}
}

// TestFlowDialTimeoutICMPv6: an IPv6 SYN whose dial times out is answered
// with ICMPv6 address unreachable from its destination, quoting it, with
// a valid checksum.
func TestFlowDialTimeoutICMPv6(t *testing.T) {
	const timeout = 100 * time.Millisecond
	f, tun := newRawTerminator(t, FlowConfig{DialTimeout: timeout, Dial: neverAnswers})
	reader(f)
	src := netip.AddrPortFrom(flowApp6.Addr(), 40000)
	syn := synPacket(src, flowDst6, header.TCPFlagSyn)
	tun.Inject(syn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := tun.Recv(ctx)
	if err != nil {
		t.Fatalf("no answer to a SYN whose dial timed out: %v", err)
	}
	ip := header.IPv6(p)
	icmp := header.ICMPv6(ip.Payload())
	if ip.SourceAddress() != addrTo(flowDst6.Addr()) || ip.DestinationAddress() != addrTo(src.Addr()) ||
		icmp.Type() != header.ICMPv6DstUnreachable || icmp.Code() != header.ICMPv6AddressUnreachable ||
		!bytes.Equal(icmp[header.ICMPv6ErrorHeaderSize:], syn) {
		t.Fatalf("got %x, want ICMPv6 address unreachable from %s quoting the SYN", p, flowDst6.Addr())
	}
	payload := icmp[header.ICMPv6ErrorHeaderSize:]
	if icmp.Checksum() != header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp[:header.ICMPv6ErrorHeaderSize],
		Src: ip.SourceAddress(), Dst: ip.DestinationAddress(), PayloadCsum: checksum.Checksum(payload, 0), PayloadLen: len(payload)}) {
		t.Error("the ICMPv6 checksum is wrong")
	}
	if st := f.Stats(); st.Unreachable != 1 || st.Active != 0 {
		t.Errorf("stats %+v: want 1 unreachable, none active", st)
	}
}

// synPacket is a SYN from src to dst.
func synPacket(src, dst netip.AddrPort, flags header.TCPFlags) []byte {
	ipLen := header.IPv4MinimumSize
	if src.Addr().Is6() {
		ipLen = header.IPv6MinimumSize
	}
	p := make([]byte, ipLen+header.TCPMinimumSize)
	writeIP(p, src.Addr(), dst.Addr(), header.TCPProtocolNumber, header.TCPMinimumSize)
	tcp := header.TCP(p[ipLen:])
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1000, DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 65535})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addrTo(src.Addr()), addrTo(dst.Addr()), header.TCPMinimumSize)
	tcp.SetChecksum(^tcp.CalculateChecksum(xsum))
	return p
}

// reader reads d as a pump does, until it fails, and passes on copies
// of the packets.
func reader(d relay.Device) <-chan []byte {
	out := make(chan []byte, 1024)
	go func() {
		defer close(out)
		bufs := make([][]byte, d.BatchSize())
		sizes := make([]int, len(bufs))
		for i := range bufs {
			bufs[i] = make([]byte, relay.Headroom+d.MTU())
		}
		for {
			n, err := d.Read(bufs, sizes, relay.Headroom)
			if err != nil {
				return
			}
			for i := range n {
				out <- bytes.Clone(bufs[i][relay.Headroom : relay.Headroom+sizes[i]])
			}
		}
	}()
	return out
}

// next is the next packet from a reader.
func next(t *testing.T, r <-chan []byte) []byte {
	t.Helper()
	select {
	case p := <-r:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no packet from Read")
		return nil
	}
}

// newRawTerminator is a terminator in front of an in-memory tun whose
// packets the test writes and reads itself.
func newRawTerminator(t *testing.T, cfg FlowConfig) (*FlowTerminator, *relaytest.Dev) {
	t.Helper()
	tun := relaytest.New(1500, 64)
	f, err := NewFlowTerminator(tun, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, tun
}

func TestFlowPassesOtherProtocols(t *testing.T) {
	f, tun := newRawTerminator(t, FlowConfig{Dial: func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
		t.Error("dialled for a packet that is not TCP")
		return nil, errors.New("no")
	}})
	udp := relaytest.IPv4("a datagram")
	icmp := relaytest.IPv4("an echo")
	icmp[9] = uint8(header.ICMPv4ProtocolNumber)
	icmp6 := make([]byte, header.IPv6MinimumSize+8)
	header.IPv6(icmp6).Encode(&header.IPv6Fields{PayloadLength: 8, TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: 64,
		SrcAddr: addrTo(flowApp6.Addr()), DstAddr: addrTo(flowDst6.Addr())})
	want := [][]byte{udp, icmp, icmp6}
	for _, p := range want {
		tun.Inject(p)
	}
	out := reader(f)
	for i := range want {
		if got := next(t, out); !bytes.Equal(got, want[i]) {
			t.Errorf("packet %d: got %x, want %x", i, got, want[i])
		}
	}
	if st := f.Stats(); st.PacketsToStack != 0 {
		t.Errorf("stats %+v: want no packet in the stack", st)
	}
}

func TestFlowProhibitedPassesThrough(t *testing.T) {
	dials := make(chan struct{}, 10)
	f, tun := newRawTerminator(t, FlowConfig{Dial: func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
		dials <- struct{}{}
		return nil, fmt.Errorf("open direct-tcpip: %w", ErrFlowProhibited)
	}})
	src := netip.AddrPortFrom(flowApp4.Addr(), 40000)
	syn := synPacket(src, flowDst4, header.TCPFlagSyn)
	tun.Inject(syn)
	out := reader(f)
	<-dials
	// The dial's refusal comes while Read waits on the tun: the held SYN
	// goes out with the tun's next packets (the application's retransmit).
	for f.Stats().Prohibited == 0 {
		time.Sleep(time.Millisecond)
	}
	ack := synPacket(src, flowDst4, header.TCPFlagAck)
	tun.Inject(syn)
	tun.Inject(ack)
	// The held SYN goes out on the Read after the one that waited.
	var syns, acks int
	for range 3 {
		switch got := next(t, out); {
		case bytes.Equal(got, syn):
			syns++
		case bytes.Equal(got, ack):
			acks++
		default:
			t.Errorf("got %x, want the SYN or the ACK", got)
		}
	}
	if syns != 2 || acks != 1 {
		t.Errorf("got %d SYNs and %d ACKs out of Read, want 2 and 1", syns, acks)
	}
	if len(dials) != 0 {
		t.Errorf("%d more dials after the server refused forwarding", len(dials))
	}
	if st := f.Stats(); st.PassedThrough != 3 || st.Prohibited != 1 || st.Active != 0 {
		t.Errorf("stats %+v: want 3 passed through, 1 prohibited, none active", st)
	}
}

// After Resume (a new SSH connection) a new connection is dialled again,
// while one that went as packets before goes on as packets: to the stack
// it is unknown, and it would reset it.
func TestFlowResumeKeepsPacketConnections(t *testing.T) {
	var dials atomic.Int32
	f, tun := newRawTerminator(t, FlowConfig{Dial: func(ctx context.Context, _, _ netip.AddrPort) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return nil, ErrFlowProhibited
		}
		<-ctx.Done() // the second stays pending
		return nil, ctx.Err()
	}})
	out := reader(f)
	old := netip.AddrPortFrom(flowApp4.Addr(), 40000)
	tun.Inject(synPacket(old, flowDst4, header.TCPFlagSyn))
	for f.Stats().Prohibited == 0 {
		time.Sleep(time.Millisecond)
	}
	f.Resume()
	ack := synPacket(old, flowDst4, header.TCPFlagAck)
	tun.Inject(ack)
	for {
		if p := next(t, out); bytes.Equal(p, ack) {
			break // the held SYN may come first
		}
	}
	tun.Inject(synPacket(netip.AddrPortFrom(flowApp4.Addr(), 40001), flowDst4, header.TCPFlagSyn))
	for dials.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	if st := f.Stats(); st.Active != 1 {
		t.Errorf("stats %+v: want the new connection dialling", st)
	}
}

func TestFlowMaxFlows(t *testing.T) {
	f, tun := newRawTerminator(t, FlowConfig{MaxFlows: 1, DialTimeout: time.Minute, Dial: func(ctx context.Context, _, _ netip.AddrPort) (net.Conn, error) {
		<-ctx.Done() // the first flow holds its slot
		return nil, ctx.Err()
	}})
	reader(f)
	first := netip.AddrPortFrom(flowApp4.Addr(), 40000)
	second := netip.AddrPortFrom(flowApp4.Addr(), 40001)
	tun.Inject(synPacket(first, flowDst4, header.TCPFlagSyn))
	tun.Inject(synPacket(first, flowDst4, header.TCPFlagSyn)) // a retransmit: held, not a flow
	tun.Inject(synPacket(second, flowDst4, header.TCPFlagSyn))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rst, err := tun.Recv(ctx)
	if err != nil {
		t.Fatalf("no reset for the SYN past the limit: %v", err)
	}
	ip := header.IPv4(rst)
	tcp := header.TCP(ip.Payload())
	if ip.SourceAddress() != addrTo(flowDst4.Addr()) || tcp.DestinationPort() != second.Port() ||
		tcp.Flags() != header.TCPFlagRst|header.TCPFlagAck || tcp.AckNumber() != 1001 {
		t.Fatalf("got %x, want a reset from %s to port %d acking 1001", rst, flowDst4, second.Port())
	}
	if !ip.IsChecksumValid() {
		t.Error("the reset's IPv4 checksum is wrong")
	}
	if st := f.Stats(); st.AtLimit != 1 || st.Active != 1 || st.Total != 1 || st.Held != 1 {
		t.Errorf("stats %+v: want 1 at the limit, 1 active of 1, 1 held", st)
	}
}

// TestFlowCloseLeavesNothing: Close ends a dial in flight and a carried
// connection, and every goroutine of the terminator's.
func TestFlowCloseLeavesNothing(t *testing.T) {
	base := runtime.NumGoroutine()
	srv := tcpListener(t, "tcp4", "127.0.0.1:0")
	slow := netip.MustParseAddrPort("198.18.1.2:80")
	var dialReturned, streamClosed atomic.Bool
	r := newFlowRig(t, FlowConfig{Dial: func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
		if dst == slow {
			defer dialReturned.Store(true)
			<-ctx.Done()
			time.Sleep(100 * time.Millisecond) // a dial takes a moment to stop
			return nil, ctx.Err()
		}
		c, err := dialLoopback(srv)(ctx, src, dst)
		if err != nil {
			return nil, err
		}
		return closeRecorder{c, &streamClosed}, nil
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := r.app.DialTCP(ctx, flowDst4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go r.app.DialTCP(ctx, slow)
	for r.term.Stats().Active < 2 {
		time.Sleep(time.Millisecond)
	}
	r.stop() // the pump closes the terminator, which closes the app's tun
	// Close waited for the dial and for the connection's copies.
	if !dialReturned.Load() || !streamClosed.Load() {
		t.Errorf("Close returned before the dial (returned %v) or the connection (stream closed %v) ended", dialReturned.Load(), streamClosed.Load())
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the carried connection survived Close")
	}
	c.Close()
	cancel()
	settleGoroutines(t, base+1) // the listener's, ended by its cleanup
}

// closeRecorder records that its connection was closed.
type closeRecorder struct {
	net.Conn
	closed *atomic.Bool
}

// Close takes a moment, as closing a channel does.
func (c closeRecorder) Close() error {
	time.Sleep(50 * time.Millisecond)
	c.closed.Store(true)
	return c.Conn.Close()
}

func (c closeRecorder) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// staticTun reads the same packets on every Read, without allocating.
type staticTun struct {
	*relaytest.Dev
	pkts [][]byte
}

func (s *staticTun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := min(len(bufs), len(s.pkts))
	for i := range n {
		sizes[i] = copy(bufs[i][offset:], s.pkts[i])
	}
	return n, nil
}

// The packets that go on to the tunnel cost Read no allocation: a batch
// of UDP and ICMP, sorted and returned in place.
func TestFlowReadAllocs(t *testing.T) {
	icmp := relaytest.IPv4("an echo")
	icmp[9] = uint8(header.ICMPv4ProtocolNumber)
	tun := &staticTun{Dev: relaytest.New(1500, 64), pkts: [][]byte{relaytest.IPv4("one"), icmp, relaytest.IPv4("two")}}
	f, err := NewFlowTerminator(tun, FlowConfig{Dial: neverAnswers})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bufs := make([][]byte, 64)
	sizes := make([]int, len(bufs))
	for i := range bufs {
		bufs[i] = make([]byte, relay.Headroom+1500)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := f.Read(bufs, sizes, relay.Headroom); n != 3 || err != nil {
			t.Fatalf("read %d, %v: want the 3 packets", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("Read allocates %v times a batch, want 0", allocs)
	}
}

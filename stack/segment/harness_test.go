package segment

import (
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/sshvpn/sshvpn/relay"
)

// fakeInner is the client's stack as the segment sees it: Write records
// the packets it is given, Read returns what was queued (Inject, or put).
type fakeInner struct {
	mtu     int
	q       chan []byte
	mu      sync.Mutex
	written [][]byte
	closed  bool
	done    chan struct{}
	keep    bool // record what Write is given (off in benchmarks)
}

func newFakeInner() *fakeInner {
	return &fakeInner{mtu: 1500, q: make(chan []byte, 64), done: make(chan struct{}), keep: true}
}

func (f *fakeInner) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var p []byte
	select {
	case p = <-f.q:
	case <-f.done:
		return 0, net.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case p = <-f.q:
		default:
			return n, nil
		}
	}
}

func (f *fakeInner) Write(bufs [][]byte, offset int) (int, error) {
	if f.keep {
		f.mu.Lock()
		for _, b := range bufs {
			f.written = append(f.written, slices.Clone(b[offset:]))
		}
		f.mu.Unlock()
	}
	return len(bufs), nil
}

func (f *fakeInner) Inject(p []byte) bool {
	select {
	case f.q <- slices.Clone(p):
		return true
	default:
		return false
	}
}

func (f *fakeInner) BatchSize() int { return 8 }
func (f *fakeInner) MTU() int       { return f.mtu }
func (f *fakeInner) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
	return nil
}

// takeWritten returns what reached the stack since the last call.
func (f *fakeInner) takeWritten() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.written
	f.written = nil
	return w
}

// fakeClock runs timers when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c      *fakeClock
	at     time.Time
	f      func()
	active bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f, active: true}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.at, t.active = t.c.now.Add(d), true
	return was
}

// advance moves the clock by d, firing every timer that falls due, in
// order, each at its own time.
func (c *fakeClock) advance(d time.Duration) {
	end := c.Now().Add(d)
	for {
		c.mu.Lock()
		var due []*fakeTimer
		for _, t := range c.timers {
			if t.active && !t.at.After(end) {
				due = append(due, t)
			}
		}
		if len(due) == 0 {
			c.now = end
			c.mu.Unlock()
			return
		}
		sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
		t := due[0]
		c.now, t.active = t.at, false
		c.mu.Unlock()
		t.f()
	}
}

// The test segment's addressing: the default subnets' shape in the
// benchmarking ranges.
var (
	gw4       = netip.MustParseAddr("198.18.0.1")
	dns4      = netip.MustParseAddr("198.18.0.53")
	lease     = netip.MustParsePrefix("198.18.200.7/16")
	gw6       = netip.MustParseAddr("2001:2::1")
	stable6   = netip.MustParsePrefix("2001:2::8000:1234/64")
	clientMAC = mac{0x02, 0, 0, 0, 0, 0x42}
	otherMAC  = mac{0x02, 0, 0, 0, 0, 0x99}
	gwMAC     = mac(DefaultMAC)
	llClient  = netip.MustParseAddr("fe80::42")
	bcast     = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

type rig struct {
	t     testing.TB
	seg   *Segment
	inner *fakeInner
	clock *fakeClock
	dhcp  []([]byte)
}

func newRig(t testing.TB, mod func(*Config)) *rig {
	t.Helper()
	r := &rig{t: t, inner: newFakeInner(), clock: newFakeClock()}
	cfg := Config{
		Inner: r.inner, Injector: r.inner, Local: []netip.Addr{gw4, gw6, dns4},
		Lease: lease, Addr6: stable6, DNS: []netip.Addr{gw4, gw6}, Domains: []string{"corp.example"},
		Clock: r.clock,
		DHCP: func(msg []byte, now time.Time) (DHCPReply, bool, error) {
			r.dhcp = append(r.dhcp, slices.Clone(msg))
			return DHCPReply{Payload: []byte("offer:" + string(msg)), Dst: bcast}, true, nil
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.seg = s
	t.Cleanup(func() { s.Close() })
	r.drain() // the first, unsolicited advertisement
	return r
}

// write gives the segment frames from the client, with headroom.
func (r *rig) write(frames ...[]byte) {
	r.t.Helper()
	bufs := make([][]byte, len(frames))
	for i, f := range frames {
		bufs[i] = append(make([]byte, relay.Headroom), f...)
	}
	if n, err := r.seg.Write(bufs, relay.Headroom); err != nil || n != len(frames) {
		r.t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(frames))
	}
}

// read returns the frames the segment has for the client now.
func (r *rig) read() [][]byte {
	r.t.Helper()
	var out [][]byte
	for len(r.inner.q) > 0 {
		bufs, sizes := make([][]byte, 8), make([]int, 8)
		for i := range bufs {
			bufs[i] = make([]byte, relay.Headroom+HeaderLen+r.inner.mtu)
		}
		done := make(chan struct{})
		var n int
		var err error
		go func() { n, err = r.seg.Read(bufs, sizes, relay.Headroom); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			r.t.Fatal("Read blocked: everything queued was dropped")
		}
		if err != nil {
			r.t.Fatal(err)
		}
		for i := range n {
			out = append(out, slices.Clone(bufs[i][relay.Headroom:relay.Headroom+sizes[i]]))
		}
	}
	return out
}

func (r *rig) drain() { r.read() }

// Frame builders, from gVisor's header package.

func eth(dst, src mac, et tcpip.NetworkProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{DstAddr: tcpip.LinkAddress(dst[:]), SrcAddr: tcpip.LinkAddress(src[:]), Type: et})
	copy(b[header.EthernetMinimumSize:], payload)
	return b
}

func arpRequestFor(sender mac, from, target netip.Addr) []byte {
	b := make([]byte, header.ARPSize)
	a := header.ARP(b)
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), sender[:])
	copy(a.ProtocolAddressSender(), from.AsSlice())
	copy(a.ProtocolAddressTarget(), target.AsSlice())
	return b
}

func ipv4Packet(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(proto),
		SrcAddr: tcpip.AddrFromSlice(src.AsSlice()), DstAddr: tcpip.AddrFromSlice(dst.AsSlice())})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(b[header.IPv4MinimumSize:], payload)
	return b
}

func udp4(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, header.UDPMinimumSize+len(payload))
	header.UDP(u).Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice()), uint16(len(u)))
	header.UDP(u).SetChecksum(^checksum.Checksum(u, xsum))
	return ipv4Packet(src, dst, header.UDPProtocolNumber, u)
}

func ipv6Raw(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, hop uint8, payload []byte) []byte {
	b := make([]byte, header.IPv6MinimumSize+len(payload))
	header.IPv6(b).Encode(&header.IPv6Fields{PayloadLength: uint16(len(payload)), TransportProtocol: proto, HopLimit: hop,
		SrcAddr: tcpip.AddrFromSlice(src.AsSlice()), DstAddr: tcpip.AddrFromSlice(dst.AsSlice())})
	copy(b[header.IPv6MinimumSize:], payload)
	return b
}

// tcp6 and tcp4 are a bare TCP SYN header: enough for source checks.
func tcpSYN() []byte {
	t := make([]byte, header.TCPMinimumSize)
	header.TCP(t).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn, WindowSize: 65535})
	return t
}

func ip4Frame(src, dst netip.Addr) []byte {
	return eth(gwMAC, clientMAC, header.IPv4ProtocolNumber, ipv4Packet(src, dst, header.TCPProtocolNumber, tcpSYN()))
}

func ip6Frame(src, dst netip.Addr) []byte {
	return eth(gwMAC, clientMAC, header.IPv6ProtocolNumber, ipv6Raw(src, dst, header.TCPProtocolNumber, 64, tcpSYN()))
}

func lmac(a tcpip.LinkAddress) mac { return mac([]byte(a)) }

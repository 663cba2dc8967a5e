package stack

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// ListenUDP opens a UDP socket on an ephemeral port of the tunnel's
// addresses, one endpoint per family behind one net.PacketConn: WriteTo
// sends from the destination's family's, ReadFrom returns the datagrams of
// both with their real source (a *net.UDPAddr). A SOCKS5 UDP ASSOCIATE
// relays through one. The port is the same in both families when it is
// free in both.
func (l *Local) ListenUDP(ctx context.Context) (net.PacketConn, error) {
	if !l.calls.begin() {
		return nil, listenError(net.ErrClosed)
	}
	defer l.calls.done()
	if err := ctx.Err(); err != nil {
		return nil, listenError(err)
	}
	c := &localUDP{l: l, ready: make(chan struct{}, 1), closed: make(chan struct{})}
	c.rd.init()
	c.wd.init()
	var port uint16
	for i, proto := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
		s, err := c.open(proto, port)
		if err != nil {
			c.Close()
			return nil, listenError(err)
		}
		c.fam[i] = s
		port = s.port
	}
	c.port = c.fam[0].port
	return c, nil
}

func listenError(err error) error { return &net.OpError{Op: "listen", Net: "udp", Err: err} }

// localUDP is ListenUDP's socket. Both endpoints wake one channel, so one
// ReadFrom waits for either; it is registered for the socket's lifetime,
// so a datagram that arrives between a read and the wait is never missed.
type localUDP struct {
	l     *Local
	fam   [2]*udpSocket // IPv4, IPv6
	port  uint16
	ready chan struct{} // a datagram may be waiting

	readMu sync.Mutex
	next   int // the family read first, alternated for fairness

	rd, wd deadline

	closeOnce sync.Once
	closed    chan struct{}
}

// udpSocket is one family's endpoint.
type udpSocket struct {
	ep    tcpip.Endpoint
	wq    waiter.Queue
	entry waiter.Entry
	port  uint16
}

// open makes proto's endpoint, on port when it is free (0: any).
func (c *localUDP) open(proto tcpip.NetworkProtocolNumber, port uint16) (*udpSocket, error) {
	s := &udpSocket{}
	ep, terr := c.l.s.NewEndpoint(udp.ProtocolNumber, proto, &s.wq)
	if terr != nil {
		return nil, errnoOf(terr)
	}
	if proto == ipv6.ProtocolNumber {
		ep.SocketOptions().SetV6Only(true) // IPv4 has its own endpoint
	}
	terr = ep.Bind(tcpip.FullAddress{Port: port})
	if terr != nil && port != 0 {
		terr = ep.Bind(tcpip.FullAddress{})
	}
	if terr != nil {
		ep.Close()
		return nil, errnoOf(terr)
	}
	la, terr := ep.GetLocalAddress()
	if terr != nil {
		ep.Close()
		return nil, errnoOf(terr)
	}
	s.ep, s.port = ep, la.Port
	s.entry = waiter.NewFunctionEntry(waiter.ReadableEvents, func(waiter.EventMask) {
		select {
		case c.ready <- struct{}{}:
		default:
		}
	})
	s.wq.EventRegister(&s.entry)
	return s, nil
}

// ReadFrom implements net.PacketConn. A datagram larger than b is cut to
// it, as recvfrom(2) does.
func (c *localUDP) ReadFrom(b []byte) (int, net.Addr, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.isClosed() {
			return 0, nil, c.opError("read", nil, net.ErrClosed)
		}
		for range 2 {
			s := c.fam[c.next]
			c.next ^= 1
			w := tcpip.SliceWriter(b)
			res, terr := s.ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
			switch terr.(type) {
			case nil:
				ap := netip.AddrPortFrom(addrFrom(res.RemoteAddr.Addr), res.RemoteAddr.Port)
				return res.Count, net.UDPAddrFromAddrPort(ap), nil
			case *tcpip.ErrWouldBlock:
			case *tcpip.ErrClosedForReceive:
				return 0, nil, c.opError("read", nil, net.ErrClosed)
			default:
				return 0, nil, c.opError("read", nil, errnoOf(terr))
			}
		}
		select {
		case <-c.ready:
		case <-c.rd.passed():
			return 0, nil, c.opError("read", nil, os.ErrDeadlineExceeded)
		case <-c.closed:
		case <-c.l.ctx.Done():
		}
	}
}

// WriteTo implements net.PacketConn; addr is a *net.UDPAddr. A
// destination of a family the tunnel has no address of fails at once.
func (c *localUDP) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opError("write", addr, syscall.EAFNOSUPPORT)
	}
	dst := ua.AddrPort()
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if err := c.l.hasFamily(dst.Addr()); err != nil {
		return 0, c.opError("write", addr, err)
	}
	s := c.fam[0]
	if dst.Addr().Is6() {
		s = c.fam[1]
	}
	to := tcpip.FullAddress{Addr: addrTo(dst.Addr()), Port: dst.Port()}
	var r bytes.Reader
	for {
		if c.isClosed() || c.l.ctx.Err() != nil {
			return 0, c.opError("write", addr, net.ErrClosed)
		}
		select {
		case <-c.wd.passed():
			return 0, c.opError("write", addr, os.ErrDeadlineExceeded)
		default:
		}
		r.Reset(b)
		n, terr := s.ep.Write(&r, tcpip.WriteOptions{To: &to})
		if _, full := terr.(*tcpip.ErrWouldBlock); !full {
			if terr != nil {
				return int(n), c.opError("write", addr, errnoOf(terr))
			}
			return int(n), nil
		}
		if err := c.waitWritable(s, addr); err != nil {
			return 0, err
		}
	}
}

// waitWritable waits until s may take a datagram again, its deadline
// passes or the socket closes.
func (c *localUDP) waitWritable(s *udpSocket, addr net.Addr) error {
	entry, ch := waiter.NewChannelEntry(waiter.WritableEvents)
	s.wq.EventRegister(&entry)
	defer s.wq.EventUnregister(&entry)
	if s.ep.Readiness(waiter.WritableEvents) != 0 {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-c.wd.passed():
		return c.opError("write", addr, os.ErrDeadlineExceeded)
	case <-c.closed:
	case <-c.l.ctx.Done():
	}
	return c.opError("write", addr, net.ErrClosed)
}

func (c *localUDP) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *localUDP) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: err}
}

// Close implements net.PacketConn; it unblocks ReadFrom and WriteTo.
func (c *localUDP) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		close(c.closed)
		c.rd.stop()
		c.wd.stop()
		for _, s := range c.fam {
			if s != nil {
				s.wq.EventUnregister(&s.entry)
				s.ep.Close()
			}
		}
	})
	if !first {
		return c.opError("close", nil, net.ErrClosed)
	}
	return nil
}

// LocalAddr implements net.PacketConn: the port on every tunnel address,
// as a dual-stack socket bound to none shows it.
func (c *localUDP) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv6unspecified, Port: int(c.port)}
}

func (c *localUDP) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

func (c *localUDP) SetReadDeadline(t time.Time) error  { c.rd.set(t); return nil }
func (c *localUDP) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

// deadline is one direction's deadline: a channel closed when it passes,
// which a new deadline replaces.
type deadline struct {
	mu    sync.Mutex
	ch    chan struct{}
	timer *time.Timer
	gen   uint64 // which set a timer belongs to: a stale one closes nothing
}

func (d *deadline) init() { d.ch = make(chan struct{}) }

// set moves the deadline to t; zero means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	select {
	case <-d.ch:
		d.ch = make(chan struct{}) // the old one passed: a fresh start
	default:
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.ch)
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen {
			close(d.ch)
		}
	})
}

// passed is closed once the deadline has passed.
func (d *deadline) passed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
	}
}

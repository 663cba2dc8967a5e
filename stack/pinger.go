package stack

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// pingTimeout is how long an echo waits for the real host's reply: ping's
// own wait between echoes is 1 s, and a reply later than this counts lost.
const pingTimeout = 3 * time.Second

// What a client's echoes are charged to Limits.Memory: a pinger its reply
// buffer (one MTU) and its reader's stack; an echo its table entry and the
// reply it may bring, as large as its request.
const (
	pingerCost = 8 << 10
	echoCost   = 128
)

// maxICMPInFlight is the most echoes a client may have in flight, however
// Limits are set: one pinger's sequence numbers must tell them apart.
const maxICMPInFlight = 1<<16 - 1

// pingConn is one unprivileged ping socket (or a test's stand-in). The
// kernel gives it an ident of its own, writes it into every request, and
// delivers it only the replies that carry it.
type pingConn interface {
	// send writes one ICMP message to dst without ever blocking: a full
	// socket buffer is an error, and the echo is lost as on a full link.
	send(msg []byte, dst netip.Addr) error
	// recv reads one ICMP message and the address it came from.
	recv(b []byte) (int, netip.Addr, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// pingers are a client's two ping sockets, opened at its first echo of
// each family.
type pingers struct {
	mu     sync.Mutex
	v4, v6 *pinger
}

// pinger forwards one client's echoes of one family through one ping
// socket. The requests go out with sequence numbers of its own; pending
// maps each to the client's echo, so the reply goes back with the client's
// ident and sequence, from the address the client pinged. One goroutine
// reads the replies and expires what waited pingTimeout; nothing is
// allocated per echo but the reply packet.
type pinger struct {
	c    *client
	v6   bool
	conn pingConn
	buf  []byte // the reader's: one message of up to the MTU

	mu      sync.Mutex
	next    uint16          // the sequence number to try next
	pending map[uint16]echo // by our sequence number
	expiry  time.Time       // no pending echo expires before it; zero when none pends
	msg     []byte          // the request being sent
}

// echo is one request waiting for its reply.
type echo struct {
	guest, dst tcpip.Address // the client, and the address it pinged
	to         netip.Addr    // where the request went (dst, or pingTarget's)
	ident, seq uint16        // the client's
	cost       int64
	expires    time.Time
}

// pinger returns the client's pinger for the family, opening it first
// when this is the family's first echo; nil when it cannot be opened (the
// client is leaving, is at its memory limit, or the host refused a socket).
func (c *client) pinger(v6 bool) *pinger {
	c.pings.mu.Lock()
	defer c.pings.mu.Unlock()
	slot := &c.pings.v4
	if v6 {
		slot = &c.pings.v6
	}
	if *slot == nil {
		*slot = c.openPinger(v6)
	}
	return *slot
}

func (c *client) openPinger(v6 bool) *pinger {
	mtu := int(c.ep.MTU())
	cost := int64(pingerCost + mtu)
	if !c.mem.take(cost) {
		return nil
	}
	conn, err := c.listenPing(v6)
	if err != nil {
		c.mem.give(cost)
		if _, seen := c.warned.LoadOrStore("ping socket", struct{}{}); !seen {
			c.log.Warn("cannot open a ping socket: this client's echoes get no replies until one opens", "ipv6", v6, "err", err)
		}
		return nil
	}
	p := &pinger{c: c, v6: v6, conn: conn, buf: make([]byte, mtu), pending: map[uint16]echo{}}
	if !c.group.track(conn) { // the client is leaving: track closed it
		c.mem.give(cost)
		return nil
	}
	if !c.group.begin() {
		c.group.untrack(conn)
		conn.Close()
		c.mem.give(cost)
		return nil
	}
	go p.read()
	return p
}

// send forwards one echo, or drops it (counted) at the client's limits or
// when the socket refuses it. It never blocks: it runs on the client's
// inbound path.
func (p *pinger) send(e echo, payload []byte) {
	c := p.c
	if n := c.stats.ICMPInFlight.Add(1); n > int64(c.limits.ICMPInFlight) {
		c.stats.ICMPInFlight.Add(-1)
		c.stats.ICMPInFlightFull.Add(1)
		c.warnLimit("icmp in flight", c.limits.ICMPInFlight)
		return
	}
	e.cost = echoCost + int64(len(payload))
	if !c.mem.take(e.cost) {
		c.stats.ICMPInFlight.Add(-1)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	seq := p.next
	for _, used := p.pending[seq]; used; _, used = p.pending[seq] {
		seq++
	}
	p.next = seq + 1
	p.msg = append(p.msg[:0], make([]byte, 8)...)
	p.msg[0] = byte(header.ICMPv4Echo)
	if p.v6 {
		p.msg[0] = byte(header.ICMPv6EchoRequest)
	}
	p.msg[6], p.msg[7] = byte(seq>>8), byte(seq)
	p.msg = append(p.msg, payload...)
	if err := p.conn.send(p.msg, e.to); err != nil {
		c.stats.ICMPInFlight.Add(-1)
		c.mem.give(e.cost)
		c.stats.ICMPNoReply.Add(1)
		return
	}
	e.expires = time.Now().Add(c.pingTimeout)
	p.pending[seq] = e
	if p.expiry.IsZero() {
		p.expiry = e.expires
		p.conn.SetReadDeadline(e.expires)
	}
}

// read delivers replies and expires echoes until the socket is closed.
func (p *pinger) read() {
	defer p.c.group.done()
	for {
		n, from, err := p.conn.recv(p.buf)
		switch {
		case err == nil:
			p.reply(p.buf[:n], from)
		case errors.Is(err, net.ErrClosed):
			return
		}
		// Anything else is a deadline (the next expiry) or an error the
		// kernel reports once (an ICMP error for an earlier request).
		p.expire(time.Now())
	}
}

// reply answers the client whose echo msg answers, if one waits for it.
func (p *pinger) reply(msg []byte, from netip.Addr) {
	typ := byte(header.ICMPv4EchoReply)
	if p.v6 {
		typ = byte(header.ICMPv6EchoReply)
	}
	if len(msg) < 8 || msg[0] != typ {
		return
	}
	seq := uint16(msg[6])<<8 | uint16(msg[7])
	p.mu.Lock()
	e, ok := p.pending[seq]
	if ok && e.to == from.Unmap() {
		delete(p.pending, seq)
	}
	p.mu.Unlock()
	if !ok || e.to != from.Unmap() {
		return // late (the client counts it lost) or not from the host pinged
	}
	c := p.c
	c.mem.give(e.cost)
	c.stats.ICMPInFlight.Add(-1)
	pkt := echoReply(p.v6, e, msg[8:])
	if c.ep.queue(pkt) {
		c.stats.ICMPReplies.Add(1)
	}
	pkt.DecRef() // the queue holds its own reference
}

// expire drops the echoes whose time is up and sets the reader's deadline
// to the next expiry.
func (p *pinger) expire(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.expiry.IsZero() || now.Before(p.expiry) {
		return
	}
	c := p.c
	var next time.Time
	for seq, e := range p.pending {
		if !now.Before(e.expires) {
			delete(p.pending, seq)
			c.mem.give(e.cost) // before the counters, which tests wait on
			c.stats.ICMPInFlight.Add(-1)
			c.stats.ICMPNoReply.Add(1) // never a fake reply
		} else if next.IsZero() || e.expires.Before(next) {
			next = e.expires
		}
	}
	p.expiry = next
	p.conn.SetReadDeadline(next)
}

// sysPing is a real unprivileged ping socket.
type sysPing struct {
	*net.UDPConn
	raw  syscall.RawConn
	v6   bool
	msg  []byte
	sa4  syscall.SockaddrInet4
	sa6  syscall.SockaddrInet6
	err  error
	emit func(fd uintptr) bool // sendto of msg, made once: a closure per send would allocate
}

// listenPing opens an unprivileged ping socket (Linux: the process's group
// is in net.ipv4.ping_group_range, which covers IPv6 too).
func listenPing(v6 bool) (pingConn, error) {
	family, proto := syscall.AF_INET, syscall.IPPROTO_ICMP
	var sa syscall.Sockaddr = &syscall.SockaddrInet4{}
	if v6 {
		family, proto, sa = syscall.AF_INET6, syscall.IPPROTO_ICMPV6, &syscall.SockaddrInet6{}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_DGRAM, proto)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	f := os.NewFile(uintptr(fd), "ping")
	pc, err := net.FilePacketConn(f) // a duplicate, non-blocking and polled
	f.Close()
	if err != nil {
		return nil, err
	}
	u, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, errors.New("ping socket: not a datagram socket")
	}
	raw, err := u.SyscallConn()
	if err != nil {
		u.Close()
		return nil, err
	}
	s := &sysPing{UDPConn: u, raw: raw, v6: v6}
	s.emit = s.sendto
	return s, nil
}

func (s *sysPing) send(msg []byte, dst netip.Addr) error {
	s.msg = msg
	if s.v6 {
		s.sa6.Addr = dst.As16()
	} else {
		s.sa4.Addr = dst.Unmap().As4()
	}
	if err := s.raw.Write(s.emit); err != nil {
		return err
	}
	return s.err
}

// sendto runs once per send: returning true tells the poller not to wait
// for the socket to become writable.
func (s *sysPing) sendto(fd uintptr) bool {
	var sa syscall.Sockaddr = &s.sa4
	if s.v6 {
		sa = &s.sa6
	}
	s.err = syscall.Sendto(int(fd), s.msg, 0, sa)
	return true
}

func (s *sysPing) recv(b []byte) (int, netip.Addr, error) {
	n, from, err := s.ReadFromUDPAddrPort(b)
	return n, from.Addr(), err
}

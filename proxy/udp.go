package proxy

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// udpBufSize holds the largest UDP payload with the largest header in
// front of it. Each association holds two for its life, one per loop
// blocked in a read (a socket offers no "datagram ready" without a buffer
// to read it into): about 130 KiB and three goroutines per association,
// which maxAssociations bounds per listener.
const udpBufSize = 64<<10 + maxUDPHeader

// maxAssociations bounds UDP associations per listener: a DNS resolver or
// a game holds one or two, and 128 of them take about 16 MiB of buffers.
const maxAssociations = 128

// numRemembered is how many refused source ports an association
// remembers, so that a flood from a few sockets costs one owner lookup
// each rather than one per datagram.
const numRemembered = 8

var udpBufs = sync.Pool{New: func() any { return new([udpBufSize]byte) }}

// association is one SOCKS5 UDP ASSOCIATE: a local socket facing the
// client, one far socket, and a goroutine each way. It lives as long as
// its control connection.
type association struct {
	cn       *conn
	ctx      context.Context
	local    *net.UDPConn
	far      net.PacketConn
	clientIP netip.Addr
	// clientPort is the one source port accepted, 0 until the association
	// locks onto one: the port the client named (namedPort), else the
	// first seen, and on loopback only once its socket's owner is the
	// control connection's (checkOwner, ownerUID, ownerErr).
	clientPort atomic.Uint32
	namedPort  uint16
	checkOwner bool
	ownerUID   uint32
	ownerErr   error
	// refused holds the last source ports that failed the owner check.
	refused     [numRemembered]uint16
	refusedNext int
	// farAddr is reused for far sockets without WriteToUDPAddrPort, so a
	// datagram costs no allocation.
	farAddr net.UDPAddr
	farIP   [16]byte
	// lastName and lastAddr cache the last name resolved, the common case
	// of a client talking to one named server.
	lastName string
	lastAddr netip.Addr
}

// associate answers UDP ASSOCIATE, runs the association until the control
// connection closes or Serve ends, then tears it down.
func (cn *conn) associate(req request) {
	switch {
	case cn.refuse != nil:
		cn.reply5(SOCKS5Reply(cn.refuse), netip.AddrPort{})
		return
	case cn.s.cfg.UDP == nil:
		cn.s.udpOnce.Do(func() {
			cn.log.Info("proxy: SOCKS5 UDP ASSOCIATE answered 'command not supported'", "why", cn.s.cfg.UDPOff)
		})
		cn.reply5(socks5CmdUnsupported, netip.AddrPort{})
		return
	case !cn.takeAssociation():
		cn.reply5(SOCKS5Reply(errTooManyUDP), netip.AddrPort{})
		return
	}
	defer cn.l.associations.Add(-1)
	cn.handshakeDone()
	a, err := cn.newAssociation(req)
	if err != nil {
		cn.log.Debug("proxy: UDP ASSOCIATE failed", "client", cn.c.RemoteAddr(), "err", err)
		cn.reply5(SOCKS5Reply(err), netip.AddrPort{})
		return
	}
	defer a.local.Close()
	defer a.far.Close()
	bnd := a.local.LocalAddr().(*net.UDPAddr).AddrPort()
	if cn.reply5(socks5Succeeded, bnd) != nil {
		return
	}
	cn.c.SetDeadline(time.Time{})
	a.run()
}

// takeAssociation holds one of the listener's maxAssociations, or counts
// and reports the refusal.
func (cn *conn) takeAssociation() bool {
	if cn.l.associations.Add(1) <= maxAssociations {
		return true
	}
	cn.l.associations.Add(-1)
	cn.s.stats.udpRefused.Add(1)
	cn.warnOnce(&cn.l.warnedUDPLimit, "proxy: UDP ASSOCIATE refused: the listener is at its association limit",
		"listener", cn.c.LocalAddr(), "client", cn.c.RemoteAddr(), "max", maxAssociations)
	return false
}

func (cn *conn) newAssociation(req request) (*association, error) {
	remote, ok1 := cn.c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := cn.c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return nil, errors.New("UDP ASSOCIATE needs a TCP control connection")
	}
	a := &association{cn: cn, ctx: cn.o.ctx, clientIP: remote.AddrPort().Addr().Unmap(), namedPort: req.port}
	if a.clientIP.IsLoopback() {
		// Looked up now, while the client's socket is surely there.
		a.checkOwner = true
		a.ownerUID, a.ownerErr = tcpPeerOwner(remote.AddrPort(), local.AddrPort())
	}
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.AddrPort().Addr().Unmap().AsSlice()})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(cn.o.ctx, dialTimeout)
	defer cancel()
	far, err := cn.s.cfg.UDP.ListenUDP(ctx)
	if err != nil {
		l.Close()
		return nil, err
	}
	a.local, a.far = l, far
	return a, nil
}

// run relays until the control connection ends (its reads fail: EOF, a
// reset, or Serve closing it), then closes both sockets and waits for
// both loops.
func (a *association) run() {
	var wg sync.WaitGroup
	for _, loop := range []func(){a.toFar, a.toClient} {
		wg.Add(1)
		if !a.cn.o.spawn(func() { defer wg.Done(); loop() }) {
			wg.Done()
		}
	}
	// The control connection carries nothing more; what a client sends
	// there is read and dropped so its close is seen.
	a.cn.lim.n = math.MaxInt64
	io.Copy(io.Discard, a.cn.br)
	a.local.Close()
	a.far.Close()
	wg.Wait()
}

// toFar relays client datagrams to their destinations.
func (a *association) toFar() {
	st := &a.cn.s.stats
	buf := udpBufs.Get().(*[udpBufSize]byte)
	defer udpBufs.Put(buf)
	for {
		n, src, err := a.local.ReadFromUDPAddrPort(buf[:])
		if err != nil {
			return
		}
		if d, ok := a.admit(src); !ok {
			st.dropUDP(d)
			continue
		}
		h, err := parseUDPHeader(buf[:n])
		if err != nil {
			st.dropUDP(UDPDropMalformed)
			continue
		}
		if h.frag != 0 {
			st.dropUDP(UDPDropFragment)
			continue
		}
		dst := h.addr
		if !dst.IsValid() {
			if dst, err = a.resolve(buf[h.nameStart:h.nameEnd]); err != nil {
				st.dropUDP(UDPDropResolve)
				continue
			}
		}
		if err := a.writeFar(buf[h.n:n], netip.AddrPortFrom(dst.Unmap(), h.port)); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			st.dropUDP(UDPDropWrite)
			continue
		}
		st.udpOut.Add(1)
	}
}

// admit accepts src when it is the control connection's peer IP and the
// port the association locked onto. Before that it locks onto the port
// the client named, else the first port seen, and on loopback, where
// every local user shares the IP, only onto a port whose socket the
// control connection's owner holds. Only toFar calls it.
func (a *association) admit(src netip.AddrPort) (UDPDrop, bool) {
	if src.Addr().Unmap() != a.clientIP {
		return UDPDropForeign, false
	}
	p := uint16(a.clientPort.Load())
	switch {
	case p != 0 && p == src.Port():
		return 0, true
	case p != 0, a.namedPort != 0 && a.namedPort != src.Port():
		return UDPDropForeign, false
	}
	if !a.ownedByClient(src) {
		return UDPDropUnverified, false
	}
	a.clientPort.Store(uint32(src.Port()))
	return 0, true
}

// ownedByClient checks, once per source port, that the socket sending
// from src belongs to the control connection's owner; a lookup that
// fails refuses.
func (a *association) ownedByClient(src netip.AddrPort) bool {
	if !a.checkOwner {
		return true
	}
	for _, p := range a.refused {
		if p == src.Port() {
			return false
		}
	}
	err := a.ownerErr
	if err == nil {
		err = udpSenderOwnedBy(src, a.ownerUID)
	}
	if err == nil {
		return true
	}
	a.refused[a.refusedNext] = src.Port()
	a.refusedNext = (a.refusedNext + 1) % numRemembered
	a.cn.warnOnce(&a.cn.l.warnedUnverified, "proxy: UDP datagrams refused: their socket's owner is not the control connection's",
		"client", a.cn.c.RemoteAddr(), "source", src, "err", err)
	return false
}

// resolve looks a destination name up at the far end, remembering the
// last answer.
func (a *association) resolve(name []byte) (netip.Addr, error) {
	if a.lastAddr.IsValid() && string(name) == a.lastName {
		return a.lastAddr, nil
	}
	ctx, cancel := context.WithTimeout(a.ctx, dialTimeout)
	defer cancel()
	addrs, err := a.cn.s.cfg.UDP.LookupHost(ctx, string(name))
	if err != nil {
		return netip.Addr{}, err
	}
	if len(addrs) == 0 {
		return netip.Addr{}, errors.New("no address")
	}
	a.lastName, a.lastAddr = string(name), addrs[0]
	return addrs[0], nil
}

type addrPortWriter interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

type addrPortReader interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
}

func (a *association) writeFar(b []byte, dst netip.AddrPort) error {
	if w, ok := a.far.(addrPortWriter); ok {
		_, err := w.WriteToUDPAddrPort(b, dst)
		return err
	}
	if dst.Addr().Is4() {
		v := dst.Addr().As4()
		a.farAddr.IP = append(a.farIP[:0], v[:]...)
	} else {
		v := dst.Addr().As16()
		a.farAddr.IP = append(a.farIP[:0], v[:]...)
	}
	a.farAddr.Port = int(dst.Port())
	_, err := a.far.WriteTo(b, &a.farAddr)
	return err
}

func (a *association) readFar(b []byte) (int, netip.AddrPort, error) {
	if r, ok := a.far.(addrPortReader); ok {
		return r.ReadFromUDPAddrPort(b)
	}
	n, from, err := a.far.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	if u, ok := from.(*net.UDPAddr); ok {
		return n, u.AddrPort(), nil
	}
	ap, perr := netip.ParseAddrPort(from.String())
	return n, ap, perr
}

// toClient relays far datagrams to the client, each behind a header that
// names its real source, written in place in front of the payload.
func (a *association) toClient() {
	st := &a.cn.s.stats
	buf := udpBufs.Get().(*[udpBufSize]byte)
	defer udpBufs.Put(buf)
	for {
		n, from, err := a.readFar(buf[maxUDPHeader:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) || a.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// A broken far socket ends the association: closing the
			// control connection tells the client so.
			a.cn.log.Debug("proxy: far UDP socket failed", "client", a.cn.c.RemoteAddr(), "err", err)
			a.cn.c.Close()
			return
		}
		port := a.clientPort.Load()
		if port == 0 {
			st.dropUDP(UDPDropNoClient)
			continue
		}
		start := putUDPHeader(buf[:maxUDPHeader], from)
		if _, err := a.local.WriteToUDPAddrPort(buf[start:maxUDPHeader+n], netip.AddrPortFrom(a.clientIP, uint16(port))); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			st.dropUDP(UDPDropWrite)
			continue
		}
		st.udpIn.Add(1)
	}
}

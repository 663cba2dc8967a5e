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
// front of it.
const udpBufSize = 64<<10 + maxUDPHeader

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
	// clientPort is the one source port accepted: the one the client
	// named, else the first seen; 0 until then.
	clientPort atomic.Uint32
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
	if cn.s.cfg.UDP == nil || cn.refuse != nil {
		if cn.refuse == nil {
			cn.s.udpOnce.Do(func() {
				cn.log.Info("proxy: SOCKS5 UDP ASSOCIATE answered 'command not supported'", "why", cn.s.cfg.UDPOff)
			})
			cn.reply5(socks5CmdUnsupported, netip.AddrPort{})
			return
		}
		cn.reply5(SOCKS5Reply(cn.refuse), netip.AddrPort{})
		return
	}
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

func (cn *conn) newAssociation(req request) (*association, error) {
	remote, ok1 := cn.c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := cn.c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return nil, errors.New("UDP ASSOCIATE needs a TCP control connection")
	}
	a := &association{cn: cn, ctx: cn.o.ctx, clientIP: remote.AddrPort().Addr().Unmap()}
	a.clientPort.Store(uint32(req.port))
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
		if !a.fromClient(src) {
			st.dropUDP(UDPDropForeign)
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

// fromClient accepts src when it is the control connection's peer IP and
// the port the client named, or the first port seen.
func (a *association) fromClient(src netip.AddrPort) bool {
	if src.Addr().Unmap() != a.clientIP {
		return false
	}
	p := uint32(src.Port())
	if a.clientPort.CompareAndSwap(0, p) {
		return true
	}
	return a.clientPort.Load() == p
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

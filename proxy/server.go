package proxy

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DialFunc opens a TCP stream to host:port at the far end; host is a name
// or an address literal exactly as the client sent it (names are resolved
// at the far end, never here: no DNS leak). It wraps one of the sentinel
// errors (ErrRefused, ...) when it knows why it failed, so the client is
// told. It must honour ctx.
type DialFunc func(ctx context.Context, host string, port uint16) (net.Conn, error)

// Datagrams is the far side for UDP (SOCKS5 UDP ASSOCIATE).
type Datagrams interface {
	// ListenUDP opens one far-side UDP socket (dual family: WriteTo picks
	// by the address's family) for one association. The caller closes it.
	ListenUDP(ctx context.Context) (net.PacketConn, error)
	// LookupHost resolves a name at the far end (for UDP destinations
	// sent as names).
	LookupHost(ctx context.Context, host string) ([]netip.Addr, error)
}

// Config is what one Server speaks and to whom it hands flows.
type Config struct {
	Dial DialFunc
	// UDP is the far side for UDP ASSOCIATE; nil answers "command not
	// supported" (07) and logs UDPOff, the reason, once.
	UDP    Datagrams
	UDPOff string
	// Auth, when set, is required: RFC 1929 for SOCKS5, Basic
	// Proxy-Authorization for HTTP (else 407); SOCKS4 and 4a, which carry
	// no password, are refused. nil: no authentication.
	Auth *Credentials
	// SOCKS and HTTP say what the listener speaks; with both, the first
	// byte decides (0x04 or 0x05: SOCKS, anything else: HTTP).
	SOCKS, HTTP bool
	// MaxConns bounds connections per listener (0: DefaultMaxConns). At
	// it a new connection closes the oldest one still in its handshake;
	// when none is, it gets its protocol's failure reply.
	MaxConns int
	Log      *slog.Logger
}

// HandshakeTimeout is how long a client has to send its request, so that
// idle sockets cannot hold connection slots.
const HandshakeTimeout = 10 * time.Second

// dialTimeout bounds one dial: longer than any TCP connect a far sshd
// attempts, short enough that a stuck one frees its slot.
const dialTimeout = 30 * time.Second

// Server is a SOCKS5/SOCKS4a/HTTP proxy front. One Server may serve
// several listeners at once (loopback v4 and v6); MaxConns holds per
// listener, Stats across them.
type Server struct {
	cfg     Config
	log     *slog.Logger
	stats   Stats
	udpOnce sync.Once
}

// NewServer returns a Server for cfg. cfg.Dial is required.
func NewServer(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Stats returns the Server's live counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Serve accepts connections on ln until ctx ends or ln closes; it closes
// ln, and when it returns every connection it accepted is closed and every
// goroutine it started is gone. A closed listener or an ended ctx is a
// nil error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.cfg.Dial == nil {
		return fmt.Errorf("proxy on %s: Config.Dial is nil", ln.Addr())
	}
	if !s.cfg.SOCKS && !s.cfg.HTTP {
		return fmt.Errorf("proxy on %s: Config speaks neither SOCKS nor HTTP", ln.Addr())
	}
	limit := s.cfg.MaxConns
	if limit <= 0 {
		limit = DefaultMaxConns
	}
	tooMany := fmt.Errorf("%w (limit %d)", errTooMany, limit)
	l := &listenerState{}
	a := &acceptLoop{
		max: s.cfg.MaxConns, log: s.log, stats: &s.stats,
		handle: func(o *owner, c net.Conn, handshakeDone func()) { s.serveConn(o, l, c, handshakeDone, nil) },
		refuse: func(o *owner, c net.Conn) { s.serveConn(o, l, c, func() {}, tooMany) },
	}
	return a.run(ctx, ln)
}

// listenerState is what one Serve call keeps for its listener beside its
// connection slots.
type listenerState struct {
	associations atomic.Int64
	// Each first of a kind is a warning that tells the user why clients
	// fail; the rest are only counted (and logged at Debug).
	warnedAuth, warnedSOCKS4, warnedUDPLimit, warnedUnverified atomic.Bool
}

// warnOnce logs msg at Warn the first time flag is raised, then at Debug.
func (cn *conn) warnOnce(flag *atomic.Bool, msg string, args ...any) {
	if flag.CompareAndSwap(false, true) {
		cn.log.Warn(msg+"; further ones are only counted", args...)
		return
	}
	cn.log.Debug(msg, args...)
}

// conn is one client connection being served.
type conn struct {
	s   *Server
	o   *owner
	l   *listenerState
	c   net.Conn
	br  *bufio.Reader
	lim *headerLimit  // beneath br: bounds what a request head may take
	bw  *bufio.Writer // HTTP responses; made on first use
	log *slog.Logger
	// refuse, when set, is the error every request is answered with:
	// the connection is over the limit.
	refuse error
	// handshakeDone ends the handshake: the client has said what it
	// wants, and its connection may no longer be evicted for a newer one.
	handshakeDone func()
}

// readBufSize holds any SOCKS request and a typical HTTP request head.
const readBufSize = 4096

func (s *Server) serveConn(o *owner, l *listenerState, c net.Conn, handshakeDone func(), refuse error) {
	deadline := time.Now().Add(HandshakeTimeout)
	if refuse != nil {
		deadline = time.Now().Add(HandshakeTimeout / 5)
	}
	c.SetDeadline(deadline)
	cn := &conn{s: s, o: o, l: l, c: c, refuse: refuse, handshakeDone: handshakeDone, log: s.log}
	cn.lim = &headerLimit{r: c, n: maxHeaderBytes}
	cn.br = bufio.NewReaderSize(cn.lim, readBufSize)
	first, err := cn.br.Peek(1)
	if err != nil {
		return
	}
	switch {
	case s.cfg.SOCKS && first[0] == socks5Version:
		cn.serveSOCKS5()
	case s.cfg.SOCKS && first[0] == socks4Version:
		cn.serveSOCKS4()
	case s.cfg.HTTP:
		cn.serveHTTP()
	default:
		s.log.Debug("proxy: not a SOCKS request", "client", c.RemoteAddr(), "first", first[0])
	}
}

// peek reads one message with parse: the parsers say how much more they
// need (errShort), and the reader peeks that much.
func (cn *conn) peek(need int, parse func(b []byte) (int, error)) error {
	for {
		b, err := cn.br.Peek(need)
		if err != nil {
			return err
		}
		n, err := parse(b)
		if err == errShort {
			if n <= need {
				n = need + 1
			}
			need = n
			continue
		}
		if err != nil {
			return err
		}
		_, err = cn.br.Discard(n)
		return err
	}
}

// dial opens the far end of a flow, counting and logging a failure; the
// connection is closed when Serve ends.
func (cn *conn) dial(ctx context.Context, host string, port uint16) (net.Conn, error) {
	if cn.refuse != nil {
		return nil, cn.refuse
	}
	// The request is in: from here the dial's own bound counts, and the
	// client's reply (success or why not, a few bytes the socket buffer
	// takes) must still be written after a dial slower than the
	// handshake's deadline, such as one that waits for a reconnect.
	cn.c.SetDeadline(time.Time{})
	cn.handshakeDone()
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	far, err := cn.s.cfg.Dial(ctx, host, port)
	if err != nil {
		r := ReasonOf(err)
		cn.s.stats.dialFailures[r].Add(1)
		cn.log.Debug("proxy: dial failed", "client", cn.c.RemoteAddr(), "dest", hostPort(host, port), "reason", r, "err", err)
		return nil, err
	}
	return far, nil
}

// flushBuffered hands far what the client sent ahead of the reply (an
// optimistic TLS ClientHello), which the reader already holds.
func (cn *conn) flushBuffered(far net.Conn) error {
	n := cn.br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := cn.br.Peek(n)
	w, err := far.Write(b)
	cn.s.stats.bytesOut.Add(uint64(w))
	return err
}

// spliceTo joins the client and far until both are done.
func (cn *conn) spliceTo(far net.Conn) {
	stop := cn.o.closeOnDone(far)
	defer stop()
	cn.c.SetDeadline(time.Time{})
	if err := cn.flushBuffered(far); err != nil {
		far.Close()
		return
	}
	splice(cn.c, far, &cn.s.stats, cn.o.spawn)
}

// localAddrPort is c's local address when it is a TCP one, else 0.0.0.0:0.
func localAddrPort(c net.Conn) netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
}

package stack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// LocalDialTimeout bounds a DialTCP whose context has no deadline: a
// destination that never answers fails as a host's connect(2) would, but
// sooner than its two minutes, since a proxy's client is waiting.
const LocalDialTimeout = 15 * time.Second

// DialTCP opens a TCP connection from the tunnel's address of dst's family
// to dst, through the tunnel. Its errors wrap the errno a host's connect
// would give (ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT), so that
// a proxy can answer each as it should; a cancelled or expired ctx is
// wrapped too.
func (l *Local) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if err := l.hasFamily(dst.Addr()); err != nil {
		return nil, dialError(dst, err)
	}
	if !l.calls.begin() {
		return nil, dialError(dst, net.ErrClosed)
	}
	defer l.calls.done()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, LocalDialTimeout)
		defer cancel()
	}
	c, err := l.connect(ctx, dst)
	if err != nil {
		return nil, dialError(dst, err)
	}
	return c, nil
}

// connect opens the endpoint, starts the handshake and waits for its end,
// keeping the tcpip.Error that says how it ended: gonet's dial turns it
// into text.
func (l *Local) connect(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	var wq waiter.Queue
	ep, terr := l.s.NewEndpoint(tcp.ProtocolNumber, netProto(dst.Addr()), &wq)
	if terr != nil {
		return nil, errnoOf(terr)
	}
	entry, ready := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr = ep.Connect(tcpip.FullAddress{NIC: nicID, Addr: addrTo(dst.Addr()), Port: dst.Port()})
	if _, started := terr.(*tcpip.ErrConnectStarted); started {
		select {
		case <-ready:
			terr = ep.LastError()
		case <-ctx.Done():
			ep.Abort()
			return nil, ctxError(ctx)
		case <-l.ctx.Done():
			ep.Abort()
			return nil, net.ErrClosed
		}
	}
	if terr != nil {
		ep.Abort()
		if l.ctx.Err() != nil {
			return nil, net.ErrClosed // Close aborted the handshake
		}
		return nil, errnoOf(terr)
	}
	return gonet.NewTCPConn(&wq, ep), nil
}

// dialError names the dial that failed, as net.Dial does.
func dialError(dst netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: err}
}

// ctxError is the error of a dial that ctx ended: a deadline is a
// timeout, as a host's connect(2) reports it.
func ctxError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return &dialTimeout{cause: err}
	}
	return err
}

// dialTimeout is a dial whose deadline passed: ETIMEDOUT and the
// context's error both, and a timeout to net.OpError.Timeout, which asks
// its Err directly.
type dialTimeout struct{ cause error }

func (e *dialTimeout) Error() string   { return "connection timed out: " + e.cause.Error() }
func (e *dialTimeout) Unwrap() []error { return []error{syscall.ETIMEDOUT, e.cause} }
func (e *dialTimeout) Timeout() bool   { return true }

// errnoOf maps a gVisor error to the errno Linux gives for it, keeping
// gVisor's text: what a caller branches on, and what a person reads.
func errnoOf(terr tcpip.Error) error {
	var errno syscall.Errno
	switch terr.(type) {
	case *tcpip.ErrConnectionRefused:
		errno = syscall.ECONNREFUSED
	case *tcpip.ErrNetworkUnreachable, *tcpip.ErrNoNet:
		errno = syscall.ENETUNREACH
	case *tcpip.ErrHostUnreachable, *tcpip.ErrHostDown:
		errno = syscall.EHOSTUNREACH
	case *tcpip.ErrTimeout:
		errno = syscall.ETIMEDOUT
	case *tcpip.ErrConnectionReset:
		errno = syscall.ECONNRESET
	case *tcpip.ErrConnectionAborted, *tcpip.ErrAborted:
		errno = syscall.ECONNABORTED
	case *tcpip.ErrNoPortAvailable, *tcpip.ErrBadLocalAddress:
		errno = syscall.EADDRNOTAVAIL
	case *tcpip.ErrMessageTooLong:
		errno = syscall.EMSGSIZE
	default:
		return errors.New(terr.String())
	}
	return &tcpipError{errno: errno, text: terr.String()}
}

// tcpipError is a gVisor error that unwraps to its errno.
type tcpipError struct {
	errno syscall.Errno
	text  string
}

func (e *tcpipError) Error() string { return e.text }
func (e *tcpipError) Unwrap() error { return e.errno }

// Timeout makes net.Error's question answerable, as os.SyscallError does.
func (e *tcpipError) Timeout() bool { return e.errno.Timeout() }

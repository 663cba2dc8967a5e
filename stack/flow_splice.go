package stack

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// accept is the stack's TCP forwarder: gVisor runs it in a goroutine of
// its own for a SYN the terminator injected once its dial succeeded. It
// completes the handshake with the application and splices the connection
// with the dialled stream. Complete runs exactly once on every path.
func (f *FlowTerminator) accept(r *tcp.ForwarderRequest) {
	if !f.group.begin() {
		r.Complete(true)
		return
	}
	defer f.group.done()
	id := r.ID() // Remote* is the application, Local* the destination it dialled
	key := flowKey{
		src: netip.AddrPortFrom(addrFrom(id.RemoteAddress), id.RemotePort),
		dst: netip.AddrPortFrom(addrFrom(id.LocalAddress), id.LocalPort),
	}
	f.mu.Lock()
	fl := f.flows[key]
	var out net.Conn
	if fl != nil && fl.conn != nil {
		out, fl.conn = fl.conn, nil
		fl.unclaim.Stop()
	}
	f.mu.Unlock()
	if out == nil { // not dialled (a SYN from no dial), or taken already
		r.Complete(true)
		return
	}
	defer f.end(fl)
	defer func() { f.group.untrack(out); out.Close() }()
	// An application that never ACKs the SYN-ACK would hold the stream
	// for gVisor's two minutes of retransmits: it gets a dial's time.
	giveUp := time.AfterFunc(f.cfg.DialTimeout, func() { f.abortHandshake(id) })
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	giveUp.Stop()
	if terr != nil {
		r.Complete(true)
		return
	}
	r.Complete(false)
	// The application's keepalives are answered here; the stream's own
	// liveness is the SSH connection's keepalive.
	ep.SocketOptions().SetKeepAlive(true)
	f.splice(gonet.NewTCPConn(&wq, ep), ep, out)
}

// abortHandshake aborts the half-open connection id.
func (f *FlowTerminator) abortHandshake(id stack.TransportEndpointID) {
	if !f.group.begin() {
		return
	}
	defer f.group.done()
	if ep := f.s.FindTransportEndpoint(netProto(addrFrom(id.LocalAddress)), tcp.ProtocolNumber, id, nicID); ep != nil {
		ep.Abort()
	}
}

// splice copies both ways until both are done. An end of stream is passed
// on as a half-close and the other way goes on; an error on either side
// resets the application's connection (a reset, or a stream that broke)
// and closes the stream.
func (f *FlowTerminator) splice(in *gonet.TCPConn, ep tcpip.Endpoint, out net.Conn) {
	abort := aborter{ep}
	if !f.group.track(abort) {
		in.Close()
		return
	}
	defer f.group.untrack(abort)
	fail := func() {
		ep.Abort()
		out.Close()
	}
	var wg sync.WaitGroup
	wg.Go(func() { f.copyHalf(out, in, &f.bytesUp, fail) })
	wg.Go(func() { f.copyHalf(in, out, &f.bytesDown, fail) })
	wg.Wait()
	in.Close()
}

// spliceBufs are the copies' buffers: a flow that lives for one request
// would otherwise clear 64 KiB twice.
var spliceBufs = sync.Pool{New: func() any { return new([64 << 10]byte) }}

// copyHalf copies src to dst, counting into n, until src ends (then it
// half-closes dst) or either fails (then it calls fail).
func (f *FlowTerminator) copyHalf(dst, src net.Conn, n *atomic.Uint64, fail func()) {
	buf := spliceBufs.Get().(*[64 << 10]byte)
	defer spliceBufs.Put(buf)
	for {
		r, rerr := src.Read(buf[:])
		if r > 0 {
			if _, werr := dst.Write(buf[:r]); werr != nil {
				fail()
				return
			}
			n.Add(uint64(r))
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				fail()
				return
			}
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			return
		}
	}
}

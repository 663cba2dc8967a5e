package dnsproxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// maxUDPQuery is the read buffer for one UDP query. Queries are small; a
// longer datagram is cut, fails to unpack and is counted as malformed.
const maxUDPQuery = 4096

// serving is one running Serve call, for Close to stop.
type serving struct {
	cancel context.CancelFunc
}

// track registers a Serve call on c. The returned context ends when ctx
// does or Proxy.Close runs, and then c is closed; done, deferred by the
// caller with the call's handler WaitGroup, waits for those handlers.
func (p *Proxy) track(ctx context.Context, c io.Closer) (context.Context, func(*sync.WaitGroup), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return nil, nil, fmt.Errorf("dns proxy: serve: %w", net.ErrClosed)
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &serving{cancel: cancel}
	p.serving[s] = struct{}{}
	p.wg.Add(1)
	context.AfterFunc(sctx, func() { c.Close() })
	done := func(handlers *sync.WaitGroup) {
		cancel()
		handlers.Wait()
		p.mu.Lock()
		delete(p.serving, s)
		p.mu.Unlock()
		p.wg.Done()
	}
	return sctx, done, nil
}

// ServePacket answers the UDP queries that arrive on pc until ctx ends,
// Close runs or pc fails. It closes pc before it returns, and returns nil
// when it was told to stop. Queries past the in-flight limit are dropped
// and counted: the client retries.
func (p *Proxy) ServePacket(ctx context.Context, pc net.PacketConn) error {
	sctx, done, err := p.track(ctx, pc)
	if err != nil {
		return err
	}
	refuse := !p.admits(pc.LocalAddr(), "udp")
	var handlers sync.WaitGroup
	defer done(&handlers)
	buf := make([]byte, maxUDPQuery)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if sctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dns proxy: read query on udp %s: %w", pc.LocalAddr(), err)
		}
		select {
		case p.sem <- struct{}{}:
		default:
			p.stats.dropped.Add(1)
			continue
		}
		query := append([]byte(nil), buf[:n]...)
		handlers.Go(func() {
			defer func() { <-p.sem }()
			p.answerPacket(sctx, pc, query, from, refuse)
		})
	}
}

func (p *Proxy) answerPacket(ctx context.Context, pc net.PacketConn, query []byte, to net.Addr, refuse bool) {
	b := p.handle(ctx, query, true, refuse)
	if b == nil {
		return
	}
	if _, err := pc.WriteTo(b[lengthField:], to); err != nil && ctx.Err() == nil {
		p.log.Debug("dns: write answer", "to", to, "err", err)
	}
}

// ServeStream answers DNS over TCP (RFC 7766) on the connections l accepts
// until ctx ends, Close runs or l fails. Each connection may pipeline
// queries, answered as they complete, and is closed after tcpIdleTimeout
// without a query. It closes l before it returns, and returns nil when it
// was told to stop.
func (p *Proxy) ServeStream(ctx context.Context, l net.Listener) error {
	sctx, done, err := p.track(ctx, l)
	if err != nil {
		return err
	}
	refuse := !p.admits(l.Addr(), "tcp")
	var handlers sync.WaitGroup
	defer done(&handlers)
	conns := make(chan struct{}, maxConns)
	for {
		c, err := l.Accept()
		if err != nil {
			if sctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dns proxy: accept on tcp %s: %w", l.Addr(), err)
		}
		select {
		case conns <- struct{}{}:
		default:
			p.stats.dropped.Add(1)
			c.Close()
			continue
		}
		handlers.Go(func() {
			defer func() { <-conns }()
			p.serveConn(sctx, c, refuse)
		})
	}
}

// serveConn reads length-prefixed queries from c and answers each from its
// own goroutine. When reading stops (idle, EOF, garbage) it still waits for
// the answers under way before closing c.
func (p *Proxy) serveConn(ctx context.Context, c net.Conn, refuse bool) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var (
		wmu     sync.Mutex
		queries sync.WaitGroup
		pending = make(chan struct{}, maxConnInFlight)
	)
	defer queries.Wait()
	r := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(p.idle))
		query, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				p.log.Debug("dns: read query on tcp", "from", c.RemoteAddr(), "err", err)
			}
			return
		}
		if !acquire(ctx, pending) || !acquire(ctx, p.sem) {
			return
		}
		queries.Go(func() {
			defer func() { <-p.sem; <-pending }()
			b := p.handle(ctx, query, false, refuse)
			if b == nil {
				return
			}
			binary.BigEndian.PutUint16(b, uint16(len(b)-lengthField))
			wmu.Lock()
			defer wmu.Unlock()
			c.SetWriteDeadline(time.Now().Add(p.idle))
			if _, err := c.Write(b); err != nil && ctx.Err() == nil {
				p.log.Debug("dns: write answer on tcp", "to", c.RemoteAddr(), "err", err)
			}
		})
	}
}

// admits asks the Proxy's Admit about a Serve call on local; an address
// it cannot read is refused.
func (p *Proxy) admits(local net.Addr, network string) bool {
	if p.admit == nil {
		return true
	}
	var ap netip.AddrPort
	switch a := local.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(local.String()); err != nil {
			p.log.Warn("dns: cannot read the address served; refusing its queries", "addr", local, "err", err)
			return false
		}
	}
	return p.admit(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), network)
}

// acquire takes a slot of sem, waiting for one unless ctx ends first.
func acquire(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// readFrame reads one two-byte-length-prefixed message (RFC 1035 §4.2.2).
func readFrame(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read %d-byte message: %w", len(b), err)
	}
	return b, nil
}

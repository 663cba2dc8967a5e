package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/sshchan"
)

// directTCPIP is the payload of a direct-tcpip channel open (RFC 4254
// 7.2): where the client wants a connection, and where it came from on
// the client's side.
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// forward serves one direct-tcpip channel (ssh -L, ssh -D): the backend
// dials the target under the client's egress policy and the bytes are
// copied both ways, half-closes passed on.
func (cs *connState) forward(ctx context.Context, nc ssh.NewChannel) {
	var req directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil || req.Port > 65535 {
		nc.Reject(ssh.ConnectionFailed, "direct-tcpip: malformed request")
		return
	}
	dialer, ok := cs.srv.cfg.Backend.(relay.StreamDialer)
	if !ok {
		nc.Reject(ssh.Prohibited, "port forwarding refused: this gateway's backend carries tunnels only (serve --backend netstack forwards ssh -L and -D)")
		return
	}
	opts := cs.login.opts
	if opts == nil || opts.NoPortForwarding {
		src := "this login"
		if opts != nil {
			src = opts.Source
		}
		cs.log.Warn("port forwarding refused", "to", net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port))), "why", "no-port-forwarding or restrict", "key", src)
		nc.Reject(ssh.Prohibited, "port forwarding refused: "+src+" has no-port-forwarding or restrict")
		return
	}
	target := net.JoinHostPort(truncate(req.Host, 255), strconv.Itoa(int(req.Port)))
	if !opts.PermitsOpen(req.Host, uint16(req.Port)) {
		cs.log.Warn("port forwarding refused", "to", target, "why", "not in permitopen", "key", opts.Source)
		nc.Reject(ssh.Prohibited, "port forwarding refused: "+target+" is not in "+opts.Source+"'s permitopen")
		return
	}
	conn, err := dialer.DialStream(ctx, relay.StreamRequest{Host: req.Host, Port: uint16(req.Port), Client: cs.request()})
	if err != nil {
		cs.log.Info("port forwarding failed", "to", target, "err", err)
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	if extra := cs.forwardWindow(); extra > 0 {
		sshchan.WidenWindow(cs.conn, ch, extra) // without it, x/crypto's 2 MiB
	}
	cs.log.Debug("port forwarding", "to", target, "from", net.JoinHostPort(req.OriginHost, strconv.Itoa(int(req.OriginPort))))
	splice(ctx, ch, reqs, conn)
}

// request is who this connection's client is, for the backend.
func (cs *connState) request() relay.TunnelRequest {
	r := relay.TunnelRequest{User: cs.conn.User(), Remote: cs.conn.RemoteAddr(), Local: cs.conn.LocalAddr(), Key: cs.login.key}
	if o := cs.login.opts; o != nil {
		r.AllowedIPs, r.KeyRules, r.KeySource = o.AllowedIPs, o.KeyRules, o.Source
	}
	return r
}

// splice copies between an SSH channel and a connection until both
// directions end, passing each end on as a half-close, and closes both.
// It also ends, at once, when the channel is gone (the client closed it,
// or the connection died: x/crypto then closes reqs), as sshd closes the
// socket of a closed channel: a target that never closes must not keep its
// socket and two goroutines for good. ctx ends it too.
func splice(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, conn net.Conn) {
	stop := context.AfterFunc(ctx, func() {
		ch.Close()
		conn.Close()
	})
	defer stop()
	gone := make(chan struct{})
	go func() {
		ssh.DiscardRequests(reqs)
		conn.Close()
		close(gone)
	}()
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(conn, ch)
		closeWrite(conn)
	})
	_, err := io.Copy(ch, conn)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		// A reset from the target ends the client's side too, rather than
		// leaving it waiting for bytes that will not come.
		ch.Close()
		conn.Close()
	} else {
		ch.CloseWrite()
	}
	wg.Wait()
	ch.Close()
	conn.Close()
	// Until the peer answers our CLOSE (or the connection ends), the
	// channel still counts against the connection's forwards, as in sshd.
	<-gone
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.Close()
}

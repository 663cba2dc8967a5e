package sshclient

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay/sshchan"
)

// DialFlow opens a direct-tcpip channel to host:port on sc (ssh -L and -D
// do the same), host sent as given so that the server resolves a name.
// extra widens the channel's receive window beyond x/crypto's 2 MiB
// (sshchan.FlowWindowExtra), so that a download over a long path is not held to
// 2 MiB a round trip; 0 keeps it. ctx bounds the open only.
func DialFlow(ctx context.Context, sc *ssh.Client, host string, port uint16, extra uint32) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type opened struct {
		c   net.Conn
		err error
	}
	done := make(chan opened, 1)
	go func() {
		c, err := openFlow(sc, host, port, extra)
		done <- opened{c, err}
	}()
	select {
	case o := <-done:
		return o.c, o.err
	case <-ctx.Done():
		// The open goes on; close what it brings.
		go func() {
			if o := <-done; o.c != nil {
				o.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// directTCPIP is RFC 4254 §7.2's channel open payload.
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

func openFlow(sc *ssh.Client, host string, port uint16, extra uint32) (net.Conn, error) {
	ch, reqs, err := sc.OpenChannel("direct-tcpip", ssh.Marshal(directTCPIP{Host: host, Port: uint32(port), OriginHost: "0.0.0.0"}))
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs)
	if extra > 0 {
		// Without it the flow still works, at x/crypto's window.
		sshchan.WidenWindow(sc, ch, extra)
	}
	remote := &net.TCPAddr{Port: int(port)}
	if a, err := netip.ParseAddr(host); err == nil {
		remote.IP = a.AsSlice()
	}
	return &flowConn{Channel: ch, local: sc.LocalAddr(), remote: remote}, nil
}

// flowConn is a direct-tcpip channel as a net.Conn. Deadlines are not
// supported, as on x/crypto's own: a channel has no per-read timer.
type flowConn struct {
	ssh.Channel
	local, remote net.Addr
}

var errNoDeadline = errors.New("direct-tcpip channel: deadlines are not supported")

func (c *flowConn) LocalAddr() net.Addr              { return c.local }
func (c *flowConn) RemoteAddr() net.Addr             { return c.remote }
func (c *flowConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (c *flowConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (c *flowConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

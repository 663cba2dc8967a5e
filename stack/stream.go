package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/egress"
)

var _ relay.StreamDialer = (*Gateway)(nil)

// DialStream implements relay.StreamDialer: a direct-tcpip channel (ssh -L,
// ssh -D) is dialled from the gateway process as a tunnel's TCP flow
// would be, under the same policy: the key's rules, then the gateway's. A
// name is resolved on the gateway host and each address judged on its own;
// the gateway's virtual addresses stand for the host's loopback, as in a
// tunnel.
func (g *Gateway) DialStream(ctx context.Context, req relay.StreamRequest) (net.Conn, error) {
	policy, err := g.cfg.PolicyFor(req.Client, g.Policy())
	if err != nil {
		return nil, err
	}
	target := net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port)))
	addrs, err := g.resolve(ctx, req.Host)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", target, err)
	}
	limits := g.cfg.Limits.withDefaults()
	dial := g.cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	var errs []error
	local := g.localAddrs()
	for _, a := range addrs {
		dst := netip.AddrPortFrom(a, req.Port)
		if slices.Contains(local, a) {
			dst = loopbackFor(dst)
		}
		if ok, why := policy.Decide(dst, egress.ProtoTCP); !ok {
			g.cfg.Logger.Debug("port forwarding refused by egress policy", "key", req.Client.Key, "dst", dst, "rule", why)
			if len(addrs) == 1 {
				errs = append(errs, errDenied)
			} else {
				errs = append(errs, fmt.Errorf("%s: %w", dst, errDenied))
			}
			continue
		}
		if ok, spent, limit := g.sockets.take(req.Client.Key); !ok {
			return nil, fmt.Errorf("connect to %s: %w: the %d %s are all in use", target, errLimited, limit, spent)
		}
		dctx, cancel := context.WithTimeout(ctx, limits.DialTimeout)
		c, err := dial(dctx, "tcp", dst.String())
		cancel()
		if err == nil {
			return &chargedConn{Conn: c, give: func() { g.sockets.give(req.Client.Key) }}, nil
		}
		g.sockets.give(req.Client.Key)
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("connect to %s: %w", target, errors.Join(errs...))
}

// resolve gives host's addresses: host itself when it is one.
func (g *Gateway) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	r := g.cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	as, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	for i := range as {
		as[i] = as[i].Unmap()
	}
	return as, nil
}

// chargedConn is a forward's host connection, charged to the gateway's
// host sockets until it is closed.
type chargedConn struct {
	net.Conn
	once sync.Once
	give func()
}

func (c *chargedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.give)
	return err
}

// CloseWrite passes a half-close on, as the forward's copy does for the
// client's EOF.
func (c *chargedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

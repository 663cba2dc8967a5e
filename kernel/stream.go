package kernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

var _ relay.StreamDialer = (*Gateway)(nil)

// streamDialTimeout bounds a forward's connect, as the client's flow
// transport waits on it before it answers the application's SYN.
const streamDialTimeout = 10 * time.Second

// errLoopback refuses a forward to the gateway's loopback: a tunnel
// reaches what the gateway's addresses serve, never what listens on
// 127.0.0.1 and ::1 for the host alone.
var errLoopback = errors.New("the gateway's loopback is not forwarded")

// DialStream implements relay.StreamDialer: the kernel gateway carries
// direct-tcpip (ssh -L and -D, and sshvpn connect --transport flow) as sshd
// does, from the host itself, so the target sees the gateway's address as
// with --nat. The gateway has checked the key's no-port-forwarding and
// permitopen; the host's loopback is refused here.
func (g *Gateway) DialStream(ctx context.Context, req relay.StreamRequest) (net.Conn, error) {
	target := net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port)))
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", req.Host)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", target, err)
	}
	var errs []error
	d := net.Dialer{Timeout: streamDialTimeout}
	for _, a := range addrs {
		a = a.Unmap()
		if a.IsLoopback() || a.IsUnspecified() {
			errs = append(errs, fmt.Errorf("%s: %w", a, errLoopback))
			continue
		}
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, req.Port).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("connect to %s: %w", target, errors.Join(errs...))
}

package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// errMismatch is an upstream answer to some other question.
var errMismatch = errors.New("upstream answered a different question")

// forwarder asks the host's resolvers over ordinary sockets of the gateway
// process, each query from a fresh socket (a random source port, RFC 5452).
type forwarder struct {
	upstreams []netip.AddrPort
	timeout   time.Duration
	log       *slog.Logger
}

// exchange asks each upstream in turn until one gives an answer other than
// SERVFAIL or REFUSED. When every upstream refused or failed, it returns the
// last such answer, or an error naming each failure when none answered.
func (f *forwarder) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	var errs []error
	var last *dns.Msg
	for _, up := range f.upstreams {
		r, err := f.ask(ctx, up, m)
		switch {
		case err != nil:
			errs = append(errs, err)
		case r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused:
			last = r
			f.log.Debug("dns: upstream failed, trying the next", "upstream", up, "rcode", dns.RcodeToString[r.Rcode])
		default:
			return r, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	if last != nil {
		return last, nil
	}
	return nil, errors.Join(errs...)
}

// ask puts m to one upstream over UDP and, when the answer comes back
// truncated, again over TCP, all within the forwarder's timeout.
func (f *forwarder) ask(ctx context.Context, up netip.AddrPort, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	r, err := roundTrip(ctx, "udp", up, m)
	if err != nil || !r.Truncated {
		return r, err
	}
	return roundTrip(ctx, "tcp", up, m)
}

// roundTrip sends m to up over network and reads its answer. A truncated UDP
// answer that did not fully unpack is still returned: TC is all it is for.
func roundTrip(ctx context.Context, network string, up netip.AddrPort, m *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: network, UDPSize: upstreamUDPSize}
	if d, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(d)
	}
	conn, err := c.DialContext(ctx, up.String())
	if err != nil {
		return nil, fmt.Errorf("dial DNS upstream %s over %s: %w", up, network, err)
	}
	defer conn.Close()
	// miekg/dns honours only the context's deadline; closing the socket
	// makes cancellation (Proxy.Close) end the wait too.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		if network == "udp" && r != nil && r.Truncated {
			return r, nil
		}
		return nil, fmt.Errorf("ask DNS upstream %s over %s: %w", up, network, err)
	}
	return r, nil
}

package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

// Lookup timeouts: one question to one server (a name server across the
// tunnel answers in a round trip or two, or not at all), and a whole
// LookupHost whose context has no deadline of its own.
const (
	dnsAttemptTimeout  = 2 * time.Second
	LocalLookupTimeout = 10 * time.Second
)

// dnsUDPSize is the EDNS0 buffer size the lookups offer: the size DNS
// Flag Day 2020 settled on, which no path's fragmentation breaks. A
// longer answer comes truncated, and is asked again over TCP.
const dnsUDPSize = 1232

// errNoNameServer is LookupHost's error when the tunnel has no name
// server of a family it has an address of.
var errNoNameServer = errors.New("the tunnel's server told no name server, and asking the host's resolver instead would leak the name")

// LookupHost resolves host through the tunnel's name servers: A and AAAA,
// each for a family the tunnel has an address of, over UDP, and over TCP
// when the answer was truncated. An address literal is returned as it is.
// It never asks the host's resolver, which would leak the names the proxy
// is asked for. Its errors are *net.DNSError.
func (l *Local) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	if !l.calls.begin() {
		return nil, dnsError(host, "", net.ErrClosed)
	}
	defer l.calls.done()
	if _, ok := dns.IsDomainName(host); !ok || host == "" {
		return nil, &net.DNSError{Err: "not a host name", Name: host, IsNotFound: true}
	}
	var servers []netip.Addr
	for _, s := range l.nameServers() {
		if l.hasFamily(s) == nil {
			servers = append(servers, s)
		}
	}
	if len(servers) == 0 {
		return nil, dnsError(host, "", errNoNameServer)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, LocalLookupTimeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(l.ctx, cancel)() // Close ends the lookup
	return l.lookup(ctx, dns.Fqdn(host), servers)
}

// lookup asks A and AAAA at once, each for a family the tunnel has.
func (l *Local) lookup(ctx context.Context, name string, servers []netip.Addr) ([]netip.Addr, error) {
	var types []uint16
	if l.has4.Load() {
		types = append(types, dns.TypeA)
	}
	if l.has6.Load() {
		types = append(types, dns.TypeAAAA)
	}
	addrs := make([][]netip.Addr, len(types))
	errs := make([]error, len(types))
	var wg sync.WaitGroup
	for i, t := range types {
		wg.Go(func() { addrs[i], errs[i] = l.query(ctx, name, t, servers) })
	}
	wg.Wait()
	var all []netip.Addr
	for _, a := range addrs {
		all = append(all, a...)
	}
	if len(all) > 0 {
		return all, nil
	}
	if l.ctx.Err() != nil {
		return nil, dnsError(name, "", net.ErrClosed)
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// query asks the servers in turn for name's records of type t until one
// answers: a name that does not exist is an answer (no addresses, no
// error); a failure or a refusal sends the question to the next server.
func (l *Local) query(ctx context.Context, name string, t uint16, servers []netip.Addr) ([]netip.Addr, error) {
	q := new(dns.Msg).SetQuestion(name, t)
	q.SetEdns0(dnsUDPSize, false)
	var last error
	for _, s := range servers {
		r, err := l.exchange(ctx, q, s, "udp")
		if err == nil && r.Truncated {
			r, err = l.exchange(ctx, q, s, "tcp")
		}
		if err != nil {
			last = dnsError(name, s.String(), err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			last = dnsError(name, s.String(), fmt.Errorf("server answered %s", dns.RcodeToString[r.Rcode]))
			continue
		}
		return answers(r, t), nil
	}
	return nil, last
}

// answers are r's addresses of type t, CNAMEs followed by the server.
func answers(r *dns.Msg, t uint16) []netip.Addr {
	var out []netip.Addr
	for _, rr := range r.Answer {
		var a netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			if t == dns.TypeA {
				a, _ = netip.AddrFromSlice(rr.A.To4())
			}
		case *dns.AAAA:
			if t == dns.TypeAAAA {
				a, _ = netip.AddrFromSlice(rr.AAAA.To16())
			}
		}
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// exchange puts q to server over network, through the tunnel, within one
// attempt's time.
func (l *Local) exchange(ctx context.Context, q *dns.Msg, server netip.Addr, network string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsAttemptTimeout)
	defer cancel()
	dst := netip.AddrPortFrom(server, 53)
	var conn net.Conn
	if network == "udp" {
		fa := tcpip.FullAddress{NIC: nicID, Addr: addrTo(server), Port: 53}
		c, err := gonet.DialUDP(l.s, nil, &fa, netProto(server))
		if err != nil {
			return nil, err
		}
		conn = c
	} else {
		c, err := l.connect(ctx, dst)
		if err != nil {
			return nil, err
		}
		conn = c
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	c := dns.Client{Net: network, Timeout: dnsAttemptTimeout}
	r, _, err := c.ExchangeWithConnContext(ctx, q, &dns.Conn{Conn: conn})
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return r, err
}

// dnsError is a lookup's error, as the host's resolver gives it, with its
// cause beneath.
func dnsError(name, server string, err error) error {
	de := &net.DNSError{Err: err.Error(), Name: name, Server: server, UnwrapErr: err}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		de.IsTimeout = true
	}
	return de
}

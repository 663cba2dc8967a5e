package sshclient

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
)

// nameCache keeps the addresses each server name last resolved to. Once
// a full tunnel is up, the name servers may only be reachable through the
// tunnel (the gateway's, or systemd-resolved sending every query there),
// so a reconnect while it is down could not look the name up: it uses the
// last answer instead, as wg-quick resolves an endpoint once.
type nameCache struct {
	mu    sync.Mutex
	addrs map[string][]netip.Addr
}

func (c *nameCache) get(host string) []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[host]
}

func (c *nameCache) put(host string, addrs []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addrs == nil {
		c.addrs = make(map[string][]netip.Addr)
	}
	c.addrs[host] = addrs
}

// dialTCP connects to cfg.HostName:cfg.Port, trying each address of the
// name in turn (of AddressFamily's family), with the system's resolver
// (nsswitch included) and, when it fails, the addresses it last gave.
func (d *Dialer) dialTCP(ctx context.Context, cfg *Config) (net.Conn, error) {
	network := cfg.network()
	nd := net.Dialer{Timeout: cfg.ConnectTimeout, Control: d.Control}
	port := strconv.Itoa(cfg.Port)
	if a, err := netip.ParseAddr(cfg.HostName); err == nil {
		if network == "tcp4" && !a.Unmap().Is4() || network == "tcp6" && !a.Is6() {
			return nil, &net.DNSError{Err: "Address family for hostname not supported", Name: cfg.HostName}
		}
		return nd.DialContext(ctx, network, net.JoinHostPort(cfg.HostName, port))
	}
	lookup := d.lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupNetIP
	}
	addrs, err := lookup(ctx, "ip", cfg.HostName)
	if err != nil {
		last := d.names.get(cfg.HostName)
		if len(last) == 0 || ctx.Err() != nil {
			return nil, err
		}
		d.logger().Info("cannot resolve the server's name; using its last addresses", "host", cfg.HostName, "addresses", last, "err", err)
		addrs = last
	} else {
		d.names.put(cfg.HostName, addrs)
	}
	var errs []error
	for _, a := range addrs {
		a = a.Unmap()
		if network == "tcp4" && !a.Is4() || network == "tcp6" && !a.Is6() {
			continue
		}
		conn, err := nd.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, &net.DNSError{Err: "no address of the family AddressFamily asks for", Name: cfg.HostName, IsNotFound: true}
	}
	return nil, errors.Join(errs...)
}

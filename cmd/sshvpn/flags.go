package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
)

// Backend says where tunnel packets go.
type Backend string

func (b *Backend) String() string { return string(*b) }

// Set implements flag.Value.
func (b *Backend) Set(s string) error {
	switch s {
	case "kernel":
		*b = Backend(s)
		return nil
	case "netstack":
		return fmt.Errorf("backend netstack (rootless) is not built yet: use --backend kernel as root")
	}
	return fmt.Errorf("unknown backend %q (want kernel)", s)
}

// prefixes is a repeatable CIDR flag.
type prefixes []netip.Prefix

func (p *prefixes) String() string {
	s := make([]string, len(*p))
	for i, x := range *p {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// Set implements flag.Value. It keeps the host bits: 198.18.0.1/24 is the
// address 198.18.0.1 on the network 198.18.0.0/24.
func (p *prefixes) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		x, err := netip.ParsePrefix(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("want an address with its prefix length, like 198.18.0.1/24: %w", err)
		}
		*p = append(*p, x)
	}
	return nil
}

// logLevel is a slog level flag.
type logLevel struct{ slog.Level }

func (l *logLevel) Set(s string) error { return l.UnmarshalText([]byte(s)) }

// addrs is a repeatable IP address flag.
type addrs []netip.Addr

func (a *addrs) String() string {
	s := make([]string, len(*a))
	for i, x := range *a {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// Set implements flag.Value.
func (a *addrs) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		x, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("want an IP address: %w", err)
		}
		*a = append(*a, x)
	}
	return nil
}

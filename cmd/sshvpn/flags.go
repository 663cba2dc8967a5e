package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
)

// backend is --backend: where tunnel packets go.
type backend string

const (
	backendKernel   backend = "kernel"   // a kernel tun/tap
	backendNetstack backend = "netstack" // a gVisor stack in the process: no root
)

func (b *backend) String() string { return string(*b) }

// Choices are the values the completions offer.
func (b *backend) Choices() []string { return []string{string(backendNetstack), string(backendKernel)} }

// Set implements flag.Value.
func (b *backend) Set(s string) error {
	switch backend(s) {
	case backendKernel, backendNetstack:
		*b = backend(s)
		return nil
	}
	return fmt.Errorf("unknown backend %q (want netstack or kernel)", s)
}

// transport is --transport: how the device's TCP crosses the tunnel.
type transport string

const (
	// transportPacket carries every packet on the tunnel channel, TCP too.
	transportPacket transport = "packet"
	// transportFlow terminates TCP in the client and carries each
	// connection as a direct-tcpip channel; the rest goes as packets.
	transportFlow transport = "flow"
	// transportAuto is packet for now: the benchmark decides.
	transportAuto transport = "auto"
)

func (t *transport) String() string { return string(*t) }

// Choices are the values the completions offer.
func (t *transport) Choices() []string {
	return []string{string(transportAuto), string(transportFlow), string(transportPacket)}
}

// Set implements flag.Value.
func (t *transport) Set(s string) error {
	switch transport(s) {
	case transportAuto, transportFlow, transportPacket:
		*t = transport(s)
		return nil
	}
	return fmt.Errorf("unknown transport %q (want flow, packet or auto)", s)
}

// terminates reports whether the device's TCP goes as flows. auto is
// packet until the benchmark shows flow ahead (bench/README.md).
func (t transport) terminates() bool { return t == transportFlow }

// listFlag is a repeatable flag of comma-separated values, appended to
// *items as they parse.
type listFlag[T fmt.Stringer] struct {
	items *[]T
	parse func(string) (T, error)
	want  string // what a value looks like, for the error
}

func (l listFlag[T]) String() string {
	if l.items == nil {
		return ""
	}
	s := make([]string, len(*l.items))
	for i, x := range *l.items {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

// Set implements flag.Value.
func (l listFlag[T]) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		x, err := l.parse(strings.TrimSpace(f))
		if err != nil {
			// Not the parser's own words: they name Go functions.
			return fmt.Errorf("%q is not %s", strings.TrimSpace(f), l.want)
		}
		*l.items = append(*l.items, x)
	}
	return nil
}

// prefixList is a repeatable CIDR flag. It keeps the host bits:
// 198.18.0.1/24 is the address 198.18.0.1 on the network 198.18.0.0/24.
func prefixList(p *[]netip.Prefix) listFlag[netip.Prefix] {
	return listFlag[netip.Prefix]{p, netip.ParsePrefix, "an address with its prefix length, like 198.18.0.1/24"}
}

// addrList is a repeatable IP address flag.
func addrList(a *[]netip.Addr) listFlag[netip.Addr] {
	return listFlag[netip.Addr]{a, netip.ParseAddr, "an IP address"}
}

// logLevel is a slog level flag.
type logLevel struct{ slog.Level }

// Choices are the values the completions offer.
func (l *logLevel) Choices() []string { return []string{"debug", "info", "warn", "error"} }

func (l *logLevel) Set(s string) error {
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("%q is not a log level: want debug, info, warn or error", s)
	}
	return nil
}

// routeList is the repeatable --route flag: CIDRs, comma-separated or
// not, or "default" for both families' default routes (a full tunnel).
type routeList struct{ routes *[]netip.Prefix }

func (r routeList) String() string {
	if r.routes == nil {
		return ""
	}
	return prefixList(r.routes).String()
}

// Set implements flag.Value.
func (r routeList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "default" {
			*r.routes = append(*r.routes, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return fmt.Errorf("%q is not a network like 198.18.0.0/15 or 2001:2::/48, nor default", f)
		}
		*r.routes = append(*r.routes, p)
	}
	return nil
}

// parseFlags parses args into fs the way every sshvpn command does: an
// error is returned once, for main to print, with no usage text after it
// (the flag package would print both); -h prints the usage, headed by
// about, to stderr.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, about string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // the flag package calls it on every error
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stderr)
		fmt.Fprintln(stderr, about)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		return err
	}
	if err != nil {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
			bare := strings.TrimLeft(name, "-")
			if len(bare) > 1 {
				name = "--" + bare // as the flags are written: the flag package says -name
			}
			msg = "unknown flag " + name
			if near := nearestFlag(fs, bare); near != "" {
				msg += ": did you mean --" + near + "?"
			}
		}
		return fmt.Errorf("%s (%s -h lists the flags)", msg, fs.Name())
	}
	return nil
}

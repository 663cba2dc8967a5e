package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/kernel"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/sshclient"
)

// connectConfig is what `sshvpn connect` was asked to do.
type connectConfig struct {
	ssh     sshclient.Options
	tunnel  string // -w
	addrs   []netip.Prefix
	peer    []netip.Addr
	routes  []netip.Prefix
	backend Backend
	mtu     int
	level   logLevel
}

// strs is a repeatable string flag (-i, -o).
type strs []string

func (s *strs) String() string     { return strings.Join(*s, ",") }
func (s *strs) Set(v string) error { *s = append(*s, v); return nil }

func parseConnect(args []string, stderr io.Writer) (*connectConfig, error) {
	c := &connectConfig{backend: "kernel"}
	fs := flag.NewFlagSet("sshvpn connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: sshvpn connect [flags] [user@]host\n\nOpens a tunnel to a stock sshd (PermitTunnel yes) or an sshvpn gateway and keeps it up.")
		fs.PrintDefaults()
	}
	fs.IntVar(&c.ssh.Port, "p", 0, "`port` to connect to (as ssh -p)")
	fs.Var((*strs)(&c.ssh.Identities), "i", "identity `file` (as ssh -i; repeatable)")
	fs.StringVar(&c.ssh.ConfigFile, "F", "", "ssh_config `file` (default ~/.ssh/config, then /etc/ssh/ssh_config; none for no file)")
	fs.Var((*strs)(&c.ssh.Opts), "o", "ssh_config `option` as Key=Value (as ssh -o; repeatable), e.g. -o Tunnel=ethernet")
	fs.StringVar(&c.tunnel, "w", "", "tunnel devices `local[:remote]`, each a unit number or any (as ssh -w; default any:any)")
	fs.StringVar(&c.ssh.Jump, "J", "", "jump `hosts` [user@]host[:port],… (as ssh -J)")
	fs.Var(prefixList(&c.addrs), "address", "local tunnel `address/prefix` (repeatable; an sshvpn gateway assigns one when omitted)")
	fs.Var(addrList(&c.peer), "peer", "the point-to-point peer's `address` on the tunnel")
	fs.Var(prefixList(&c.routes), "route", "`network` to route through the tunnel (repeatable, IPv4 and IPv6)")
	fs.Var(&c.backend, "backend", "where packets go: kernel (a local tun/tap; needs root)")
	fs.IntVar(&c.mtu, "mtu", 0, "local device MTU (default: the gateway's, else 1500)")
	fs.Var(&c.level, "log-level", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	// Flags may follow the destination, as they may for ssh.
	if fs.NArg() > 0 {
		c.ssh.Destination = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return nil, err
		}
	}
	if c.ssh.Destination == "" {
		fs.Usage()
		return nil, errors.New("connect needs a destination: [user@]host")
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("connect takes one destination and runs no command, got %q", fs.Args())
	}
	if c.tunnel != "" {
		if _, _, err := sshclient.ParseTunnelDevice(c.tunnel); err != nil {
			return nil, fmt.Errorf("-w %s: %w", c.tunnel, err)
		}
		// ssh's -w beats TunnelDevice from the files: -o comes first.
		c.ssh.Opts = append([]string{"TunnelDevice=" + c.tunnel}, c.ssh.Opts...)
	}
	if len(c.peer) > 1 {
		return nil, errors.New("--peer takes one address")
	}
	return c, nil
}

// tunnelMode reads the tunnel mode the way ssh does: -w with Tunnel unset
// means point-to-point.
func tunnelMode(tunnel string) (relay.Mode, error) {
	switch tunnel {
	case "ethernet":
		return relay.Ethernet, nil
	case "point-to-point", "yes", "no", "":
		return relay.PointToPoint, nil
	}
	return 0, fmt.Errorf("unknown Tunnel %q (want point-to-point or ethernet)", tunnel)
}

func connect(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := parseConnect(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.level.Level}))
	cfg, err := sshclient.Resolve(c.ssh)
	if err != nil {
		return err
	}
	for _, n := range cfg.Notes {
		log.Warn("ssh_config: ignored", "what", n)
	}
	mode, err := tunnelMode(cfg.Tunnel)
	if err != nil {
		return err
	}
	local, remote := sshclient.TunnelAny, sshclient.TunnelAny
	if cfg.TunnelDevice != "" {
		if local, remote, err = sshclient.ParseTunnelDevice(cfg.TunnelDevice); err != nil {
			return err
		}
	}
	if err := kernel.CheckAccess(); err != nil {
		return err
	}
	d := &sshclient.Dialer{Stderr: stderr, Log: log}
	if tty, err := sshclient.OpenTTY(stderr); err == nil && !cfg.BatchMode {
		d.Prompt = tty
	}
	interval, count := cfg.ServerAliveInterval, cfg.ServerAliveCountMax
	if interval == 0 {
		interval = defaultKeepAlive
	}
	var tun *localTunnel
	client := &relay.Client{
		Dial:      func(ctx context.Context) (*ssh.Client, error) { return d.Dial(ctx, cfg) },
		Retryable: retryable,
		KeepAlive: func(ctx context.Context, sc *ssh.Client) error {
			return relay.KeepAlive(ctx, sc, interval, count)
		},
		Mode: mode,
		Unit: uint32(remote),
		Setup: func(gw *relay.TunnelConfig) (relay.LocalDevice, error) {
			l, err := newLocalTunnel(mode, uint32(local), gw, c, log)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			tun = l
			return l, nil
		},
		Update: func(gw *relay.TunnelConfig) error { return tun.update(gw) },
		Log:    log.With("host", cfg.HostName, "port", cfg.Port),
	}
	return client.Run(ctx)
}

// defaultKeepAlive detects a dead gateway when ServerAliveInterval is not
// set: a VPN must notice a dead peer to reconnect, where an interactive ssh
// session can wait for the user.
const defaultKeepAlive = 15 * time.Second

// retryable tells a passing network failure (worth a reconnect) from one
// the user must fix: a refused key, a changed host key, a refused tunnel, a
// host name that does not resolve. syscall.Errno is a net.Error, so the
// test is by errno, not by type.
func retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	for _, e := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	if dns, ok := errors.AsType[*net.DNSError](err); ok {
		return dns.IsTemporary || dns.IsTimeout
	}
	return false
}

// localTunnel is the client's device and what was set up on it.
type localTunnel struct {
	*kernel.Tun
	undo        *kernel.Undo
	flags       *connectConfig
	log         *slog.Logger
	fromGateway []netip.Prefix // addresses the gateway assigned, in place now
}

// newLocalTunnel opens and configures the local device once the first
// tunnel is up: a failed login or a refused tunnel changes nothing here.
func newLocalTunnel(mode relay.Mode, unit uint32, gw *relay.TunnelConfig, c *connectConfig, log *slog.Logger) (*localTunnel, error) {
	mtu := c.mtu
	if mtu == 0 && gw != nil {
		mtu = gw.MTU
	}
	tun, err := kernel.Open(kernel.Config{Mode: mode, Unit: unit, MTU: mtu})
	if err != nil {
		return nil, err
	}
	l := &localTunnel{Tun: tun, undo: kernel.NewUndo(log), flags: c, log: log}
	if err := l.configure(gw); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// configure sets the device up with the flags, or else with what the
// gateway said (gw is nil from a stock sshd).
func (l *localTunnel) configure(gw *relay.TunnelConfig) error {
	name := l.Name()
	if err := l.undo.LinkUp(name); err != nil {
		return err
	}
	addrs, routes := l.flags.addrs, slices.Clone(l.flags.routes)
	if gw != nil {
		if len(addrs) == 0 {
			addrs = gw.Addresses
			l.fromGateway = gw.Addresses
		}
		routes = append(routes, gw.Routes...)
		if len(gw.DNS) > 0 {
			l.log.Info("the gateway offers name servers; sshvpn does not change the resolver", "dns", gw.DNS)
		}
	}
	if len(addrs) == 0 {
		l.log.Warn("the tunnel has no address: pass --address (a stock sshd assigns none)", "device", name)
	}
	for _, a := range addrs {
		if err := l.addAddress(a); err != nil {
			return err
		}
	}
	for _, r := range routes {
		if err := l.undo.AddRoute(r.Masked(), name); err != nil {
			return err
		}
	}
	l.log.Info("local device configured", "device", name, "addresses", addrs, "routes", routes)
	return nil
}

// addAddress puts a on the device; with --peer the address is the local
// end of a point-to-point link, as `ip addr add A peer P` makes it.
func (l *localTunnel) addAddress(a netip.Prefix) error {
	if len(l.flags.peer) == 0 || a.Addr().Is4() != l.flags.peer[0].Is4() {
		return l.undo.AddAddress(l.Name(), a, false)
	}
	p := l.flags.peer[0]
	if err := l.undo.AddAddress(l.Name(), netip.PrefixFrom(a.Addr(), a.Addr().BitLen()), true); err != nil {
		return err
	}
	return l.undo.AddRoute(netip.PrefixFrom(p, p.BitLen()), l.Name())
}

// update follows the gateway when a reconnect brings another address: the
// gateway may still hold the old one for the session it has not yet seen
// die, and drops packets from it as another tunnel's.
func (l *localTunnel) update(gw *relay.TunnelConfig) error {
	if len(l.flags.addrs) > 0 || slices.Equal(gw.Addresses, l.fromGateway) {
		return nil
	}
	l.log.Warn("the gateway assigned a new address on reconnect; connections from the old one will break",
		"old", l.fromGateway, "new", gw.Addresses)
	for _, a := range gw.Addresses {
		if !slices.Contains(l.fromGateway, a) {
			if err := l.addAddress(a); err != nil {
				return err
			}
		}
	}
	for _, a := range l.fromGateway {
		if !slices.Contains(gw.Addresses, a) {
			if err := kernel.DeleteAddress(l.Name(), a); err != nil {
				return err
			}
		}
	}
	l.fromGateway = gw.Addresses
	return nil
}

// Close undoes the configuration and releases the device.
func (l *localTunnel) Close() error {
	err := l.undo.Revert()
	if cerr := l.Tun.Close(); err == nil {
		err = cerr
	}
	return err
}

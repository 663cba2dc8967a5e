package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/sshvpn/sshvpn/kernel"
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
	// stateDir holds the undo journal of what the client changed on this
	// host, so a client killed outright is undone by the next run or
	// sshvpn cleanup.
	stateDir string
	// dnsGlobal allows rewriting /etc/resolv.conf when the host has no
	// per-link resolver.
	dnsGlobal bool
	// persist keeps retrying a first connection that fails, where ssh
	// would give up.
	persist bool
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
	fs.Var(routeList{&c.routes}, "route", "`network` to route through the tunnel (repeatable, IPv4 and IPv6); default (or 0.0.0.0/0, ::/0) for a full tunnel")
	fs.StringVar(&c.stateDir, "state-dir", kernel.DefaultStateDir(), "`directory` for the undo journal, so a client killed outright is undone by the next run or sshvpn cleanup")
	fs.BoolVar(&c.dnsGlobal, "dns-global", false, "with no per-link resolver (systemd-resolved), write the gateway's name servers to /etc/resolv.conf, restored on exit")
	fs.BoolVar(&c.persist, "persist", false, "keep retrying when the first connection fails (ssh gives up; after a tunnel was up sshvpn always reconnects)")
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

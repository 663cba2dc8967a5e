package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/sshvpn/sshvpn/kernel"
	"github.com/sshvpn/sshvpn/proxy"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/sshclient"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// connectConfig is what `sshvpn connect` was asked to do.
type connectConfig struct {
	ssh    sshclient.Options
	tunnel string // -w
	addrs  []netip.Prefix
	peer   []netip.Addr
	routes []netip.Prefix
	via    []netip.Addr // next hops of an ethernet tunnel's routes, one per family
	dhcp   bool         // a DHCPv4 client on an ethernet tunnel's tap
	// backend is netstack for the rootless way (the proxies, no device),
	// kernel for a tun/tap; unset, it is netstack exactly when proxies are
	// asked for and -w is not.
	backend backend
	// transport is how the device's TCP crosses: flow or packet (auto:
	// packet for now); unset when not given.
	transport transport
	// The rootless proxies: -D, --http-proxy and -L as given, checked as
	// they parse; socksAuth is --socks-auth's file; gatewayPorts is -g.
	dynamic, httpProxy, forwards []string
	socksAuth                    string
	gatewayPorts                 bool
	mtu                          int
	level                        logLevel
	logFormat                    logFormat
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
	// background is -f: the tunnel goes to the background once up.
	background bool
	// metricsListen is where Prometheus metrics are served; empty: not.
	metricsListen metricsAddr
	// logFile is -E.
	logFile string
	// version is -V.
	version bool
}

// strs is a repeatable string flag (-i, -o).
type strs []string

func (s *strs) String() string     { return strings.Join(*s, ",") }
func (s *strs) Set(v string) error { *s = append(*s, v); return nil }

// optFlag is an ssh flag that stands for an ssh_config option, as ssh's
// -l stands for User: each use appends Key=value to the -o list in command
// line order, so that the first one given wins as in ssh.
type optFlag struct {
	opts *[]string
	key  string
}

func (f optFlag) String() string     { return "" }
func (f optFlag) Set(v string) error { *f.opts = append(*f.opts, f.key+"="+v); return nil }

// countFlag counts a repeatable boolean flag (-v).
type countFlag int

func (c *countFlag) String() string   { return strconv.Itoa(int(*c)) }
func (c *countFlag) Set(string) error { *c++; return nil }
func (c *countFlag) IsBoolFlag() bool { return true }

// portFlag is -p, checked as ssh checks it.
type portFlag struct{ port *int }

func (p portFlag) String() string { return "" }
func (p portFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("bad port %q", s)
	}
	*p.port = n
	return nil
}

// mtuFlag is --mtu: a number here; the mode's limits are checked once the
// mode is known (see checkMTU).
type mtuFlag struct{ mtu *int }

func (m mtuFlag) String() string { return "" }
func (m mtuFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < minMTU || n > maxL3MTU {
		return fmt.Errorf("%q is not an MTU from %d to %d", s, minMTU, maxL3MTU)
	}
	*m.mtu = n
	return nil
}

// The MTUs a tunnel can carry: every IPv4 host takes 576-byte packets, and
// stock OpenSSH reads each tunnel packet, with its 4-byte header, into a
// buffer of wire.MaxFrame bytes; an ethernet frame adds its 14-byte header
// and a VLAN tag.
const (
	minMTU   = 576
	maxL3MTU = wire.MaxFrame - 4
	maxL2MTU = wire.MaxFrame - 4 - 14 - 4
)

// checkMTU checks --mtu against the tunnel's mode.
func checkMTU(mtu int, mode relay.Mode) error {
	if mode == relay.Ethernet && mtu > maxL2MTU {
		return fmt.Errorf("--mtu %d: an ethernet tunnel's frames would exceed the %d bytes stock OpenSSH reads; use --mtu %d or less",
			mtu, wire.MaxFrame, maxL2MTU)
	}
	return nil
}

// connectAbout heads connect's -h and its man page.
const connectAbout = "Usage: sshvpn connect [flags] [user@]host\n\n" +
	"Opens a tunnel to a stock sshd (PermitTunnel yes) or an sshvpn gateway and keeps it up.\n" +
	"Without root: -D (SOCKS), --http-proxy and -L serve the far network from local ports, no device needed.\n" +
	"ssh's flags work as in ssh: -p -i -F -o -w -D -L -g -J -l -4 -6 -v -q -f -N -T, glued or not (-p2222, -oKey=Value)."

// connectFlagValues are connect's flags that parseConnect turns into c.
type connectFlagValues struct {
	family4, family6, quiet, version bool
	verbose                          countFlag
}

// connectFlags defines connect's flags on c and v: parseConnect parses
// them, and the man page and completions are made from them.
func connectFlags(c *connectConfig, v *connectFlagValues) *flag.FlagSet {
	fs := flag.NewFlagSet("sshvpn connect", flag.ContinueOnError)
	family4, family6, quiet, version, verbose := &v.family4, &v.family6, &v.quiet, &v.version, &v.verbose
	fs.Var(portFlag{&c.ssh.Port}, "p", "`port` to connect to (as ssh -p)")
	fs.Var((*strs)(&c.ssh.Identities), "i", "identity `file` (as ssh -i; repeatable)")
	fs.StringVar(&c.ssh.ConfigFile, "F", "", "ssh_config `file` (default ~/.ssh/config, then /etc/ssh/ssh_config; none for no file)")
	fs.Var((*strs)(&c.ssh.Opts), "o", "ssh_config `option` as Key=Value (as ssh -o; repeatable), e.g. -o Tunnel=ethernet")
	fs.StringVar(&c.tunnel, "w", "", "tunnel devices `local[:remote]`, each a unit number or any (as ssh -w; default any:any)")
	fs.StringVar(&c.ssh.Jump, "J", "", "jump `hosts` [user@]host[:port],… (as ssh -J)")
	for _, f := range sshclient.KeywordFlags {
		fs.Var(optFlag{&c.ssh.Opts, f.Keyword}, string(f.Letter), f.Usage)
	}
	fs.StringVar(&c.logFile, "E", "", "append the log to `file` instead of stderr (as ssh -E)")
	fs.BoolVar(family4, "4", false, "IPv4 addresses only (as ssh -4)")
	fs.BoolVar(family6, "6", false, "IPv6 addresses only (as ssh -6)")
	fs.BoolVar(&c.background, "f", false, "go to the background once the tunnel is up (as ssh -f)")
	fs.Bool("N", false, "accepted for ssh's sake: sshvpn runs no command anyway")
	fs.Bool("T", false, "accepted for ssh's sake: sshvpn allocates no tty anyway")
	fs.BoolVar(quiet, "q", false, "quiet: errors only (as ssh -q)")
	fs.Var(verbose, "v", "debug log (as ssh -v)")
	fs.BoolVar(version, "V", false, "print the version")
	fs.Var(prefixList(&c.addrs), "address", "local tunnel `address/prefix` (repeatable; an sshvpn gateway assigns one when omitted); with --backend netstack, the proxies' stack's address: toward a stock sshd, UDP through the proxies needs it")
	fs.Var(addrList(&c.peer), "peer", "the point-to-point peer's `address` on the tunnel")
	fs.Var(addrList(&c.via), "via", "next hop `address` on an ethernet tunnel for the --route networks: the gateway's (or the LAN router's) address on the tap (one per family; an sshvpn gateway tells its own)")
	fs.BoolVar(&c.dhcp, "dhcp", false, "ethernet tunnel: take the tap's IPv4 address, the next hop for --route and the name servers from a DHCP server on the link (released on exit)")
	fs.Var(routeList{&c.routes}, "route", "`network` to route through the tunnel (repeatable, IPv4 and IPv6); default (or 0.0.0.0/0, ::/0) for a full tunnel")
	fs.StringVar(&c.stateDir, "state-dir", kernel.DefaultStateDir(), "`directory` for the status socket (sshvpn status) and the undo journal, so a client killed outright is undone by the next run or sshvpn cleanup")
	fs.BoolVar(&c.dnsGlobal, "dns-global", false, "with no per-link resolver (systemd-resolved), write the gateway's name servers to /etc/resolv.conf, restored on exit")
	fs.BoolVar(&c.persist, "persist", false, "keep retrying when the first connection fails (ssh gives up; after a tunnel was up sshvpn always reconnects)")
	fs.Var(&c.backend, "backend", "the `backend` packets go to: kernel (a local tun/tap: root, or a device root made for you) or netstack (no device: the proxies' own stack) (default: netstack when -D, -L or --http-proxy is given without -w, else kernel)")
	fs.Var(&c.transport, "transport", "how the device's TCP crosses the tunnel: flow (each connection terminated here and carried as a direct-tcpip channel, judged as a forward; UDP, ICMP and the rest as packets), packet (every packet on the tunnel channel) or auto (provisional: packet, until the benchmark decides) (default auto)")
	fs.Var(specList{&c.dynamic, checkDynamic}, "D", "SOCKS5 and SOCKS4a proxy on `[bind:]port` (as ssh -D; loopback unless a bind address or -g is given), with UDP ASSOCIATE through the tunnel; it also answers HTTP proxy requests")
	fs.Var(specList{&c.httpProxy, checkDynamic}, "http-proxy", "HTTP proxy (CONNECT and plain requests) on `[bind:]port` (loopback unless a bind address or -g is given); may be the -D port")
	fs.Var(specList{&c.forwards, checkLocal}, "L", "forward `[bind:]port:host:hostport` to host:hostport at the far end (as ssh -L); host is resolved there")
	fs.StringVar(&c.socksAuth, "socks-auth", "", "`file` of user:password lines (mode 0600) the proxies ask for: RFC 1929 for SOCKS5, Basic for HTTP (SOCKS4 is then refused)")
	fs.BoolVar(&c.gatewayPorts, "g", false, "-D, -L and --http-proxy without a bind address listen on every interface (as ssh -g)")
	fs.Var(mtuFlag{&c.mtu}, "mtu", fmt.Sprintf("`MTU` of the local device or the proxies' stack, %d to %d (%d for ethernet) (default: the gateway's, else 1500)", minMTU, maxL3MTU, maxL2MTU))
	fs.Var(&c.level, "log-level", "log `level`: debug, info, warn or error")
	fs.Var(&c.metricsListen, "metrics-listen", metricsUsage)
	fs.Var(&c.logFormat, "log-format", logFormatUsage)
	return fs
}

func parseConnect(args []string, stderr io.Writer) (*connectConfig, error) {
	c := &connectConfig{}
	var v connectFlagValues
	fs := connectFlags(c, &v)
	long := func(name string) bool { return fs.Lookup(name) != nil }
	parse := func(args []string) error {
		args, err := sshclient.Getopt(args, long)
		if err != nil {
			return err
		}
		return parseFlags(fs, args, stderr, connectAbout)
	}
	if err := parse(args); err != nil {
		return nil, err
	}
	// Flags may follow the destination, as they may for ssh.
	if fs.NArg() > 0 && fs.Arg(0) != "--" {
		c.ssh.Destination = fs.Arg(0)
		if err := parse(fs.Args()[1:]); err != nil {
			return nil, err
		}
	}
	if v.version {
		c.version = true
		return c, nil
	}
	if c.ssh.Destination == "" {
		return nil, errors.New("connect needs a destination: [user@]host (sshvpn connect -h lists the flags)")
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("connect takes one destination and runs no command, got: %s", strings.Join(fs.Args(), " "))
	}
	switch {
	case v.verbose > 0:
		c.level.Level = slog.LevelDebug
	case v.quiet:
		c.level.Level = slog.LevelError
		c.ssh.Opts = append([]string{"LogLevel=QUIET"}, c.ssh.Opts...) // as ssh -q
	}
	// ssh's -4 and -6 beat AddressFamily wherever it is given.
	switch {
	case v.family4 && v.family6:
		return nil, errors.New("-4 and -6 together: give one")
	case v.family4:
		c.ssh.Opts = append([]string{"AddressFamily=inet"}, c.ssh.Opts...)
	case v.family6:
		c.ssh.Opts = append([]string{"AddressFamily=inet6"}, c.ssh.Opts...)
	}
	ids := c.ssh.Identities[:0]
	for _, id := range c.ssh.Identities {
		p := expandHome(id)
		if _, err := os.Stat(p); err != nil {
			// ssh's warning (once: not again from the child of a -f); the
			// connection goes on with the other keys.
			if !inBackground() {
				fmt.Fprintf(stderr, "Warning: Identity file %s not accessible: %s.\n", p, strerror(err))
			}
			continue
		}
		ids = append(ids, id)
	}
	c.ssh.Identities = ids
	if c.tunnel != "" {
		if _, _, err := sshclient.ParseTunnelDevice(c.tunnel); err != nil {
			return nil, fmt.Errorf("-w %s: %w", c.tunnel, err)
		}
		// ssh's -w beats TunnelDevice from the files: -o comes first.
		c.ssh.Opts = append([]string{"TunnelDevice=" + c.tunnel}, c.ssh.Opts...)
	}
	for i, a := range c.addrs {
		if slices.Contains(c.addrs[:i], a) {
			return nil, fmt.Errorf("--address %s given twice", a)
		}
	}
	if len(c.peer) > 1 {
		return nil, errors.New("--peer takes one address")
	}
	if c.dhcp && slices.ContainsFunc(c.addrs, func(a netip.Prefix) bool { return a.Addr().Is4() }) {
		return nil, errors.New("--dhcp and an IPv4 --address: give one (DHCP brings the IPv4 address)")
	}
	if err := c.chooseBackend(); err != nil {
		return nil, err
	}
	for i, a := range c.via {
		if slices.ContainsFunc(c.via[:i], func(b netip.Addr) bool { return b.Is4() == a.Is4() }) {
			return nil, fmt.Errorf("--via %s: one next hop per family", a)
		}
	}
	return c, nil
}

// expandHome expands a leading ~/ as ssh expands -i paths.
func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}

// strerror is the C library's wording of an error, as ssh prints it.
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}

// specList is a repeatable flag whose values are checked as they parse and
// kept as given (-D, -L, --http-proxy).
type specList struct {
	specs *[]string
	check func(string) error
}

func (l specList) String() string {
	if l.specs == nil {
		return ""
	}
	return strings.Join(*l.specs, ",")
}

// Set implements flag.Value.
func (l specList) Set(s string) error {
	if err := l.check(s); err != nil {
		return err
	}
	*l.specs = append(*l.specs, s)
	return nil
}

func checkDynamic(s string) error { _, err := proxy.ParseDynamic(s); return err }

func checkLocal(s string) error { _, _, _, err := proxy.ParseLocal(s); return err }

// proxies reports whether any proxy or forward was asked for.
func (c *connectConfig) proxies() bool {
	return len(c.dynamic)+len(c.httpProxy)+len(c.forwards) > 0
}

// chooseBackend settles --backend and checks the flags that go with it.
func (c *connectConfig) chooseBackend() error {
	if c.backend == "" {
		c.backend = backendKernel
		if c.proxies() && c.tunnel == "" {
			c.backend = backendNetstack
		}
	}
	if c.socksAuth != "" && len(c.dynamic)+len(c.httpProxy) == 0 {
		return errors.New("--socks-auth protects the proxies: give -D or --http-proxy with it")
	}
	if c.backend != backendNetstack {
		if c.transport == "" {
			c.transport = transportAuto
		}
		return nil
	}
	switch {
	case c.transport != "":
		return errors.New("--transport applies to the tunnel's device: -D, -L and --http-proxy carry TCP as direct-tcpip channels already (drop --transport, or add -w for a device)")
	case !c.proxies():
		return errors.New("--backend netstack serves the far network through local proxies: give -D, --http-proxy or -L (or run as root, or on a device root made for you, with --backend kernel)")
	case c.tunnel != "" && !remoteUnitOnly(c.tunnel):
		return fmt.Errorf("-w %s names a local device, which --backend netstack does not use: drop -w, or give any:N to name the server's unit N (or use --backend kernel)", c.tunnel)
	case len(c.routes) > 0, len(c.via) > 0, len(c.peer) > 0, c.dhcp, c.dnsGlobal:
		return errors.New("--route, --via, --peer, --dhcp and --dns-global set up a local device, which --backend netstack does not make")
	}
	return nil
}

// remoteUnitOnly reports whether a -w value leaves the local device to
// chance ("any:N"), naming only the server's unit.
func remoteUnitOnly(w string) bool {
	local, _, err := sshclient.ParseTunnelDevice(w)
	return err == nil && local == sshclient.TunnelAny
}

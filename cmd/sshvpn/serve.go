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
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/kernel"
	"github.com/sshvpn/sshvpn/kernel/tun"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/wire"
	"github.com/sshvpn/sshvpn/stack"
	"github.com/sshvpn/sshvpn/stack/dnsproxy"
	"github.com/sshvpn/sshvpn/stack/hostaddr"
)

// serveConfig is what `sshvpn serve` was asked to do.
type serveConfig struct {
	listen         string
	hostKey        string
	authorizedKeys string
	permit         gateway.PermitTunnel
	backend        backend
	tunAddrs       []netip.Prefix
	routes         []netip.Prefix
	dns            []netip.Addr
	dnsDomains     []string
	nat            bool
	bridge         string // an existing bridge ethernet tunnels' taps join
	createBridge   string // an interface swapped for a bridge they join
	mtu            int
	ciphers        string
	aliveInterval  time.Duration
	aliveCount     int
	stateDir       string
	limits         gateway.Limits
	claimsPerKey   int
	level          logLevel
	metricsListen  metricsAddr
	logFormat      logFormat
	rootless       rootlessConfig
	configFile     string // --config
	check          bool   // --check: validate and exit
}

// serveAbout heads serve's -h and its man page.
const serveAbout = "Usage: sshvpn serve [flags]\n\nRuns a gateway that stock \"ssh -w\" clients and sshvpn connect tunnel into."

// serveFlags defines serve's flags on c: parseServe parses them, and the
// man page and completions are made from them, so the three agree.
func serveFlags(c *serveConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("sshvpn serve", flag.ContinueOnError)
	fs.StringVar(&c.configFile, "config", "", "config `file` of serve's flags in sshd_config's form (Keyword value; keywords are the flag names, like max-startups or MaxStartups); flags given here win, a repeatable one replacing the file's values")
	fs.BoolVar(&c.check, "check", false, "check the flags, the --config file and the authorized_keys file, print every problem as file:line, and exit 1 if there is one (as sshd -t)")
	fs.StringVar(&c.listen, "listen", ":2222", "`address` to accept SSH connections on: host:port, [ipv6]:port, or a port alone for every address")
	fs.StringVar(&c.hostKey, "host-key", defaultHostKey(), "host key `file`; an Ed25519 key is generated there (mode 0600) when missing")
	fs.StringVar(&c.authorizedKeys, "authorized-keys", defaultAuthorizedKeys(), "authorized_keys `file` (options honoured: tunnel=, from=, expiry-time=, restrict, no-port-forwarding, permitopen=, cert-authority)")
	fs.Var(&c.permit, "permit-tunnel", "tunnel modes to accept: yes, point-to-point, ethernet or no (sshd's PermitTunnel)")
	fs.Var(&c.backend, "backend", "where packets go: netstack (a userspace network stack; no root) or kernel (tun/tap devices; needs root)")
	fs.Var(prefixList(&c.tunAddrs), "tun-address", "gateway `address/prefix` put on every tunnel device it creates (repeatable, IPv4 and IPv6)")
	fs.Var(prefixList(&c.routes), "route", "`network` that sshvpn clients are told to route through the tunnel (repeatable)")
	fs.Var(addrList(&c.dns), "dns", "name server `address` sshvpn clients are told to use (repeatable; netstack: default its --dns-address)")
	fs.Var((*strs)(&c.dnsDomains), "dns-domain", "DNS `domain` the --dns servers (netstack: its DNS addresses) answer for: sshvpn clients look up its names through the tunnel (repeatable; comma-separated)")
	fs.StringVar(&c.bridge, "bridge", "", "existing `bridge` every ethernet tunnel's tap joins, with port security: the client is on that LAN and takes DHCP and SLAAC from it (kernel backend)")
	fs.StringVar(&c.createBridge, "create-bridge", "", "`interface` to put on a bridge made for it (its MAC, addresses and routes move to the bridge, and back on exit), then as --bridge")
	fs.BoolVar(&c.nat, "nat", false, "enable forwarding and masquerade the tunnels' traffic out of the gateway's other interfaces")
	fs.IntVar(&c.mtu, "mtu", 0, fmt.Sprintf("tunnel MTU; at most %d so that stock OpenSSH peers can carry every packet (default: kernel %d, netstack %d, %d on ethernet tunnels)", wire.MaxFrame-4, kernel.DefaultMTU, stack.DefaultMTU, stack.DefaultEthernetMTU))
	fs.StringVar(&c.ciphers, "ciphers", strings.Join(gateway.DefaultCiphers, ","), "SSH ciphers to offer, most preferred first")
	fs.DurationVar(&c.aliveInterval, "client-alive-interval", gateway.DefaultClientAliveInterval, "keepalive `interval` toward clients (sshd's ClientAliveInterval; 0 disables)")
	fs.IntVar(&c.aliveCount, "client-alive-count-max", gateway.DefaultClientAliveCountMax, "unanswered keepalives before a client is disconnected and its tunnels torn down")
	fs.StringVar(&c.stateDir, "state-dir", kernel.DefaultStateDir(), "`directory` for the status socket (sshvpn status) and, on the kernel backend, the undo journal, so a gateway killed outright is undone by the next start or sshvpn cleanup")
	d := gateway.DefaultLimits
	fs.IntVar(&c.limits.PerSourceMaxStartups, "per-source-max-startups", d.PerSourceMaxStartups, "unauthenticated connections allowed from one address (an IPv6 /64) at once (sshd's PerSourceMaxStartups)")
	fs.IntVar(&c.limits.MaxStartups, "max-startups", d.MaxStartups, "unauthenticated connections allowed at once from everyone (sshd's MaxStartups)")
	fs.IntVar(&c.limits.MaxConnsPerKey, "max-connections-per-key", d.MaxConnsPerKey, "SSH connections one key may hold at once; the next is disconnected with the reason")
	fs.IntVar(&c.limits.MaxTunnelsPerKey, "max-tunnels-per-key", d.MaxTunnelsPerKey, "tunnels one key may hold at once, over all its connections")
	fs.IntVar(&c.limits.MaxForwardsPerConn, "max-forwards-per-connection", d.MaxForwardsPerConn, "forwarded connections (ssh -L, -D, -W) one SSH connection may hold at once")
	fs.IntVar(&c.limits.MaxForwardsPerKey, "max-forwards-per-key", d.MaxForwardsPerKey, "forwarded connections one key may hold at once, over all its connections")
	fs.IntVar(&c.claimsPerKey, "max-claims-per-key", kernel.DefaultClaimsPerKey, "tunnel-network addresses one key may take by sending from them, beyond the one it is given")
	fs.Var(&c.level, "log-level", "log level: debug, info, warn or error")
	fs.Var(&c.metricsListen, "metrics-listen", metricsUsage)
	fs.Var(&c.logFormat, "log-format", logFormatUsage)
	c.rootless.flags(fs)
	return fs
}

func parseServe(args []string, stderr io.Writer) (*serveConfig, error) {
	c, _, errs := loadServe(args, stderr)
	switch {
	case len(errs) == 1:
		return nil, errs[0]
	case len(errs) > 0:
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// loadServe parses serve's command line and its --config file, the
// command line winning. It goes on past a problem in the file to report
// them all (serve --check); c and fs are the flags as they came out, nil
// when the command line itself could not be parsed.
func loadServe(args []string, stderr io.Writer) (c *serveConfig, fs *flag.FlagSet, errs []error) {
	c = &serveConfig{permit: gateway.PermitYes, backend: "netstack"}
	fs = serveFlags(c)
	if err := parseFlags(fs, args, stderr, serveAbout); err != nil {
		return nil, nil, []error{err}
	}
	if fs.NArg() > 0 {
		return nil, nil, []error{fmt.Errorf("serve takes no arguments, got %q", fs.Args())}
	}
	if c.configFile != "" {
		set := visited(fs)
		entries, ferrs := readConfig(c.configFile, fs)
		errs = sortByLine(append(ferrs, applyConfig(c.configFile, entries, fs, set)...))
	}
	if isPort(c.listen) {
		// sshd's ListenAddress takes no port alone (Port does), but a
		// number here can only mean a port: every address.
		c.listen = ":" + c.listen
	}
	if err := checkServe(c, visited(fs)); err != nil {
		errs = append(errs, err)
	}
	return c, fs, errs
}

// visited are the flags fs was given.
func visited(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// checkServe checks what no single flag can: flags that go together or
// exclude each other. set are the flags given.
func checkServe(c *serveConfig, set map[string]bool) error {
	if err := checkBackendFlags(c, set); err != nil {
		return err
	}
	if c.mtu != 0 && (c.mtu < 576 || c.mtu > wire.MaxFrame-4) {
		return fmt.Errorf("--mtu %d: want 576 to %d (stock OpenSSH reads tunnel packets into a %d-byte buffer)", c.mtu, wire.MaxFrame-4, wire.MaxFrame)
	}
	// An ethernet frame is the MTU plus its 14-byte header and a VLAN tag,
	// and must fit the same 16 KiB buffer. A kernel gateway's taps take
	// --mtu as it is; the rootless gateway gives an ethernet tunnel at most
	// that (stack.DefaultEthernetMTU) and --mtu to point-to-point ones, so
	// its default and largest --mtu stay what they were.
	if maxL2 := wire.MaxFrame - 14 - 4; c.backend == "kernel" && c.mtu > maxL2 && c.permit.Allows(relay.Ethernet) {
		return fmt.Errorf("--mtu %d: an ethernet tunnel's frames would exceed the %d bytes stock OpenSSH reads; use --mtu %d or less, or --permit-tunnel point-to-point",
			c.mtu, wire.MaxFrame, maxL2)
	}
	if err := gateway.CheckCiphers(strings.Split(c.ciphers, ",")); err != nil {
		return fmt.Errorf("--ciphers: %w", err)
	}
	if err := checkDNSDomains(c); err != nil {
		return err
	}
	if c.bridge != "" && c.createBridge != "" {
		return errors.New("--bridge and --create-bridge: give one; --create-bridge makes the bridge that --bridge names")
	}
	if (c.bridge != "" || c.createBridge != "") && !c.permit.Allows(relay.Ethernet) {
		return fmt.Errorf("--bridge bridges ethernet tunnels, which --permit-tunnel %s refuses", c.permit)
	}
	if c.nat && len(c.tunAddrs) == 0 {
		return errors.New("--nat needs --tun-address: it masquerades the tunnel network's traffic")
	}
	return nil
}

// checkDNSDomains refuses --dns-domain values a client would refuse, and
// takes the root's trailing dot off, as a resolver's configuration has it.
func checkDNSDomains(c *serveConfig) error {
	var ds []string // comma-separated or repeated, as --dns
	for _, v := range c.dnsDomains {
		for _, d := range strings.Split(v, ",") {
			ds = append(ds, strings.TrimSpace(d))
		}
	}
	c.dnsDomains = ds
	if len(c.dnsDomains) > 0 && len(c.dns) == 0 && c.backend != "netstack" {
		return errors.New("--dns-domain needs --dns: the domains say which names the tunnel's name servers answer for")
	}
	if len(c.dnsDomains) > wire.MaxDomains {
		return fmt.Errorf("--dns-domain: %d domains, at most %d", len(c.dnsDomains), wire.MaxDomains)
	}
	if len(c.dns) > wire.MaxDNS {
		return fmt.Errorf("--dns: %d name servers, at most %d", len(c.dns), wire.MaxDNS)
	}
	for i, d := range c.dnsDomains {
		if d == "." {
			return errors.New("--dns-domain .: every name is not a domain; a client sends every lookup through a tunnel that carries its default route")
		}
		d = strings.TrimSuffix(d, ".")
		if err := wire.CheckDomain(d); err != nil {
			return fmt.Errorf("--dns-domain: %w", err)
		}
		c.dnsDomains[i] = d
	}
	return nil
}

func defaultHostKey() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "sshvpn_host_ed25519_key"
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "sshvpn", "ssh_host_ed25519_key")
}

func defaultAuthorizedKeys() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return "authorized_keys"
	}
	return filepath.Join(home, ".ssh", "authorized_keys")
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	c, fs, errs := loadServe(args, stderr)
	if c != nil && c.check {
		return checkServeConfig(c, errs, stdout, stderr)
	}
	switch {
	case len(errs) == 1:
		return errs[0]
	case len(errs) > 0:
		return errors.Join(errs...)
	}
	level := new(slog.LevelVar)
	level.Set(c.level.Level)
	log := newLogger(stderr, level, c.logFormat)
	self := newSelfReport("gateway", time.Now())
	notify := serviceNotifier(log)
	ln, err := listen(c.listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	stopMetrics, err := serveMetrics(ctx, string(c.metricsListen), self.report, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	var backend relay.Opener
	var details []any
	var ns *stack.Gateway
	var dns func() (dnsproxy.Stats, bool)
	if c.backend == "kernel" {
		kb, stop, err := kernelBackend(c, log)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stop()) }()
		backend, details = kb, []any{"tun_address", prefixList(&c.tunAddrs).String(), "nat", c.nat}
		if br := kb.BridgeName(); br != "" {
			details = append(details, "bridge", br)
		}
	} else {
		nb, stop, err := netstackBackend(c, log)
		if err != nil {
			return err
		}
		defer stop()
		backend, details, ns, dns = nb, []any{"netstack", nb}, nb, nb.DNSStats
	}
	signer, err := gateway.LoadOrCreateHostKey(c.hostKey, log)
	if err != nil {
		return err
	}
	keys, err := gateway.LoadAuthorizedKeys(c.authorizedKeys, log)
	if err != nil {
		return err
	}
	if keys.Len() == 0 {
		log.Warn("no authorized keys yet: every login is refused until you add clients' public keys (the file is read again when it changes)",
			"file", c.authorizedKeys)
	}
	srv, err := gateway.New(gateway.Config{
		HostKeys:     []ssh.Signer{signer},
		Keys:         keys,
		PermitTunnel: c.permit,
		Ciphers:      strings.Split(c.ciphers, ","),
		Backend:      backend,
		Limits:       c.limits,
		Log:          log,

		ClientAliveInterval: c.aliveInterval,
		ClientAliveCountMax: c.aliveCount,
	})
	if err != nil {
		return err
	}
	log.Info("sshvpn gateway listening", append([]any{"addr", ln.Addr(), "host_key", ssh.FingerprintSHA256(signer.PublicKey()),
		"authorized_keys", c.authorizedKeys, "keys", keys.Len(), "permit_tunnel", c.permit, "backend", c.backend}, details...)...)
	gs := &gatewayStatus{srv: srv, listen: ln.Addr().String(), hostKey: ssh.FingerprintSHA256(signer.PublicKey()), backend: c.backend.String(), dns: dns}
	self.set(gs.report)
	defer serveStatus(c.stateDir, "serve", self.report, log)()
	stopHUP := reloadOnHangup(newReloader(args, c, fs, keys, srv, ns, level, log), notify)
	defer stopHUP()
	stopUSR1 := footprintOnUSR1(log)
	defer stopUSR1()
	defer notifyGateway(ctx, notify, srv, log)()
	err = srv.Serve(ctx, ln)
	log.Info("sshvpn gateway stopped")
	return err
}

// kernelBackend is the kernel gateway, its journal opened first so that
// what a killed predecessor left is undone. stop tears it down.
func kernelBackend(c *serveConfig, log *slog.Logger) (*kernel.Gateway, func() error, error) {
	if err := kernel.CheckAccess(); err != nil {
		if _, ok := errors.AsType[*tun.AccessError](err); ok {
			err = fmt.Errorf("%w or use --backend netstack", err)
		}
		return nil, nil, err
	}
	journal, err := kernel.OpenJournal(c.stateDir, log)
	if err != nil {
		return nil, nil, err
	}
	backend, err := kernel.NewGateway(kernel.GatewayConfig{
		Addrs: c.tunAddrs, Routes: c.routes, DNS: c.dns, Domains: c.dnsDomains, NAT: c.nat, MTU: c.mtu, ClaimsPerKey: c.claimsPerKey,
		Bridge: c.bridge, CreateBridge: c.createBridge, Journal: journal, Log: log,
	})
	if err != nil {
		return nil, nil, errors.Join(err, journal.Close())
	}
	// Bridged taps may claim no address of the host's, as it changes.
	var hosts *hostaddr.Watcher
	if backend.BridgeName() != "" {
		if hosts, err = hostaddr.Watch(hostaddr.Config{Update: backend.SetHostAddresses, Logger: log}); err != nil {
			return nil, nil, errors.Join(err, backend.Close(), journal.Close())
		}
	}
	return backend, func() error {
		if hosts != nil {
			hosts.Close()
		}
		var err error
		if cerr := backend.Close(); cerr != nil {
			err = fmt.Errorf("teardown: %w", cerr)
		}
		return errors.Join(err, journal.Close())
	}, nil
}

// footprintOnUSR1 logs the process's goroutines and heap on SIGUSR1: what
// an operator (and the tests) look at to see that departed clients left
// nothing behind. It collects first and returns the freed memory to the
// kernel, so that the heap and the process's resident size are what is
// live, not garbage the runtime would give back over minutes.
func footprintOnUSR1(log *slog.Logger) (stop func()) {
	return onSignal(syscall.SIGUSR1, func() {
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		log.Info("footprint", "goroutines", runtime.NumGoroutine(), "heap_inuse", m.HeapInuse, "sys", m.Sys)
	})
}

// onSignal calls fn for each sig, one at a time, until stop: a signal
// that comes while fn runs is handled after it, and more of them as one.
func onSignal(sig os.Signal, fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				fn()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// isPort reports whether s is a port number and nothing else.
func isPort(s string) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && n > 0
}

func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen on %s: address already in use: another server holds the port; pick another with --listen", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

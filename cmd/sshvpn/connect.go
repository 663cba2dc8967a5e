package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/kernel"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/keepalive"
	"github.com/sshvpn/sshvpn/relay/reconnect"
	"github.com/sshvpn/sshvpn/relay/sshclient"
	"github.com/sshvpn/sshvpn/stack"
)

func connect(ctx context.Context, args []string, stderr io.Writer) (err error) {
	// As ssh does, stop when the terminal goes.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	self := newSelfReport("client", time.Now())
	c, err := parseConnect(args, stderr)
	if err != nil {
		return err
	}
	if c.version {
		fmt.Fprint(stderr, versionText())
		return nil
	}
	ready := readyNotifier()
	if c.background && ready == nil {
		return background(ctx, args, stderr)
	}
	logTo := stderr
	if c.logFile != "" {
		f, err := os.OpenFile(c.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("-E: %w", err)
		}
		defer f.Close()
		logTo = f
	}
	if ready != nil && c.level.Level == slog.LevelInfo {
		c.level.Level = slog.LevelWarn // in the background, as ssh -f: problems only
	}
	log := newLogger(logTo, c.level.Level, c.logFormat)
	defer footprintOnUSR1(log)()
	// Opened after -f forked: the process that stays serves them.
	stopMetrics, err := serveMetrics(ctx, string(c.metricsListen), self.report, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	cfg, err := sshclient.Resolve(c.ssh)
	if err != nil {
		return err
	}
	service := &clientNotifier{n: serviceNotifier(log), server: net.JoinHostPort(cfg.HostName, strconv.Itoa(cfg.Port)), persist: c.persist}
	defer afterDone(ctx, func() { service.n.Stopping() })()
	if up := ready; up != nil {
		ready = func() { up(); service.up() }
	} else {
		ready = service.up
	}
	for _, n := range cfg.Notes {
		log.Debug("ssh_config: not applied", "what", n)
	}
	for _, w := range cfg.Warnings {
		log.Warn("ssh_config", "what", w)
	}
	if cfg.ConnectTimeout == 0 {
		// ssh waits forever; a VPN that reconnects on its own cannot let a
		// server that accepts and then stalls hold it. Prompts do not count.
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	mode, err := cfg.TunnelMode()
	if err != nil {
		return err
	}
	if err := checkMTU(c.mtu, mode); err != nil {
		return err
	}
	local, remote, err := cfg.TunnelUnits()
	if err != nil {
		return err
	}
	interval, count := cfg.ServerAliveInterval, cfg.ServerAliveCountMax
	if interval == 0 {
		interval = defaultKeepAlive
	}
	st := newClientStatus(cfg.User, cfg.HostName, cfg.Port, string(c.backend), mode)
	st.addrs, st.routes = c.addrs, c.routes
	service.keepAliveWithin = time.Duration(max(count, 1)+1) * interval
	keepAlive := func(ctx context.Context, sc *ssh.Client) error {
		return keepalive.Watch(ctx, sc, interval, count, func(rtt time.Duration) {
			st.keptAlive(rtt)
			service.keptAlive(rtt)
		})
	}
	// A connection attempt may take Dial's ConnectTimeout for each address
	// and hop, and a few seconds more for the tunnel; past this, the
	// watchdog takes it for stuck.
	attemptWithin := max(2*time.Minute, 4*cfg.ConnectTimeout)
	if c.backend == backendNetstack {
		if mode != relay.PointToPoint {
			return errors.New("--backend netstack carries the proxies' UDP on a point-to-point tunnel: drop -o Tunnel=ethernet")
		}
		d := sshDialer(ctx, cfg, stderr, log, nil)
		client := &reconnect.Client{
			Dial:      func(ctx context.Context) (*ssh.Client, error) { return d.Dial(ctx, cfg) },
			Retryable: sshclient.Retryable,
			KeepAlive: keepAlive,
			Mode:      mode,
			Unit:      remote,
			Persist:   c.persist,
			Up:        ready,
			OnState:   service.change,
			Log:       log.With("host", cfg.HostName, "port", cfg.Port),

			AttemptWithin: attemptWithin,
		}
		st.client, service.client = client, client
		defer service.watchdog(ctx, log)()
		self.set(st.report)
		defer serveStatus(c.stateDir, "connect", self.report, log)()
		return exitStatus(connectNetstack(ctx, c, client, st, log))
	}
	host, err := openLocalHost(mode, local, c.stateDir, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, host.Close()) }()
	bypass := host.bypass
	var transport transportAddrs
	d := sshDialer(ctx, cfg, stderr, log, func(network, address string, rc syscall.RawConn) error {
		transport.add(address)
		return bypass.Control(network, address, rc)
	})
	if len(c.via) > 0 && mode != relay.Ethernet {
		return errors.New("--via names a next hop on an ethernet tunnel (-o Tunnel=ethernet); a point-to-point tunnel routes through the device itself")
	}
	if c.transport.terminates() && mode != relay.PointToPoint {
		return errors.New("--transport flow terminates TCP on a point-to-point tunnel: drop -o Tunnel=ethernet, or use --transport packet")
	}
	if c.dhcp && mode != relay.Ethernet {
		return errors.New("--dhcp asks for an address on an ethernet tunnel's link: add -o Tunnel=ethernet")
	}
	lc := kernel.LocalConfig{Mode: mode, Unit: host.unit, MTU: c.mtu, Addrs: c.addrs, Routes: c.routes, Via: c.via, DHCP: c.dhcp,
		Bypass: bypass, Journal: host.journal, Premade: host.premade, DNSGlobal: c.dnsGlobal, Log: log}
	if len(c.peer) > 0 {
		lc.Peer = c.peer[0]
	}
	var (
		// Setup's goroutine sets dev; Update (on a reconnect's goroutine)
		// and the leaving one read it.
		devMu sync.Mutex
		dev   *kernel.Local
		term  *stack.FlowTerminator // with --transport flow
	)
	device := func() *kernel.Local {
		devMu.Lock()
		defer devMu.Unlock()
		return dev
	}
	// With --transport flow the device's TCP goes as flows, dialled as
	// the proxies' are.
	tcpFlows := &flows{log: log}
	client := &reconnect.Client{
		Dial:      func(ctx context.Context) (*ssh.Client, error) { return d.Dial(ctx, cfg) },
		Retryable: sshclient.Retryable,
		KeepAlive: keepAlive,
		Mode:      mode,
		Unit:      remote,
		// A tun or tap on Linux passes super-packets whole when asked
		// (tun.Config.GSO, kernel/tun); the flow terminator takes plain
		// packets.
		GSO: !c.transport.terminates(),
		Setup: func(gw *relay.TunnelConfig) (relay.Device, error) {
			lc.Transport = transport.list()
			if gw != nil && c.transport.terminates() {
				plain := *gw
				plain.GSO = false
				gw = &plain
			}
			l, err := kernel.OpenLocal(lc, gw)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			var local relay.Device = l
			var t *stack.FlowTerminator
			if c.transport.terminates() {
				if t, err = stack.NewFlowTerminator(l, stack.FlowConfig{Dial: tcpFlows.dialDevice, Log: log}); err != nil {
					l.Close()
					return nil, err
				}
				local = t
				log.Info("TCP goes as flows: each connection a direct-tcpip channel")
			}
			devMu.Lock()
			dev, term = l, t
			devMu.Unlock()
			return local, nil
		},
		Update: func(gw *relay.TunnelConfig) error {
			devMu.Lock()
			t := term
			devMu.Unlock()
			if t != nil {
				t.Resume() // a new connection may allow forwarding again
			}
			return device().Update(gw)
		},
		Persist: c.persist,
		Up:      ready,
		OnState: service.change,
		Log:     log.With("host", cfg.HostName, "port", cfg.Port),

		AttemptWithin: attemptWithin,
	}
	tcpFlows.client = client
	service.client = client
	defer service.watchdog(ctx, log)()
	st.flows = func() (stack.FlowStats, bool) {
		devMu.Lock()
		t := term
		devMu.Unlock()
		if t == nil {
			return stack.FlowStats{}, false
		}
		return t.Stats(), true
	}
	st.client, st.device = client, func() string {
		if d := device(); d != nil {
			return d.Name()
		}
		return ""
	}
	self.set(st.report)
	defer serveStatus(c.stateDir, "connect", self.report, log)()
	// The tunnel runs until told to stop, and then a moment more: a DHCP
	// lease goes back through it before it closes.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	stopLeaving := context.AfterFunc(ctx, func() {
		if d := device(); d != nil {
			d.Leave(leaveWait)
		}
		stopRun()
	})
	defer stopLeaving()
	var waitProxies func()
	if c.proxies() {
		// Beside a device, the proxies' flows go as direct-tcpip
		// channels too; UDP goes through the device.
		f := &flows{client: client, log: log}
		ls, err := openProxies(c, f.dial, deviceDatagrams{}, log)
		if err != nil {
			return err
		}
		st.setProxies(ls)
		waitProxies = serveProxies(runCtx, ls, log)
	}
	err = client.Run(runCtx)
	if waitProxies != nil {
		stopRun()
		waitProxies()
	}
	return exitStatus(err)
}

// exitStatus is connect's answer to main for Run's error.
func exitStatus(err error) error {
	if errors.Is(err, sshclient.ErrHostKeyVerification) {
		// ssh's words are on stderr already, ending "Host key
		// verification failed."; like ssh, say no more.
		return &exitError{code: 255}
	}
	return err
}

// sshDialer dials the SSH connection as ssh would, asking the terminal
// for passphrases and host keys unless BatchMode is set; control, if set,
// sees every socket of the transport.
func sshDialer(ctx context.Context, cfg *sshclient.Config, stderr io.Writer, log *slog.Logger, control func(network, address string, rc syscall.RawConn) error) *sshclient.Dialer {
	d := &sshclient.Dialer{Stderr: stderr, Log: log, Control: control}
	if tty, err := sshclient.OpenTTY(stderr); err == nil && !cfg.BatchMode {
		tty.Done = ctx.Done()
		d.Prompt = tty
	}
	return d
}

// transportAddrs collects the addresses the SSH transport's sockets were
// opened to, for the warning about routes that would capture them.
type transportAddrs struct {
	mu    sync.Mutex
	addrs []netip.Addr
}

func (t *transportAddrs) add(address string) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if a := ap.Addr().Unmap(); !slices.Contains(t.addrs, a) {
		t.addrs = append(t.addrs, a)
	}
}

func (t *transportAddrs) list() []netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.addrs)
}

// defaultKeepAlive detects a dead gateway when ServerAliveInterval is not
// set: a VPN must notice a dead peer to reconnect, where an interactive ssh
// session can wait for the user.
const defaultKeepAlive = 15 * time.Second

// leaveWait bounds how long a client that was told to stop waits for its
// DHCP release to go through the tunnel.
const leaveWait = 2 * time.Second

// defaultConnectTimeout bounds a connection's setup when ConnectTimeout is
// not set.
const defaultConnectTimeout = 30 * time.Second

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/proxy"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/reconnect"
	"github.com/sshvpn/sshvpn/relay/sshchan"
	"github.com/sshvpn/sshvpn/relay/sshclient"
	"github.com/sshvpn/sshvpn/stack"
)

// flowWait bounds how long a new proxied flow waits for a connection while
// the client reconnects, before its SOCKS or HTTP client hears why not.
const flowWait = 10 * time.Second

// proxyListener is one listening socket of -D, --http-proxy or -L and what
// it serves.
type proxyListener struct {
	ln     net.Listener
	serve  func(ctx context.Context, ln net.Listener) error
	stats  *proxy.Stats
	kind   string // for sshvpn status: socks (which answers HTTP too), http or forward
	target string // -L's host:port
}

// openProxies opens every listener the flags ask for, before the first
// connection, as ssh binds its forwards first: a port in use is the user's
// to hear about at once, and the listeners stay up across reconnects.
func openProxies(c *connectConfig, dial proxy.DialFunc, udp proxy.Datagrams, log *slog.Logger) ([]proxyListener, error) {
	var auth *proxy.Credentials
	if c.socksAuth != "" {
		var err error
		if auth, err = proxy.LoadCredentials(c.socksAuth); err != nil {
			return nil, fmt.Errorf("--socks-auth: %w", err)
		}
	}
	var (
		out  []proxyListener
		seen = map[string]bool{}
		fail = func(err error) ([]proxyListener, error) {
			for _, l := range out {
				l.ln.Close()
			}
			return nil, err
		}
	)
	// listen opens every address of one spec. An address of a family
	// the host lacks (::1 without IPv6) is skipped if another opens, as in
	// ssh; any other failure, a port in use above all, is the user's to
	// hear: a port another user holds would take the proxy's clients and
	// their passwords. Port 0 takes the first address's port for the rest.
	listen := func(flag, spec string, binds []string, serve func(context.Context, net.Listener) error, stats *proxy.Stats, target string) error {
		var skipped []error
		port := ""
		for _, b := range binds {
			if seen[b] {
				continue // --http-proxy on the -D port: the -D listener answers both
			}
			if host, p, err := net.SplitHostPort(b); err == nil && p == "0" && port != "" {
				b = net.JoinHostPort(host, port)
			}
			ln, err := net.Listen("tcp", b)
			if errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) {
				skipped = append(skipped, err)
				continue
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", flag, spec, err)
			}
			seen[b] = true
			if port == "" {
				_, port, _ = net.SplitHostPort(ln.Addr().String())
			}
			out = append(out, proxyListener{ln, serve, stats, proxyKinds[flag], target})
			if flag != "-L" && auth == nil && !loopbackBind(ln.Addr()) {
				log.Warn("the proxy listens beyond this host with no password: anyone who reaches it uses your connection; give --socks-auth FILE or a loopback address", "flag", flag, "listen", ln.Addr().String())
			}
			if strings.HasSuffix(b, ":0") {
				// As ssh says which port it took; a Warn so that -f, which
				// prints warnings only, shows it too.
				log.Warn("allocated a port", "flag", flag, "on", ln.Addr().String())
			} else {
				log.Info("listening", "flag", flag, "on", ln.Addr().String())
			}
		}
		switch {
		case port == "" && len(skipped) > 0:
			return fmt.Errorf("%s %s: %w", flag, spec, errors.Join(skipped...))
		case len(skipped) > 0:
			log.Info("an address of this host's missing family was skipped", "flag", flag, "err", errors.Join(skipped...))
		}
		return nil
	}
	// One server per spec: its limit and counters are the listener's.
	server := func(socks, http bool) *proxy.Server {
		return proxy.NewServer(proxy.Config{Dial: dial, UDP: udp, Auth: auth, SOCKS: socks, HTTP: http, Log: log})
	}
	for _, spec := range c.dynamic {
		binds, err := proxy.ParseDynamic(c.everyInterface(spec, 1))
		if err == nil {
			s := server(true, true)
			err = listen("-D", spec, binds, s.Serve, s.Stats(), "")
		}
		if err != nil {
			return fail(err)
		}
	}
	for _, spec := range c.httpProxy {
		binds, err := proxy.ParseDynamic(c.everyInterface(spec, 1))
		if err == nil {
			s := server(false, true)
			err = listen("--http-proxy", spec, binds, s.Serve, s.Stats(), "")
		}
		if err != nil {
			return fail(err)
		}
	}
	for _, spec := range c.forwards {
		binds, host, port, err := proxy.ParseLocal(c.everyInterface(spec, 3))
		if err == nil {
			f := &proxy.Forward{Dial: dial, Host: host, Port: port, Log: log}
			err = listen("-L", spec, binds, f.Serve, f.Stats(), net.JoinHostPort(host, strconv.Itoa(int(port))))
		}
		if err != nil {
			return fail(err)
		}
	}
	return out, nil
}

// proxyKinds names each proxy flag's listeners for sshvpn status.
var proxyKinds = map[string]string{"-D": "socks", "--http-proxy": "http", "-L": "forward"}

// everyInterface gives a spec of n fields with no bind address the "*"
// bind of every interface when -g is set, as ssh's GatewayPorts does.
func (c *connectConfig) everyInterface(spec string, n int) string {
	if !c.gatewayPorts || fields(spec) != n {
		return spec
	}
	return "*:" + spec
}

// fields counts spec's colon-separated fields, a bracketed IPv6 address
// being one.
func fields(spec string) int {
	n, depth := 1, 0
	for _, r := range spec {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				n++
			}
		}
	}
	return n
}

func loopbackBind(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// serveProxies runs the listeners until ctx ends, then closes them; wait
// returns when every connection they served has ended.
func serveProxies(ctx context.Context, ls []proxyListener, log *slog.Logger) (wait func()) {
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(func() {
			if err := l.serve(ctx, l.ln); err != nil && ctx.Err() == nil {
				log.Error("proxy listener stopped", "on", l.ln.Addr().String(), "err", err)
			}
			s := l.stats.Snapshot()
			log.Info("proxy listener closed", "on", l.ln.Addr().String(), "connections", s.Accepted, "refused_at_limit", s.Refused,
				"auth_failures", s.AuthFailures, "dial_failures", s.DialFailures, "bytes_out", s.BytesOut, "bytes_in", s.BytesIn,
				"udp_out", s.UDPOut, "udp_in", s.UDPIn, "udp_dropped", s.UDPDropped)
		})
	}
	return wg.Wait
}

// flows dials the proxies' TCP flows: each as a direct-tcpip channel of
// its own on the connection that is up (no TCP inside TCP, and the far end
// resolves names), or through the client's stack on the tunnel once the
// server has forbidden forwarding on that connection but gave a tunnel.
// The key's rights are the union of both, as with OpenSSH, whose permitopen
// does not bound a tunnel either: the tunnel is under the gateway's own
// egress policy.
type flows struct {
	client *reconnect.Client
	stack  *localStack // nil on a kernel device: no fallback
	log    *slog.Logger

	mu         sync.Mutex
	prohibited *ssh.Client // the connection that forbade forwarding
	measured   *ssh.Client // the connection extra is for
	extra      uint32      // its flows' window beyond x/crypto's, once its round trip is known
}

// windowExtra is the window a new flow on sc grants beyond x/crypto's
// 2 MiB: sized to sc's round trip, measured once per connection in the
// background; flows opened before it is known keep 2 MiB, all a slow
// start's first round trips need.
func (f *flows) windowExtra(sc *ssh.Client) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.measured != sc {
		f.measured, f.extra = sc, 0
		go func() {
			rtt, err := sshchan.PathRTT(sc)
			if err != nil {
				return // the connection went: the next one measures again
			}
			extra := sshchan.FlowWindowExtra(rtt)
			f.mu.Lock()
			if f.measured == sc {
				f.extra = extra
			}
			f.mu.Unlock()
			f.log.Debug("flows' window sized to the path", "rtt", rtt.Round(100*time.Microsecond), "window_mib", (2<<20+extra)>>20)
		}()
	}
	return f.extra
}

func (f *flows) dial(ctx context.Context, host string, port uint16) (net.Conn, error) {
	target := net.JoinHostPort(host, strconv.Itoa(int(port)))
	var last *ssh.Client
	for try := 0; ; try++ {
		wctx, cancel := context.WithTimeout(ctx, flowWait)
		sc, err := f.client.NextConnection(wctx, last)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", proxy.ErrUnavailable, err)
		}
		if l := f.stack.get(); l != nil && f.forbidden(sc) {
			return dialThrough(ctx, l, host, port)
		}
		conn, err := sshclient.DialFlow(ctx, sc, host, port, f.windowExtra(sc))
		if err == nil {
			return conn, nil
		}
		oe, refused := errors.AsType[*ssh.OpenChannelError](err)
		switch {
		case refused && oe.Reason == ssh.Prohibited:
			if l := f.stack.get(); l != nil {
				f.forbid(sc, oe)
				return dialThrough(ctx, l, host, port)
			}
		case !refused && try == 0:
			// The connection died under the open: once more, on the
			// next one.
			last = sc
			continue
		}
		return nil, flowError(target, err)
	}
}

// forbidden reports whether sc forbade forwarding.
func (f *flows) forbidden(sc *ssh.Client) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.prohibited == sc
}

// forbid remembers that sc refuses forwarding, so that later flows go
// through the tunnel at once rather than pay a refused open each, and says
// so once per connection.
func (f *flows) forbid(sc *ssh.Client, why *ssh.OpenChannelError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prohibited != sc {
		f.prohibited = sc
		f.log.Info("the server forbids forwarding on this connection: TCP flows go through the tunnel instead", "why", why.Message)
	}
}

// dialThrough dials host:port from the client's stack, resolving a name
// through the tunnel's name servers, never the host's.
func dialThrough(ctx context.Context, l *stack.Local, host string, port uint16) (net.Conn, error) {
	addrs, err := l.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("%w: resolve %s through the tunnel: %v", proxy.ErrHostUnreachable, host, err)
	}
	var errs []error
	for _, a := range addrs {
		conn, err := l.DialTCP(ctx, netip.AddrPortFrom(a, port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// flowError explains a refused direct-tcpip channel in the proxies' terms.
// A server says why only in words: sshd passes on strerror (Connection
// refused), an sshvpn gateway its dialler's error.
func flowError(target string, err error) error {
	oe, ok := errors.AsType[*ssh.OpenChannelError](err)
	if !ok {
		return fmt.Errorf("%w: open a channel to %s: %v", proxy.ErrUnavailable, target, err)
	}
	msg := strings.ToLower(oe.Message)
	kind := proxy.ErrUnavailable
	switch {
	case oe.Reason == ssh.Prohibited:
		kind = proxy.ErrNotAllowed
	case strings.Contains(msg, "refused"):
		kind = proxy.ErrRefused
	case strings.Contains(msg, "timed out"), strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline"):
		kind = proxy.ErrTimeout
	case strings.Contains(msg, "network is unreachable"):
		kind = proxy.ErrNetUnreachable
	case strings.Contains(msg, "unreachable"), strings.Contains(msg, "no route"), strings.Contains(msg, "no such host"),
		strings.Contains(msg, "not known"), strings.Contains(msg, "getaddrinfo"):
		kind = proxy.ErrHostUnreachable
	case oe.Reason == ssh.ConnectionFailed:
		kind = proxy.ErrHostUnreachable
	}
	why := oe.Message
	if why == "" || why == "open failed" {
		why = oe.Reason.String()
	}
	if oe.Reason == ssh.Prohibited {
		return fmt.Errorf("%w: the server refuses to forward to %s: %s", kind, target, why)
	}
	return fmt.Errorf("%w: the server could not connect to %s: %s", kind, target, why)
}

// localStack is the client's own stack once a tunnel brought one: the
// proxies' UDP, and their TCP where forwarding is forbidden.
type localStack struct {
	mu     sync.Mutex
	l      *stack.Local
	why    string // why there is none, for the proxies' errors
	warned bool   // a refused UDP request was logged
	log    *slog.Logger
}

// noTunnelBecause records why the connection has no tunnel.
func (s *localStack) noTunnelBecause(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.why = why
}

func (s *localStack) get() *stack.Local {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.l
}

func (s *localStack) set(l *stack.Local) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.l, s.why = l, ""
}

// ListenUDP implements proxy.Datagrams.
func (s *localStack) ListenUDP(ctx context.Context) (net.PacketConn, error) {
	l := s.get()
	if l == nil {
		return nil, s.noTunnel()
	}
	return l.ListenUDP(ctx)
}

// LookupHost implements proxy.Datagrams.
func (s *localStack) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	l := s.get()
	if l == nil {
		return nil, s.noTunnel()
	}
	return l.LookupHost(ctx, host)
}

// noTunnel is the proxies' error for UDP without a tunnel; the first one
// is also logged, once, since the SOCKS client shows only a reply code.
func (s *localStack) noTunnel() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The server's refusal is "not supported" (SOCKS5 07) until a
	// reconnect brings a tunnel; one not up yet is a passing failure.
	why, kind := s.why, proxy.ErrNotSupported
	if why == "" {
		why, kind = "it is not up yet", proxy.ErrUnavailable
	}
	err := fmt.Errorf("%w: UDP goes through the tunnel, and there is none: %s", kind, why)
	if !s.warned && s.log != nil {
		s.warned = true
		s.log.Warn("a UDP request was refused (further ones are only answered)", "err", err)
	}
	return err
}

// errNoDevice marks the kernel path's UDP: a device carries UDP itself.
var errNoDevice = fmt.Errorf("%w: UDP ASSOCIATE needs --backend netstack; with a tun device, send UDP through the device", proxy.ErrNotSupported)

// deviceDatagrams is proxy.Datagrams beside a kernel device: none.
type deviceDatagrams struct{}

func (deviceDatagrams) ListenUDP(context.Context) (net.PacketConn, error) { return nil, errNoDevice }
func (deviceDatagrams) LookupHost(context.Context, string) ([]netip.Addr, error) {
	return nil, errNoDevice
}

// connectNetstack is sshvpn connect without a device, and without root:
// the proxies serve the far network from local ports. Their TCP flows go
// as direct-tcpip channels; their UDP through the tunnel into a stack of
// the process's own that holds the tunnel's address. Nothing on the host
// changes.
func connectNetstack(ctx context.Context, c *connectConfig, client *reconnect.Client, st *clientStatus, log *slog.Logger) error {
	tuneGC()
	ls := &localStack{log: log}
	client.Flows = true
	client.GSO = false
	client.SkipTunnel = func(server []byte) string {
		if len(c.addrs) > 0 || sshchan.PeerOf(server) == sshchan.SSHVPN {
			return ""
		}
		return "the server is not an sshvpn gateway, which would give the tunnel an address: pass --address (and have PermitTunnel yes on the server) for UDP"
	}
	client.NoTunnel = ls.noTunnelBecause
	client.Setup = func(gw *relay.TunnelConfig) (relay.Device, error) {
		lc := stack.LocalConfig{MTU: c.mtu, Addresses: c.addrs, Log: log}
		if gw != nil {
			if lc.MTU == 0 {
				lc.MTU = gw.MTU
			}
			if len(lc.Addresses) == 0 {
				lc.Addresses = gw.Addresses
			}
			lc.DNS = gw.DNS
		}
		if len(lc.Addresses) == 0 {
			return nil, errors.New("the tunnel has no address for the proxies' stack: pass --address")
		}
		l, err := stack.NewLocal(lc)
		if err != nil {
			return nil, err
		}
		ls.set(l)
		log.Info("tunnel stack up", "addresses", lc.Addresses, "dns", lc.DNS)
		return l, nil
	}
	client.Update = func(gw *relay.TunnelConfig) error {
		l := ls.get()
		if l == nil || len(c.addrs) > 0 {
			return nil
		}
		return l.Update(gw.Addresses, gw.DNS)
	}
	f := &flows{client: client, stack: ls, log: log}
	listeners, err := openProxies(c, f.dial, ls, log)
	if err != nil {
		return err
	}
	st.setProxies(listeners)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	wait := serveProxies(runCtx, listeners, log)
	err = client.Run(runCtx)
	stop()
	wait()
	return err
}

// tuneGC trades memory for CPU where the user has not chosen: every SSH
// packet x/crypto reads is a new buffer, so a download runs the collector
// dozens of times a second over a heap of a few MiB, and on a 2-core
// machine that cost a download from a stock sshd a fifth of its speed
// against ssh -D (bench/README.md). The collector then runs at 400 %
// growth, and harder again as the heap nears 512 MiB.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(512 << 20)
	}
}

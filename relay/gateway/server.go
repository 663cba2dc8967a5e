package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/keepalive"
	"github.com/sshvpn/sshvpn/relay/sshchan"
)

// DefaultCiphers is AES-GCM alone. The server must take the client's first
// match, and stock clients list chacha20-poly1305 first and, before 9.x's
// later releases, AES-CTR before AES-GCM: offering either would make those
// clients pick it, and x/crypto/ssh runs AES-GCM about three times faster
// than chacha20 (CTR adds an HMAC on top). Every OpenSSH since 6.2 speaks
// AES-GCM; --ciphers offers others.
var DefaultCiphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}

// CheckCiphers refuses a cipher list x/crypto/ssh cannot offer safely:
// unknown names, and the CBC, 3DES and RC4 ciphers it still implements.
func CheckCiphers(ciphers []string) error {
	if len(ciphers) == 0 {
		return errors.New("no cipher given")
	}
	ok := ssh.SupportedAlgorithms().Ciphers
	for _, c := range ciphers {
		switch {
		case slices.Contains(ok, c):
		case slices.Contains(ssh.InsecureAlgorithms().Ciphers, c):
			return fmt.Errorf("cipher %q is insecure (CBC, 3DES or RC4) and is not offered; want some of %s", c, strings.Join(ok, ","))
		default:
			return fmt.Errorf("unknown cipher %q; want some of %s", truncate(c, 64), strings.Join(ok, ","))
		}
	}
	return nil
}

// keyExchanges are x/crypto's secure key exchanges: its default list also
// offers diffie-hellman-group14-sha1, which sshd has not offered by default
// since 8.x.
func keyExchanges() []string { return ssh.SupportedAlgorithms().KeyExchanges }

// Config configures a gateway.
type Config struct {
	HostKeys     []ssh.Signer
	Keys         *AuthorizedKeys
	PermitTunnel PermitTunnel
	Ciphers      []string     // nil means DefaultCiphers
	Backend      relay.Opener // where each tunnel's packets go
	Limits       Limits
	Log          *slog.Logger
	// ClientAliveInterval and ClientAliveCountMax are sshd's: a client
	// that answers no keepalive for Interval×CountMax is disconnected, so
	// a vanished client's devices and addresses are freed. 0 disables.
	ClientAliveInterval time.Duration
	ClientAliveCountMax int
}

// The keepalives sshvpn serve sends by default, where sshd sends none: a
// VPN gateway must free a vanished client's address and tunnel slot in
// under a minute, not when TCP gives up hours later.
const (
	DefaultClientAliveInterval = 15 * time.Second
	DefaultClientAliveCountMax = 3
)

// Server is an SSH server that carries tun@openssh.com tunnels.
type Server struct {
	cfg    Config
	limits atomic.Pointer[Limits] // SetLimits replaces it whole
	ssh    *ssh.ServerConfig
	log    *slog.Logger
	refuse *relay.Throttle // refused connections, logged a few at a time

	wg          sync.WaitGroup
	mu          sync.Mutex
	conns       map[net.Conn]*connState // nil while handshaking
	handshaking int
	sources     map[source]*sourceState
	keys        map[string]*keyUse // by key fingerprint
	refused     Refused
	closing     bool
	// authFailures counts refused logins by reason, startupsRefused the
	// connections refused before their handshake: for Status.
	authFailures    map[string]uint64
	startupsRefused uint64

	// statusMu orders a departing tunnel against Status: held from
	// before a connection's mu, it makes moving a tunnel's counts into
	// departed (the traffic of tunnels that are gone) one step.
	statusMu sync.Mutex
	departed [2]relay.Snapshot // in, out
	// What the per-client limits of departed tunnels refused (their
	// backend's flows and memory), so that the counts never go back.
	departedFlowsRefused, departedMemoryRefused uint64
}

// keyOptionsKey is where the authorized_keys options travel from the
// authentication callback to the channel handlers.
type keyOptionsKey struct{}

// login is what authentication learned about a client.
type login struct {
	opts *KeyOptions
	key  string // SHA256 fingerprint
}

// New checks cfg and builds the SSH configuration.
func New(cfg Config) (*Server, error) {
	if len(cfg.HostKeys) == 0 || cfg.Keys == nil || cfg.Backend == nil {
		return nil, errors.New("gateway: Config needs HostKeys, Keys and Backend")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Ciphers == nil {
		cfg.Ciphers = DefaultCiphers
	}
	if err := CheckCiphers(cfg.Ciphers); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, refuse: relay.NewThrottle(10 * time.Second),
		conns: make(map[net.Conn]*connState), sources: make(map[source]*sourceState), keys: make(map[string]*keyUse),
		authFailures: make(map[string]uint64)}
	s.SetLimits(cfg.Limits)
	s.ssh = &ssh.ServerConfig{
		Config:            ssh.Config{Ciphers: cfg.Ciphers, KeyExchanges: keyExchanges()},
		PublicKeyCallback: s.authenticate,
		ServerVersion:     "SSH-2.0-sshvpn",
	}
	for _, k := range cfg.HostKeys {
		s.ssh.AddHostKey(k)
	}
	return s, nil
}

func (s *Server) authenticate(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	opts, err := s.cfg.Keys.Lookup(key, meta.User(), meta.RemoteAddr())
	if err != nil {
		_, cert := key.(*ssh.Certificate)
		s.countAuthFailure(refusalReason(err, cert))
		s.log.Info("key refused", "user", truncate(meta.User(), 64), "remote", meta.RemoteAddr(), "why", err)
		return nil, err
	}
	return &ssh.Permissions{ExtraData: map[any]any{keyOptionsKey{}: login{opts, ssh.FingerprintSHA256(identity(key))}}}, nil
}

// Serve accepts connections on ln until ctx ends or ln is closed, then
// closes every connection and returns once all their tunnels are torn down,
// or after shutdownWait with an error naming what was still open.
// A failing Accept (out of file descriptors, say) is retried with backoff,
// as net/http does: it must not take every client's tunnel down.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for backoff := time.Duration(0); ; {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		src := sourceOf(c.RemoteAddr())
		if why := s.track(c, src); why != "" {
			if n, ok := s.refuse.Allow(why); ok {
				s.log.Warn("connection refused before the handshake", "remote", c.RemoteAddr(), "why", why, "refused_since_last", n)
			}
			c.Close()
			continue
		}
		s.wg.Go(func() {
			defer s.untrack(c)
			s.serveConn(ctx, c, src)
		})
	}
	s.closeAll()
	if werr := s.wait(); werr != nil {
		return werr
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
}

// shutdownWait bounds how long Serve waits for connections to close once
// it has closed their sockets: tearing down a tunnel takes milliseconds, so
// anything still open after this is stuck, and the gateway must still exit
// and undo its host changes.
const shutdownWait = 3 * time.Second

func (s *Server) wait() error {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(shutdownWait):
	}
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return fmt.Errorf("%d connections still open %v after the gateway closed them; stopping without them", n, shutdownWait)
}

// closeAll closes every connection, handshaking or not, and refuses new
// ones.
func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for c := range s.conns {
		c.Close()
	}
}

// track registers a connection from its accept on, unless the limits
// refuse it; then it returns why.
func (s *Server) track(c net.Conn, src source) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if why := s.admit(src, time.Now()); why != "" {
		if !s.closing {
			s.startupsRefused++
		}
		return why
	}
	s.conns[c] = nil
	return ""
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// authenticated records c's state once its client logged in.
func (s *Server) authenticated(c net.Conn, cs *connState) {
	s.mu.Lock()
	s.conns[c] = cs
	s.mu.Unlock()
}

func (s *Server) serveConn(ctx context.Context, c net.Conn, src source) {
	grace := time.Now().Add(s.lim().LoginGraceTime)
	c.SetDeadline(grace)
	conn, chans, reqs, err := ssh.NewServerConn(sshchan.BufferReads(c), s.ssh)
	s.handshakeDone(src, err != nil && !time.Now().Before(grace))
	if err != nil {
		s.handshakeFailed(err)
		s.logHandshakeFailure(c, err)
		return
	}
	c.SetDeadline(time.Time{})
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	l, ok := conn.Permissions.ExtraData[keyOptionsKey{}].(login)
	if !ok || l.opts == nil {
		// Every login goes through authenticate; one that did not must
		// not get past restrict and tunnel=.
		s.log.Error("login without authorized_keys options; closing it", "remote", c.RemoteAddr())
		go refuseAll(chans, "login refused")
		return
	}
	log := s.log.With("user", truncate(conn.User(), 64), "remote", conn.RemoteAddr(), "key", l.key)
	if !s.takeKey(l.key, keyConns) {
		why := s.keyRefusal(log, l.key, keyConns)
		go refuseAll(chans, why)
		sshchan.Disconnect(conn, disconnectTooManyConnections, why)
		return
	}
	defer s.giveKey(l.key, keyConns)
	log.Info("client connected", "version", truncate(string(conn.ClientVersion()), 64))
	l.opts.logLogin(log)
	cs := &connState{srv: s, conn: conn, login: l, log: log, since: time.Now()}
	alive := s.watch(ctx, conn, log, cs.rtt.Store)
	s.authenticated(c, cs)
	cs.serve(ctx, chans)
	alive()
	log.Info("client disconnected")
}

// logHandshakeFailure logs why a connection never logged in. A login that
// failed carries the refusal of every key it offered, each already logged
// by authenticate with the user: said again here it would be one refusal
// on two lines, so that goes to debug.
func (s *Server) logHandshakeFailure(c net.Conn, err error) {
	if _, ok := errors.AsType[*ssh.ServerAuthError](err); ok {
		s.log.Debug("login failed", "remote", c.RemoteAddr(), "err", err)
		return
	}
	s.log.Info("ssh handshake failed", "remote", c.RemoteAddr(), "err", err)
}

// refuseAll refuses every channel a connection that is being refused
// opens until it is gone: x/crypto's reader blocks once 16 opens wait
// unread, and would keep its goroutines and the packets behind them
// after the connection closed.
func refuseAll(chans <-chan ssh.NewChannel, why string) {
	for nc := range chans {
		nc.Reject(ssh.ResourceShortage, why)
	}
}

// disconnectTooManyConnections is SSH_DISCONNECT_TOO_MANY_CONNECTIONS
// (RFC 4253 §11.1): ssh prints it with the reason's text.
const disconnectTooManyConnections = 12

// Refused counts what the limits refused so far.
func (s *Server) Refused() *Refused { return &s.refused }

// watch sends the client keepalives until the returned stop is called,
// which also waits for the watcher to end.
func (s *Server) watch(ctx context.Context, conn ssh.Conn, log *slog.Logger, rtt func(int64)) (stop func()) {
	if s.cfg.ClientAliveInterval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := keepalive.Watch(ctx, conn, s.cfg.ClientAliveInterval, s.cfg.ClientAliveCountMax, func(d time.Duration) { rtt(int64(d)) }); err != nil && ctx.Err() == nil {
			log.Warn("client not responding; disconnecting it", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

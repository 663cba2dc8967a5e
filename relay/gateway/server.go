package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/keepalive"
)

// DefaultCiphers is AES-GCM alone. The server must take the client's first
// match, and stock clients list chacha20-poly1305 first and, before 9.x's
// later releases, AES-CTR before AES-GCM: offering either would make those
// clients pick it, and x/crypto/ssh runs AES-GCM about three times faster
// than chacha20 (CTR adds an HMAC on top). Every OpenSSH since 6.2 speaks
// AES-GCM; --ciphers offers others.
var DefaultCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}

// Config configures a gateway.
type Config struct {
	HostKeys     []ssh.Signer
	Keys         *AuthorizedKeys
	PermitTunnel PermitTunnel
	Ciphers      []string     // nil means DefaultCiphers
	MTU          int          // tunnel MTU
	Backend      relay.Opener // where each tunnel's packets go
	Log          *slog.Logger
	// ClientAliveInterval and ClientAliveCountMax are sshd's: a client
	// that answers no keepalive for Interval×CountMax is disconnected, so
	// a vanished client's devices and addresses are freed. 0 disables.
	ClientAliveInterval time.Duration
	ClientAliveCountMax int
}

// Server is an SSH server that carries tun@openssh.com tunnels.
type Server struct {
	cfg Config
	ssh *ssh.ServerConfig
	log *slog.Logger

	wg          sync.WaitGroup
	mu          sync.Mutex
	conns       map[net.Conn]*connState // nil while handshaking
	handshaking int
	closing     bool
}

// keyOptionsKey is where the authorized_keys options travel from the
// authentication callback to the channel handlers.
type keyOptionsKey struct{}

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
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	s := &Server{cfg: cfg, log: cfg.Log, conns: make(map[net.Conn]*connState)}
	s.ssh = &ssh.ServerConfig{
		Config:            ssh.Config{Ciphers: cfg.Ciphers},
		PublicKeyCallback: s.authenticate,
		ServerVersion:     "SSH-2.0-sshvpn",
	}
	for _, k := range cfg.HostKeys {
		s.ssh.AddHostKey(k)
	}
	return s, nil
}

func (s *Server) authenticate(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	opts, err := s.cfg.Keys.Lookup(key, meta.RemoteAddr())
	if err != nil {
		s.log.Info("key refused", "user", meta.User(), "remote", meta.RemoteAddr(), "why", err)
		return nil, err
	}
	return &ssh.Permissions{ExtraData: map[any]any{keyOptionsKey{}: opts}}, nil
}

// Serve accepts connections on ln until ctx ends or ln is closed, then
// closes every connection and returns once all their tunnels are torn down.
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
		if !s.track(c) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serveConn(ctx, c)
		}()
	}
	s.closeAll()
	s.wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
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

// maxHandshakes bounds unauthenticated connections, as sshd's MaxStartups
// does, so a flood of them cannot use up file descriptors for everyone.
const maxHandshakes = 64

// track registers a connection from its accept on; it refuses once Serve is
// stopping or too many are still handshaking.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.handshaking >= maxHandshakes {
		return false
	}
	s.handshaking++
	s.conns[c] = nil
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// handshakeDone counts a connection out of the unauthenticated ones.
func (s *Server) handshakeDone() {
	s.mu.Lock()
	s.handshaking--
	s.mu.Unlock()
}

// authenticated records c's state once its client logged in.
func (s *Server) authenticated(c net.Conn, cs *connState) {
	s.mu.Lock()
	s.conns[c] = cs
	s.mu.Unlock()
}

// handshakeTimeout bounds how long an unauthenticated client may hold a
// connection.
const handshakeTimeout = 30 * time.Second

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(c, s.ssh)
	s.handshakeDone()
	if err != nil {
		s.log.Info("ssh handshake failed", "remote", c.RemoteAddr(), "err", err)
		return
	}
	c.SetDeadline(time.Time{})
	defer conn.Close()
	log := s.log.With("user", conn.User(), "remote", conn.RemoteAddr())
	log.Info("client connected", "version", string(conn.ClientVersion()))
	go ssh.DiscardRequests(reqs)
	alive := s.watch(ctx, conn, log)
	cs := &connState{srv: s, conn: conn, log: log}
	s.authenticated(c, cs)
	cs.serve(ctx, chans)
	alive()
	log.Info("client disconnected")
}

// watch sends the client keepalives until the returned stop is called,
// which also waits for the watcher to end.
func (s *Server) watch(ctx context.Context, conn ssh.Conn, log *slog.Logger) (stop func()) {
	if s.cfg.ClientAliveInterval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := keepalive.Watch(ctx, conn, s.cfg.ClientAliveInterval, s.cfg.ClientAliveCountMax); err != nil && ctx.Err() == nil {
			log.Warn("client not responding; disconnecting it", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

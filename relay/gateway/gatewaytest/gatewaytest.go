// Package gatewaytest runs a gateway.Server on loopback for tests, with
// fake devices (relaytest.Dev) behind its tunnels, so that tests of the
// gateway and of clients talk to the real server over real SSH.
package gatewaytest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// MTU is the fake devices' MTU, and the gateway's.
const MTU = 1500

// KeyComment is the comment on Client's authorized_keys line.
const KeyComment = "client@gatewaytest"

// Gateway is a running server.
type Gateway struct {
	Addr   string
	Server *gateway.Server
	Client ssh.Signer // a key the gateway authorizes

	mu   sync.Mutex
	devs []*relaytest.Dev
	reqs []relay.TunnelRequest
	rtts []*atomic.Int64
}

// Options shape the gateway.
type Options struct {
	Permit     gateway.PermitTunnel // "" means yes
	KeyOptions string               // authorized_keys options for Client
	Log        io.Writer            // the server's log; nil for the test's output
	Limits     gateway.Limits
	// ClientAliveInterval is the gateway's keepalive interval; 0: none.
	ClientAliveInterval time.Duration
	// Dial, when set, makes the backend a relay.StreamDialer that carries
	// direct-tcpip channels (ssh -L, -D, -W) through it.
	Dial func(ctx context.Context, req relay.StreamRequest) (net.Conn, error)
}

// NewSigner makes an Ed25519 key.
func NewSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Start runs a gateway until the test ends, and fails the test if Serve
// does not return cleanly then.
func Start(t testing.TB, o Options) *Gateway {
	t.Helper()
	if o.Permit == "" {
		o.Permit = gateway.PermitYes
	}
	g := &Gateway{Client: NewSigner(t)}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(g.Client.PublicKey()))) + " " + KeyComment
	if o.KeyOptions != "" {
		line = o.KeyOptions + " " + line
	}
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte("# a comment\n\n"+line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if o.Log == nil {
		o.Log = t.Output()
	}
	log := slog.New(slog.NewTextHandler(o.Log, nil))
	keys, err := gateway.LoadAuthorizedKeys(path, log)
	if err != nil {
		t.Fatal(err)
	}
	var backend relay.Opener = g
	if o.Dial != nil {
		backend = streams{g, o.Dial}
	}
	srv, err := gateway.New(gateway.Config{
		HostKeys: []ssh.Signer{NewSigner(t)}, Keys: keys, PermitTunnel: o.Permit,
		Backend: backend, Log: log, Limits: o.Limits, ClientAliveInterval: o.ClientAliveInterval, ClientAliveCountMax: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	g.Server = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.Addr = ln.Addr().String()
	Serve(t, srv, ln)
	return g
}

// Serve runs srv on ln until the test ends, and fails the test if Serve
// does not return cleanly then.
func Serve(t testing.TB, srv *gateway.Server, ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// streams is the backend when Options.Dial is set.
type streams struct {
	*Gateway
	dial func(ctx context.Context, req relay.StreamRequest) (net.Conn, error)
}

// DialStream implements relay.StreamDialer.
func (s streams) DialStream(ctx context.Context, req relay.StreamRequest) (net.Conn, error) {
	return s.dial(ctx, req)
}

// Open implements relay.Opener with a fake device.
func (g *Gateway) Open(ctx context.Context, req relay.TunnelRequest) (relay.Tunnel, error) {
	d, rtt := relaytest.New(MTU, 8), new(atomic.Int64)
	g.mu.Lock()
	g.devs, g.reqs, g.rtts = append(g.devs, d), append(g.reqs, req), append(g.rtts, rtt)
	g.mu.Unlock()
	return Tunnel{d, rtt}, nil
}

// PathRTTs are the round trips the gateway told each tunnel so far, in
// order; 0 for one it has not told yet.
func (g *Gateway) PathRTTs() []time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]time.Duration, len(g.rtts))
	for i, r := range g.rtts {
		out[i] = time.Duration(r.Load())
	}
	return out
}

// Devs are the devices of the tunnels opened so far, in order.
func (g *Gateway) Devs() []*relaytest.Dev {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*relaytest.Dev(nil), g.devs...)
}

// Reqs are the tunnel requests the backend was given, in order.
func (g *Gateway) Reqs() []relay.TunnelRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]relay.TunnelRequest(nil), g.reqs...)
}

// ClientConfig logs in with Client and ignores the host key.
func (g *Gateway) ClientConfig(version string) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User: "test", Auth: []ssh.AuthMethod{ssh.PublicKeys(g.Client)}, ClientVersion: version,
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second,
	}
}

// Dial connects until the test ends.
func (g *Gateway) Dial(t testing.TB) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", g.Addr, g.ClientConfig(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Tunnel is a fake device with a tunnel's description. It records the
// path's round trip the gateway tells it, as the rootless stack's does.
type Tunnel struct {
	*relaytest.Dev
	rtt *atomic.Int64
}

// SetPathRTT implements relay.PathTuner.
func (t Tunnel) SetPathRTT(rtt time.Duration) { t.rtt.Store(int64(rtt)) }

// Config implements relay.Tunnel.
func (Tunnel) Config() relay.TunnelConfig {
	return relay.TunnelConfig{Device: "fake0", MTU: MTU, Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.3.2/24")},
		Gateways: []netip.Addr{netip.MustParseAddr("198.18.3.1")}, Routes: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}}
}

// Status implements relay.Tunnel.
func (Tunnel) Status() string { return "sshvpn: fake tunnel up (MTU 1500)\n" }

// Report implements relay.Reporter with fixed figures, which a gateway's
// Status passes on.
func (Tunnel) Report() relay.TunnelReport {
	return relay.TunnelReport{Claimed: []netip.Addr{netip.MustParseAddr("198.18.3.9")}, Flows: &relay.Usage{Used: 2, Limit: 100, Refused: 5},
		Memory: &relay.Usage{Used: 1 << 20, Limit: 64 << 20, Refused: 1}}
}

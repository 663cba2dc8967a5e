package gateway_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// A session answers one shell or exec and refuses the rest: 2,000 of them
// start no writers, corrupt nothing, and the gateway still stops promptly.
func TestSessionTakesOneCommand(t *testing.T) {
	before := runtime.NumGoroutine()
	var log relaytest.Buffer
	g := gatewaytest.Start(t, gatewaytest.Options{Log: &log})
	c := g.Dial(t)
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	accepted := 0
	for i := range 2000 {
		kind := "shell"
		if i%2 == 1 {
			kind = "exec"
		}
		ok, err := ch.SendRequest(kind, true, ssh.Marshal(struct{ Command string }{"uptime"}))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if ok {
			accepted++
		}
	}
	if accepted != 1 {
		t.Errorf("%d of 2000 shell/exec requests accepted, want 1", accepted)
	}
	if n := runtime.NumGoroutine(); n > before+60 {
		t.Errorf("%d goroutines after 2000 requests, %d before: writers pile up", n, before)
	}
	// The status arrives once and whole.
	buf := make([]byte, 4096)
	n, err := ch.Read(buf)
	if err != nil || strings.Count(string(buf[:n]), "This session runs no command") != 1 {
		t.Errorf("status %q, %v", buf[:n], err)
	}
	c.Close()
}

// Serve returns promptly once its context ends, with a client connected
// whose session holds a status writer.
func TestServeStopsWithClientsConnected(t *testing.T) {
	keys, signer := authorizedKeys(t)
	srv, err := gateway.New(gateway.Config{HostKeys: []ssh.Signer{gatewaytest.NewSigner(t)}, Keys: keys,
		PermitTunnel: gateway.PermitYes, Backend: &gatewaytest.Gateway{}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	c, err := ssh.Dial("tcp", ln.Addr().String(), &ssh.ClientConfig{User: "t", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, _, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ch.SendRequest("shell", true, nil)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5 s of its context ending")
	}
	t.Logf("Serve returned %v after its context ended", time.Since(start).Round(time.Millisecond))
}

// authorizedKeys writes a file holding a fresh key, and loads it.
func authorizedKeys(t *testing.T) (*gateway.AuthorizedKeys, ssh.Signer) {
	t.Helper()
	s := gatewaytest.NewSigner(t)
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(s.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := gateway.LoadAuthorizedKeys(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys, s
}

// One key may hold only so many tunnels over all its connections.
func TestTunnelsPerKey(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{Limits: gateway.Limits{MaxTunnelsPerKey: 3}})
	var open []ssh.Channel
	var refusal error
	for i := range 3 {
		c := g.Dial(t) // two connections' worth of tunnels
		for range 2 {
			ch, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit)
			if err != nil {
				refusal = err
				continue
			}
			open = append(open, ch)
		}
		_ = i
	}
	if len(open) != 3 {
		t.Errorf("one key holds %d tunnels, want the limit of 3", len(open))
	}
	if oe, ok := errors.AsType[*ssh.OpenChannelError](refusal); !ok || oe.Reason != ssh.ResourceShortage ||
		!strings.Contains(oe.Message, "already holds 3 tunnels") {
		t.Errorf("refusal %v, want resource shortage naming the limit", refusal)
	}
}

// Many idle connections from one source do not block another's login,
// and the source itself is held to its own share.
func TestPerSourceStartups(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{Limits: gateway.Limits{PerSourceMaxStartups: 4, MaxStartups: 64}})
	host, port, _ := net.SplitHostPort(g.Addr)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 64 {
		c, err := net.Dial("tcp", g.Addr) // from 127.0.0.1
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// Another source (127.0.0.2 reaches the same loopback listener) logs in
	// at once; the flooding one is refused.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", net.JoinHostPort(host, port))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sc, _, _, err := ssh.NewClientConn(conn, g.Addr, g.ClientConfig(""))
	if err != nil {
		t.Fatalf("a login from another source while one floods: %v", err)
	}
	sc.Close()
	took := time.Since(start)
	t.Logf("with 64 idle connections from 127.0.0.1, a login from 127.0.0.2 took %v", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("the login took %v", took)
	}
	if _, err := ssh.Dial("tcp", g.Addr, g.ClientConfig("")); err == nil {
		t.Error("the flooding source logged in past its share of unauthenticated connections")
	}
	// sshvpn status counts them: 60 of the 64, and the last dial.
	if n := g.Server.Status().Refused["startups"]; n < 61 {
		t.Errorf("status counts %d connections refused before their handshake, want at least 61", n)
	}
}

// group14-sha1 is not offered, as sshd 9.x does not offer it by default.
func TestNoSHA1KeyExchange(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{})
	cfg := g.ClientConfig("")
	cfg.KeyExchanges = []string{ssh.InsecureKeyExchangeDH14SHA1}
	if c, err := ssh.Dial("tcp", g.Addr, cfg); err == nil {
		c.Close()
		t.Fatal("a client offering only diffie-hellman-group14-sha1 connected")
	}
	cfg.KeyExchanges = []string{ssh.KeyExchangeCurve25519}
	c, err := ssh.Dial("tcp", g.Addr, cfg)
	if err != nil {
		t.Fatalf("curve25519: %v", err)
	}
	c.Close()
}

// What a peer sends is not echoed back whole: a 40 KiB channel type gets
// a refusal of a line.
func TestRefusalTruncatesPeerInput(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{Log: io.Discard})
	_, _, err := g.Dial(t).OpenChannel(strings.Repeat("x", 40<<10), nil)
	oe, ok := errors.AsType[*ssh.OpenChannelError](err)
	if !ok {
		t.Fatalf("OpenChannel = %v, want a refusal", err)
	}
	if oe.Reason != ssh.UnknownChannelType || len(oe.Message) > 200 {
		t.Fatalf("refusal %v (%d bytes of text), want unknown channel type in a line", err, len(oe.Message))
	}
}

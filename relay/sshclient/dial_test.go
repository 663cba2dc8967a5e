package sshclient

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"golang.org/x/crypto/ssh/agent"

	"github.com/sshvpn/sshvpn/relay/keepalive"
)

// testKey is a key pair with its private half available for files and the
// agent.
type testKey struct {
	priv ed25519.PrivateKey
	pub  ssh.PublicKey
}

func newTestKey(t *testing.T) testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv, s.PublicKey()}
}

// write stores the key in OpenSSH format (encrypted when passphrase is
// set) and returns the path.
//
// An encrypted key gets one bcrypt KDF round (ssh-keygen -a 1) instead of
// x/crypto's 16: each attempt to decrypt costs the same 16 rounds, which
// under -race on a loaded 2-core machine runs out of a dial's time.
func (k testKey) write(t *testing.T, dir, name, passphrase string) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(k.priv, name)
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, filepath.Join(dir, name), string(pem.EncodeToMemory(block)))
	if passphrase != "" {
		requireTool(t, "ssh-keygen")
		out, err := exec.Command("ssh-keygen", "-q", "-p", "-a", "1", "-P", "", "-N", passphrase, "-f", path).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -p: %v\n%s", err, out)
		}
	}
	return path
}

// startAgent serves an x/crypto keyring holding keys on a unix socket.
func startAgent(t *testing.T, keys ...testKey) string {
	t.Helper()
	kr := agent.NewKeyring()
	for _, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k.priv}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				agent.ServeAgent(kr, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return sock
}

// dialTest resolves 127.0.0.1:port with accept-new and dials it.
func dialTest(t *testing.T, d *Dialer, port int, o Options) (*ssh.Client, *Config, error) {
	t.Helper()
	e := testEnv(t)
	o.Destination = firstNonEmpty(o.Destination, "tester@127.0.0.1")
	o.Port = port
	o.ConfigFile = firstNonEmpty(o.ConfigFile, "none")
	o.Opts = append(o.Opts, "StrictHostKeyChecking=accept-new")
	cfg, err := resolve(o, e)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.Dial(ctx, cfg)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, cfg, err
}

func TestDialAgent(t *testing.T) {
	k := newTestKey(t)
	srv := startServer(t, false, k.pub)
	var stderr bytes.Buffer
	c, _, err := dialTest(t, &Dialer{AgentSocket: startAgent(t, k), Stderr: &stderr}, srv.port(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.wantLoggedIn(t, "tester "+ClientVersion)
	eq(t, "client version", string(c.ClientVersion()), ClientVersion)
	if !strings.Contains(stderr.String(), "Permanently added '[127.0.0.1]:"+strconv.Itoa(srv.port())+"' (ED25519)") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

func TestDialIdentityFile(t *testing.T) {
	k := newTestKey(t)
	srv := startServer(t, false, k.pub)
	dir := t.TempDir()
	id := k.write(t, dir, "id_test", "")
	other := newTestKey(t).write(t, dir, "id_other", "")
	_, _, err := dialTest(t, &Dialer{AgentSocket: startAgent(t, newTestKey(t))}, srv.port(),
		Options{Identities: []string{filepath.Join(dir, "missing"), other, id}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDialEncryptedKey(t *testing.T) {
	k := newTestKey(t)
	srv := startServer(t, false, k.pub)
	id := k.write(t, t.TempDir(), "id_enc", "secret")

	// No terminal: the key is skipped with a debug note and nothing is asked.
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, _, err := dialTest(t, &Dialer{AgentSocket: "none", Log: log}, srv.port(), Options{Identities: []string{id}})
	if _, ok := errors.AsType[*PermissionDeniedError](err); !ok {
		t.Fatalf("err = %v, want an authentication failure", err)
	}
	if !strings.Contains(logs.String(), "no terminal") {
		t.Errorf("no debug note about the skipped key:\n%s", logs.String())
	}

	// BatchMode: not asked either.
	p := &fakePrompter{answers: []string{"secret"}}
	_, _, err = dialTest(t, &Dialer{AgentSocket: "none", Prompt: p}, srv.port(),
		Options{Identities: []string{id}, Opts: []string{"BatchMode=yes"}})
	if err == nil || len(p.prompts) != 0 {
		t.Fatalf("BatchMode: err = %v, prompts %q", err, p.prompts)
	}

	// A terminal: one wrong passphrase, then the right one.
	p = &fakePrompter{answers: []string{"wrong", "secret"}}
	d := &Dialer{AgentSocket: "none", Prompt: p}
	if _, _, err = dialTest(t, d, srv.port(), Options{Identities: []string{id}}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("Enter passphrase for key '%s': ", id)
	eq(t, "prompts", p.prompts, []string{want, want})

	// A reconnect through the same Dialer does not ask again.
	if _, _, err = dialTest(t, d, srv.port(), Options{Identities: []string{id}}); err != nil {
		t.Fatal(err)
	}
	eq(t, "prompts after a second dial", p.prompts, []string{want, want})
}

func TestDialEncryptedKeyNotAskedWhenRefused(t *testing.T) {
	k := newTestKey(t)
	srv := startServer(t, false, k.pub)
	dir := t.TempDir()
	enc := newTestKey(t).write(t, dir, "id_enc", "secret") // not authorized
	p := &fakePrompter{}
	if _, _, err := dialTest(t, &Dialer{AgentSocket: startAgent(t, k), Prompt: p}, srv.port(),
		Options{Identities: []string{enc}}); err != nil {
		t.Fatal(err)
	}
	if len(p.prompts) != 0 {
		t.Errorf("asked %q for a key the server never accepted", p.prompts)
	}
}

func TestDialIdentitiesOnly(t *testing.T) {
	a, b := newTestKey(t), newTestKey(t)
	sock := startAgent(t, a, b)
	dir := t.TempDir()
	// Only the public half of a is on disk: a must come from the agent.
	aPub := filepath.Join(dir, "id_a")
	writeFile(t, aPub+".pub", string(ssh.MarshalAuthorizedKey(a.pub)))

	srvB := startServer(t, false, b.pub)
	opts := Options{Identities: []string{aPub}, Opts: []string{"IdentitiesOnly=yes"}}
	if _, _, err := dialTest(t, &Dialer{AgentSocket: sock}, srvB.port(), opts); err == nil {
		t.Error("IdentitiesOnly offered an agent key that matches no identity file")
	}
	if _, _, err := dialTest(t, &Dialer{AgentSocket: sock}, srvB.port(), Options{Identities: []string{aPub}}); err != nil {
		t.Errorf("without IdentitiesOnly: %v", err)
	}
	srvA := startServer(t, false, a.pub)
	if _, _, err := dialTest(t, &Dialer{AgentSocket: sock}, srvA.port(), opts); err != nil {
		t.Errorf("IdentitiesOnly with the matching agent key: %v", err)
	}
}

func TestDialProxyJump(t *testing.T) {
	k := newTestKey(t)
	target := startServer(t, false, k.pub)
	hop1 := startServer(t, true, k.pub)
	hop2 := startServer(t, true, k.pub)
	dir := t.TempDir()
	id := k.write(t, dir, "id", "")
	config := writeFile(t, filepath.Join(dir, "config"), fmt.Sprintf(`
Host target
  HostName 127.0.0.1
  Port %d
  ProxyJump hopuser@hop1,hop2
Host hop1
  HostName 127.0.0.1
  Port %d
Host hop2
  HostName 127.0.0.1
  Port %d
  User hop2user
Host *
  IdentityFile %s
  StrictHostKeyChecking accept-new
`, target.port(), hop1.port(), hop2.port(), id))
	// -o options are not handed to hops (as in ssh); the file accepts new keys.
	c, cfg, err := dialTest(t, &Dialer{AgentSocket: "none"}, 0, Options{Destination: "target", ConfigFile: config})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "proxyjump", cfg.ProxyJump, "hopuser@hop1,hop2")
	hop1.wantLoggedIn(t, "hopuser "+ClientVersion)
	hop2.wantLoggedIn(t, "hop2user "+ClientVersion)
	target.wantLoggedIn(t, "alice "+ClientVersion)
	// The session works end to end: a global request round-trips.
	if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Fatal(err)
	}
}

func TestDialJumpLoop(t *testing.T) {
	dir := t.TempDir()
	config := writeFile(t, filepath.Join(dir, "config"), "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
	e := testEnv(t)
	cfg, err := resolve(Options{Destination: "a", ConfigFile: config}, e)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Dialer{AgentSocket: "none"}).Dial(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("err = %v, want a loop error", err)
	}
}

func TestDialHostKeyMismatchAborts(t *testing.T) {
	k := newTestKey(t)
	srv := startServer(t, false, k.pub)
	e := testEnv(t)
	kh := filepath.Join(e.home, ".ssh", "known_hosts")
	addr := "[127.0.0.1]:" + strconv.Itoa(srv.port())
	writeFile(t, kh, addr+" "+string(ssh.MarshalAuthorizedKey(newTestKey(t).pub)))
	cfg, err := resolve(Options{Destination: "127.0.0.1", Port: srv.port(), ConfigFile: "none",
		Opts: []string{"StrictHostKeyChecking=no"}}, e)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	_, err = (&Dialer{Stderr: &stderr, AgentSocket: startAgent(t, k)}).Dial(context.Background(), cfg)
	if !errors.Is(err, ErrHostKeyVerification) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(stderr.String(), "Offending ED25519 key in "+kh+":1\n") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	if srv.mu.Lock(); len(srv.users) != 0 {
		t.Error("authenticated to a server with a changed host key")
	}
	srv.mu.Unlock()
}

// freezeProxy forwards TCP to a server; while frozen, nothing flows from
// the server to the client (the server looks hung, the socket stays up).
type freezeProxy struct {
	ln     net.Listener
	frozen sync.Mutex // held while frozen
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startFreezeProxy(t *testing.T, target string) *freezeProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(s, c) }()
			go func() { defer p.wg.Done(); p.copyDown(c, s) }()
		}
	}()
	t.Cleanup(func() {
		p.frozen.TryLock()
		p.frozen.Unlock()
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *freezeProxy) copyDown(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		// A gate: the read waits here while the test holds frozen.
		p.frozen.Lock()
		p.frozen.Unlock() //lint:ignore SA2001 the gate above
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func TestKeepAlive(t *testing.T) {
	k := newTestKey(t)
	srv := startServer(t, false, k.pub)
	proxy := startFreezeProxy(t, srv.ln.Addr().String())
	c, _, err := dialTest(t, &Dialer{AgentSocket: startAgent(t, k)}, proxy.ln.Addr().(*net.TCPAddr).Port, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	var rtts atomic.Int64
	var last atomic.Int64
	go func() {
		errc <- keepalive.Watch(ctx, c, 20*time.Millisecond, 3, func(d time.Duration) { rtts.Add(1); last.Store(int64(d)) })
	}()
	select {
	case err := <-errc:
		t.Fatalf("KeepAlive failed while the server answered (false replies): %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// Every answered keepalive is a round trip, on loopback well under a second.
	if n, d := rtts.Load(), time.Duration(last.Load()); n < 3 || d <= 0 || d > time.Second {
		t.Errorf("%d round trips told, the last %v; want several, each in (0, 1s]", n, d)
	}
	proxy.frozen.Lock()
	select {
	case err := <-errc:
		if err == nil || err.Error() != "peer not responding: 3 keepalives unanswered" {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("KeepAlive did not notice the frozen server")
	}
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	select {
	case <-waited: // Watch closed the connection
	case <-time.After(5 * time.Second):
		t.Fatal("the connection is still open after Watch gave up on it")
	}
}

func TestKeepAliveDisabledWaitsForContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := keepalive.Watch(ctx, nil, 0, 3, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

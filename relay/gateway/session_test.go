package gateway_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// startSession opens a shell session on c, on a terminal when pty is set,
// and returns its stdin once the status text has arrived.
func startSession(t *testing.T, c *ssh.Client, pty bool) (*ssh.Session, io.WriteCloser) {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	if pty {
		if err := sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
	}
	in, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := out.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "runs no command") {
		t.Fatalf("status text %q, %v", buf[:n], err)
	}
	go io.Copy(io.Discard, out)
	return sess, in
}

// closed reports whether the gateway closed ch within d.
func closed(ch ssh.Channel, d time.Duration) bool {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, ch)
		done <- err
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Ctrl-D or Ctrl-C on a terminal session ends the connection, as its text
// says: the tunnel's channel closes (a stock ssh stays while it is open),
// the session exits 0, and the gateway drops the connection.
func TestSessionHangUpClosesTheTunnel(t *testing.T) {
	for _, key := range []string{"\x04", "\x03"} {
		g := startGateway(t, gateway.PermitYes, "")
		c := g.Dial(t)
		tun, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit)
		if err != nil {
			t.Fatal(err)
		}
		sess, in := startSession(t, c, true)
		if _, err := in.Write([]byte("typed " + key)); err != nil {
			t.Fatal(err)
		}
		if err := sess.Wait(); err != nil {
			t.Errorf("%q: session ended with %v, want exit status 0", key, err)
		}
		if !closed(tun, 2*time.Second) {
			t.Fatalf("%q: the tunnel's channel is still open after the hangup", key)
		}
		waitErr := make(chan error, 1)
		go func() { waitErr <- c.Wait() }()
		select {
		case <-waitErr:
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: the gateway kept the connection of a client that hung up", key)
		}
	}
}

// With two sessions on one connection (a ControlMaster's ssh -w and an
// ssh -S ctl -t beside it), a hangup in one closes only that one; the
// tunnel goes with the hangup of the last.
func TestSessionHangUpOfOneOfTwo(t *testing.T) {
	g := startGateway(t, gateway.PermitYes, "")
	c := g.Dial(t)
	tun, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit)
	if err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{}) // the tunnel's channel closed: one reader for the test
	go func() {
		io.Copy(io.Discard, tun)
		close(gone)
	}()
	first, firstIn := startSession(t, c, true)
	second, secondIn := startSession(t, c, true)
	if _, err := secondIn.Write([]byte("\x04")); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("the second session ended with %v, want exit status 0", err)
	}
	select {
	case <-gone:
		t.Fatal("a hangup in the second session closed the tunnel the first holds")
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := firstIn.Write([]byte("\x04")); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(); err != nil {
		t.Errorf("the first session ended with %v, want exit status 0", err)
	}
	select {
	case <-gone:
	case <-time.After(2 * time.Second):
		t.Fatal("the tunnel's channel is still open after the last session hung up")
	}
}

// A session's end that is no hangup keeps the tunnel: ssh -N opens none,
// and a session whose stdin ends (ssh </dev/null, without a terminal, or
// with one) or that the client closes leaves the tunnel to the client.
func TestSessionEndKeepsTheTunnel(t *testing.T) {
	for _, tc := range []struct {
		name string
		pty  bool
		end  func(sess *ssh.Session, in io.WriteCloser)
	}{
		{"stdin EOF", false, func(_ *ssh.Session, in io.WriteCloser) { in.Close() }},
		{"stdin EOF on a terminal", true, func(_ *ssh.Session, in io.WriteCloser) { in.Close() }},
		{"closed", true, func(sess *ssh.Session, _ io.WriteCloser) { sess.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, gateway.PermitYes, "")
			c := g.Dial(t)
			tun, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit)
			if err != nil {
				t.Fatal(err)
			}
			sess, in := startSession(t, c, tc.pty)
			tc.end(sess, in)
			if closed(tun, 500*time.Millisecond) {
				t.Fatal("the tunnel's channel closed with the session")
			}
			if _, err := tun.Write(withAF(2, make([]byte, 20))); err != nil {
				t.Fatalf("tunnel after the session: %v", err)
			}
		})
	}
}

// The INFO line of a tunnel says what a person needs (the client's
// addresses), not the gateway's internals (GSO), which go to DEBUG.
func TestTunnelUpLogSaysAddresses(t *testing.T) {
	var log relaytest.Buffer
	g := gatewaytest.Start(t, gatewaytest.Options{Log: &log})
	c := g.Dial(t)
	if _, err := openTunnel(c, relay.PointToPoint, relay.AnyUnit); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), `msg="tunnel up"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no tunnel up line:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for line := range strings.Lines(log.String()) {
		if strings.Contains(line, `msg="tunnel up"`) && (!strings.Contains(line, "addresses=[198.18.3.2/24]") || strings.Contains(line, "gso")) {
			t.Errorf("tunnel up without the client's addresses, or with GSO: %s", line)
		}
	}
}

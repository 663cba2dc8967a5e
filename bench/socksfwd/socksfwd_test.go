//go:build integration

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// bin is the socksfwd binary TestMain builds.
var bin string

// TestMain builds the real binary once, so the tests run the program as the
// harness does, and fails the run if a namespace outlives the tests.
func TestMain(m *testing.M) { nstest.MainBuilding(m, ".", &bin, nil) }

// TestHalfClosesThroughSSHD sends a request through socksfwd and a stock
// ssh -D into stock sshd, ends it with a half-close, and expects the
// server to see the whole request and its end before it answers, and the
// client to get the whole answer and its end: iperf3 ends its streams
// that way, and a lost half-close would hang a test.
func TestHalfClosesThroughSSHD(t *testing.T) {
	o := nstest.OpenSSHs(t)[0]
	ns := nstest.New(t)
	key, pub := o.Keygen(t, t.TempDir(), "id_ed25519")
	s := o.StartSSHD(t, ns, nstest.SSHDConfig{ListenAddr: "127.0.0.1:2022", AuthorizedKeys: pub + "\n"})
	ssh := ns.Start(t, o.ClientArgs(t, key, s.KnownHosts, "-o", "ExitOnForwardFailure=yes",
		"-N", "-D", "127.0.0.1:1080", "-p", "2022", "root@127.0.0.1")...)
	nstest.WaitFor(t, 15*time.Second, "ssh -D to listen", func() bool {
		if ssh.Exited() {
			t.Fatalf("ssh -D exited: %v\n%s", ssh.Wait(0), ssh.Tail(20))
		}
		c, err := ns.Dial(t, "tcp", "127.0.0.1:1080")
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	request := bytes.Repeat([]byte("request."), 1<<17) // 1 MiB
	answer := bytes.Repeat([]byte("answer.."), 1<<17)
	ln := ns.Listen(t, "tcp", "127.0.0.1:7000")
	served := make(chan error, 1)
	go func() { served <- serveOnce(ln, request, answer) }()

	fwd := ns.Start(t, bin, "-listen", "127.0.0.1:7001", "-proxy", "127.0.0.1:1080", "-target", "127.0.0.1:7000")
	nstest.WaitFor(t, 10*time.Second, "socksfwd ready", func() bool {
		if fwd.Exited() {
			t.Fatalf("socksfwd exited: %v\n%s", fwd.Wait(0), fwd.Tail(20))
		}
		return strings.Contains(fwd.Log(), "ready")
	})
	c, err := ns.Dial(t, "tcp", "127.0.0.1:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(request); err != nil {
		t.Fatalf("write the request: %v", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the answer to its end: %v (%d bytes); socksfwd:\n%s", err, len(got), fwd.Tail(10))
	}
	if !bytes.Equal(got, answer) {
		t.Errorf("answer: %d bytes, want the %d sent", len(got), len(answer))
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	// It went through the proxy, not around it.
	if !strings.Contains(s.Log(), "target 127.0.0.1 port 7000") {
		t.Errorf("sshd logged no direct-tcpip channel to 127.0.0.1:7000:\n%s", s.Tail(20))
	}
}

// serveOnce accepts one connection, reads it to its end, checks it got
// want, then sends answer and half-closes.
func serveOnce(ln net.Listener, want, answer []byte) error {
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("server: read the request to its end: %w (%d bytes)", err, len(got))
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("server: request of %d bytes, want the %d sent", len(got), len(want))
	}
	if _, err := c.Write(answer); err != nil {
		return fmt.Errorf("server: write the answer: %w", err)
	}
	return c.(*net.TCPConn).CloseWrite()
}

package reconnect_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/reconnect"
)

// A first connection that fails ends Run at once, as ssh gives up, even
// when the error is one a reconnect would retry; Persist keeps trying.
func TestFirstContactFailsLikeSSH(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	var dials atomic.Int32
	c := &reconnect.Client{
		Dial:      func(context.Context) (*ssh.Client, error) { dials.Add(1); return nil, refused },
		Retryable: func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) },
		Mode:      relay.PointToPoint, Unit: relay.AnyUnit,
		Setup: func(*relay.TunnelConfig) (relay.Device, error) { t.Fatal("no tunnel came up"); return nil, nil },
	}
	bound, unbound := context.WithTimeout(context.Background(), 5*time.Second)
	defer unbound()
	err := c.Run(bound)
	if _, ok := errors.AsType[*reconnect.FirstContactError](err); !ok || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Run = %v, want a FirstContactError wrapping ECONNREFUSED", err)
	}
	if dials.Load() != 1 {
		t.Errorf("dialed %d times, want once", dials.Load())
	}

	c.Persist = true
	dials.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := c.Run(ctx); !errors.Is(err, reconnect.ErrNeverUp) {
		t.Fatalf("Run with Persist = %v, want ErrNeverUp when ctx ends first", err)
	}
	if dials.Load() < 2 {
		t.Errorf("with Persist dialed %d times, want retries", dials.Load())
	}
}

// stallingServer authenticates anyone and never answers a channel open.
// It reports how each connection ended.
func stallingServer(t *testing.T) (addr string, ended <-chan error) {
	t.Helper()
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(gatewaytest.NewSigner(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan error, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				sc, _, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					out <- err
					return
				}
				go ssh.DiscardRequests(reqs)
				out <- sc.Wait() // the channel opens are never read
			}()
		}
	}()
	return ln.Addr().String(), out
}

// A server that authenticates and never answers the tunnel's open does not
// hold the client: ending ctx returns Run promptly, and the server is told
// "disconnected by user" as ssh tells it.
func TestCtrlCWhileTheOpenHangs(t *testing.T) {
	addr, ended := stallingServer(t)
	dialed := make(chan struct{})
	c := &reconnect.Client{
		Dial: func(ctx context.Context) (*ssh.Client, error) {
			defer close(dialed)
			return ssh.Dial("tcp", addr, &ssh.ClientConfig{HostKeyCallback: ssh.InsecureIgnoreHostKey()})
		},
		Mode: relay.PointToPoint, Unit: relay.AnyUnit,
		Setup: func(*relay.TunnelConfig) (relay.Device, error) { t.Fatal("no tunnel came up"); return nil, nil },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-dialed
	time.Sleep(200 * time.Millisecond) // the open is in flight
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, reconnect.ErrNeverUp) {
			t.Fatalf("Run = %v, want ErrNeverUp after ctx ended", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run still waits for the open after ctx ended")
	}
	select {
	case err := <-ended:
		if err == nil || !strings.Contains(err.Error(), "disconnected by user") {
			t.Fatalf("the server saw %v, want SSH_MSG_DISCONNECT", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the server never saw the client leave")
	}
}

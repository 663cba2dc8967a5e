package reconnect_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/reconnect"
)

// With Flows, a server that refuses the tunnel leaves a connection that
// is up for direct-tcpip flows; Connection waits for it across a lost
// connection, and says why while there is none.
func TestFlowsWithoutATunnel(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from the target")
			c.Close()
		}
	}()
	g := gatewaytest.Start(t, gatewaytest.Options{Permit: gateway.PermitNo,
		Dial: func(ctx context.Context, req relay.StreamRequest) (net.Conn, error) {
			return net.Dial("tcp", target.Addr().String())
		}})
	var mu sync.Mutex
	var conns []*ssh.Client
	var setups int
	up := make(chan struct{}, 1)
	c := &reconnect.Client{
		Dial: func(ctx context.Context) (*ssh.Client, error) {
			sc, err := ssh.Dial("tcp", g.Addr, g.ClientConfig("SSH-2.0-sshvpn-test"))
			if err == nil {
				mu.Lock()
				conns = append(conns, sc)
				mu.Unlock()
			}
			return sc, err
		},
		Mode: relay.PointToPoint, Unit: relay.AnyUnit,
		Setup: func(*relay.TunnelConfig) (relay.Device, error) {
			setups++
			return nil, io.EOF
		},
		Flows: true,
		Up:    func() { up <- struct{}{} },
		Log:   slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	flow := func(dead *ssh.Client) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		sc, err := c.NextConnection(wctx, dead)
		if err != nil {
			t.Fatalf("Connection: %v", err)
		}
		conn, err := sc.Dial("tcp", "target.test:80")
		if err != nil {
			t.Fatalf("direct-tcpip on the connection: %v", err)
		}
		defer conn.Close()
		if b, _ := io.ReadAll(conn); string(b) != "hello from the target" {
			t.Fatalf("the flow carried %q", b)
		}
	}
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("Run ended although the connection was up for flows: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Up was not called for a connection without a tunnel")
	}
	flow(nil)
	mu.Lock()
	dead := conns[0]
	mu.Unlock()
	dead.Close() // the connection dies
	flow(dead)   // on the next one
	if setups != 0 {
		t.Errorf("Setup ran %d times with no tunnel", setups)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := c.Connection(context.Background()); err != reconnect.ErrStopped {
		t.Fatalf("Connection after Run: %v, want ErrStopped", err)
	}
}

// While no connection is up, Connection says why once its wait ends.
func TestConnectionSaysWhy(t *testing.T) {
	c := &reconnect.Client{
		Dial: func(ctx context.Context) (*ssh.Client, error) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: io.ErrUnexpectedEOF}
		},
		Retryable: func(error) bool { return true },
		Persist:   true,
		Mode:      relay.PointToPoint, Unit: relay.AnyUnit,
		Flows: true,
		Log:   slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(100 * time.Millisecond)
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := c.Connection(wctx)
	wcancel()
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") || !strings.Contains(err.Error(), "reconnecting") {
		t.Fatalf("Connection while none is up: %v, want the last dial error", err)
	}
	cancel()
	<-done
}

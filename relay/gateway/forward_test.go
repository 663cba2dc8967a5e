package gateway_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
)

// silentTarget is a loopback server that accepts and then neither sends
// nor closes, and a backend dialer that connects every forward to it and
// records whether the gateway closed its end.
type silentTarget struct {
	ln     net.Listener
	dials  atomic.Int64
	mu     sync.Mutex
	conns  []*recordedConn
	accept []net.Conn
}

func newSilentTarget(t *testing.T) *silentTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentTarget{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accept = append(s.accept, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.accept {
			c.Close()
		}
	})
	return s
}

func (s *silentTarget) dial(ctx context.Context, req relay.StreamRequest) (net.Conn, error) {
	s.dials.Add(1)
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	rc := &recordedConn{Conn: c}
	s.mu.Lock()
	s.conns = append(s.conns, rc)
	s.mu.Unlock()
	return rc, nil
}

// open counts the gateway's sockets to the target it has not closed.
func (s *silentTarget) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.conns {
		if !c.closed.Load() {
			n++
		}
	}
	return n
}

type recordedConn struct {
	net.Conn
	closed atomic.Bool
}

// CloseWrite passes a half-close on, as the gateway does for a client's
// EOF: only Close counts as closed.
func (c *recordedConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

func (c *recordedConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// forward opens a direct-tcpip channel, as ssh -W does.
func forward(c *ssh.Client) (net.Conn, error) {
	return c.Dial("tcp", "198.18.2.2:80")
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantShortage(t *testing.T, err error, text string) {
	t.Helper()
	if oe, ok := errors.AsType[*ssh.OpenChannelError](err); !ok || oe.Reason != ssh.ResourceShortage || !strings.Contains(oe.Message, text) {
		t.Fatalf("got %v, want a resource shortage saying %q", err, text)
	}
}

// A forward the client closes gives its socket and its slot back at once,
// even when the target never closes: sshd closes a closed channel's socket.
func TestForwardEndsWithItsChannel(t *testing.T) {
	target := newSilentTarget(t)
	g := gatewaytest.Start(t, gatewaytest.Options{Dial: target.dial, Limits: gateway.Limits{MaxForwardsPerConn: 2}})
	c := g.Dial(t)
	for range 2 {
		fc, err := forward(c)
		if err != nil {
			t.Fatal(err)
		}
		fc.Close()
	}
	waitUntil(t, "the gateway closed its sockets to the target", func() bool { return target.open() == 0 })
	// The slots came back: the connection may forward twice again.
	for range 2 {
		var err error
		waitUntil(t, "the forward slots came back", func() bool {
			var fc net.Conn
			fc, err = forward(c)
			if err == nil {
				fc.Close()
			}
			return err == nil
		})
	}
}

// A connection that goes takes its forwards with it: their sockets close
// and the key's forward slots come back, whatever the target does.
func TestForwardsEndWithTheirConnection(t *testing.T) {
	target := newSilentTarget(t)
	g := gatewaytest.Start(t, gatewaytest.Options{Dial: target.dial, Limits: gateway.Limits{MaxForwardsPerKey: 4}})
	c, err := ssh.Dial("tcp", g.Addr, g.ClientConfig(""))
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := forward(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := target.open(); n != 4 {
		t.Fatalf("%d sockets open to the target, want 4", n)
	}
	c.Close()
	waitUntil(t, "the gateway closed the gone connection's sockets", func() bool { return target.open() == 0 })
	c2 := g.Dial(t)
	for range 4 {
		var err error
		waitUntil(t, "the key's forward slots came back", func() bool {
			_, err = forward(c2)
			return err == nil
		})
	}
}

// A dial still in flight when the connection goes is cancelled.
func TestForwardDialEndsWithItsConnection(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	dial := func(ctx context.Context, req relay.StreamRequest) (net.Conn, error) {
		close(started)
		select {
		case <-ctx.Done():
			close(cancelled)
		case <-time.After(time.Minute):
		}
		return nil, errors.New("test dial: never connects")
	}
	g := gatewaytest.Start(t, gatewaytest.Options{Dial: dial})
	c, err := ssh.Dial("tcp", g.Addr, g.ClientConfig(""))
	if err != nil {
		t.Fatal(err)
	}
	go forward(c)
	<-started
	c.Close()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the dial of a forward whose connection is gone was not cancelled")
	}
}

// One key holds at most MaxConnsPerKey connections; the next is told why
// and disconnected, and counted.
func TestConnectionsPerKey(t *testing.T) {
	target := newSilentTarget(t)
	g := gatewaytest.Start(t, gatewaytest.Options{Dial: target.dial, Limits: gateway.Limits{MaxConnsPerKey: 2}})
	first, err := ssh.Dial("tcp", g.Addr, g.ClientConfig(""))
	if err != nil {
		t.Fatal(err)
	}
	g.Dial(t)
	extra, err := ssh.Dial("tcp", g.Addr, g.ClientConfig(""))
	if err == nil {
		waited := make(chan error, 1)
		go func() { waited <- extra.Wait() }()
		select {
		case err = <-waited:
		case <-time.After(10 * time.Second):
			extra.Close()
			t.Fatal("a third connection of the key was kept open past the limit of 2")
		}
	}
	if err == nil || !strings.Contains(err.Error(), "reason 12") || !strings.Contains(err.Error(), "already holds 2 connections") {
		t.Fatalf("a third connection of the key: %v, want a disconnect (too many connections) naming the limit", err)
	}
	if n := g.Server.Refused().ConnsPerKey.Load(); n != 1 {
		t.Errorf("%d connections counted as refused, want 1", n)
	}
	// Once one goes, the key may connect again.
	first.Close()
	waitUntil(t, "the key's connection slot came back", func() bool {
		c, err := ssh.Dial("tcp", g.Addr, g.ClientConfig(""))
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = forward(c)
		return err == nil
	})
}

// Forwards are bounded per connection and per key, over all the key's
// connections; refusals are counted.
func TestForwardsPerConnectionAndKey(t *testing.T) {
	target := newSilentTarget(t)
	g := gatewaytest.Start(t, gatewaytest.Options{Dial: target.dial, Limits: gateway.Limits{MaxForwardsPerConn: 2, MaxForwardsPerKey: 3}})
	c1 := g.Dial(t)
	for range 2 {
		if _, err := forward(c1); err != nil {
			t.Fatal(err)
		}
	}
	_, err := forward(c1)
	wantShortage(t, err, "allows 2 per connection")
	c2 := g.Dial(t)
	if _, err := forward(c2); err != nil {
		t.Fatal(err)
	}
	_, err = forward(c2)
	wantShortage(t, err, "already holds 3 forwarded connections")
	r := g.Server.Refused()
	if r.ForwardsPerConn.Load() != 1 || r.ForwardsPerKey.Load() != 1 {
		t.Errorf("refusals counted: %d per connection, %d per key; want 1 and 1", r.ForwardsPerConn.Load(), r.ForwardsPerKey.Load())
	}
	if n := target.dials.Load(); n != 3 {
		t.Errorf("the backend dialled %d times, want 3: a refused forward must not be dialled", n)
	}
}

// authorized_keys options decide at the channel's open, before any dial:
// no-port-forwarding and restrict refuse every forward, permitopen all but
// the targets it names (compared as sshd does, host as written).
func TestForwardingOptionsDecideAtOpen(t *testing.T) {
	for _, tt := range []struct {
		opts   string
		host   string
		port   int
		permit bool
	}{
		{"", "198.18.2.2", 80, true},
		{"no-port-forwarding", "198.18.2.2", 80, false},
		{"restrict", "198.18.2.2", 80, false},
		{"restrict,port-forwarding", "198.18.2.2", 80, true},
		{`permitopen="198.18.2.2:80"`, "198.18.2.2", 80, true},
		{`permitopen="198.18.2.2:80"`, "198.18.2.2", 81, false},
		{`permitopen="198.18.2.2:80"`, "198.18.2.3", 80, false},
		{`permitopen="198.18.2.2:*"`, "198.18.2.2", 443, true},
		{`no-port-forwarding,permitopen="198.18.2.2:80"`, "198.18.2.2", 80, false},
	} {
		name := tt.opts
		if name == "" {
			name = "none"
		}
		t.Run(name+"/"+net.JoinHostPort(tt.host, strconv.Itoa(tt.port)), func(t *testing.T) {
			target := newSilentTarget(t)
			g := gatewaytest.Start(t, gatewaytest.Options{Dial: target.dial, KeyOptions: tt.opts})
			_, err := g.Dial(t).Dial("tcp", net.JoinHostPort(tt.host, strconv.Itoa(tt.port)))
			if tt.permit {
				if err != nil {
					t.Fatalf("forward refused: %v", err)
				}
				return
			}
			if oe, ok := errors.AsType[*ssh.OpenChannelError](err); !ok || oe.Reason != ssh.Prohibited {
				t.Fatalf("forward: %v, want it prohibited", err)
			}
			if n := target.dials.Load(); n != 0 {
				t.Errorf("a prohibited forward was dialled %d times", n)
			}
		})
	}
}

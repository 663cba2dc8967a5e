package reconnect_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/reconnect"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// probe asks c within wait.
func probe(c *reconnect.Client, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return c.Probe(ctx)
}

// run starts c.Run and returns a stop that ends it and waits.
func run(t *testing.T, c *reconnect.Client) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return sync.OnceFunc(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its ctx ended")
		}
	})
}

// A healthy Run answers: with the tunnel up, and between dials that fail.
func TestProbeAnswersAHealthyRun(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{})
	local := relaytest.New(1500, 8)
	up := make(chan struct{})
	c := &reconnect.Client{
		Dial: func(context.Context) (*ssh.Client, error) {
			return ssh.Dial("tcp", g.Addr, g.ClientConfig("SSH-2.0-sshvpn-test"))
		},
		Mode: relay.PointToPoint, Unit: relay.AnyUnit,
		Setup: func(*relay.TunnelConfig) (relay.Device, error) { return local, nil },
		Up:    func() { close(up) },
		Log:   slog.New(slog.DiscardHandler),
	}
	if err := probe(c, time.Second); err != nil {
		t.Errorf("Probe before Run = %v, want nil", err)
	}
	stop := run(t, c)
	defer stop()
	<-up
	for range 3 {
		if err := probe(c, time.Second); err != nil {
			t.Fatalf("Probe with the tunnel up = %v, want nil", err)
		}
	}

	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	retrying := &reconnect.Client{
		Dial:      func(context.Context) (*ssh.Client, error) { return nil, refused },
		Retryable: func(error) bool { return true },
		Persist:   true,
		Mode:      relay.PointToPoint, Unit: relay.AnyUnit,
	}
	stopRetrying := run(t, retrying)
	defer stopRetrying()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if err := probe(retrying, time.Second); err != nil {
			t.Fatalf("Probe between failing dials = %v, want nil", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopRetrying()
	if err := probe(retrying, time.Second); err != nil {
		t.Errorf("Probe after Run returned = %v, want nil", err)
	}
}

// A hook that never returns leaves Run unable to answer, and Probe says
// so within its wait.
func TestProbeFailsWhileAHookIsStuck(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{})
	stuck, release := make(chan struct{}), make(chan struct{})
	c := &reconnect.Client{
		Dial: func(context.Context) (*ssh.Client, error) {
			return ssh.Dial("tcp", g.Addr, g.ClientConfig("SSH-2.0-sshvpn-test"))
		},
		Mode: relay.PointToPoint, Unit: relay.AnyUnit,
		Setup: func(*relay.TunnelConfig) (relay.Device, error) { return relaytest.New(1500, 8), nil },
		OnState: func(state string, _ error) {
			if state == reconnect.Up {
				close(stuck)
				<-release
			}
		},
		Log: slog.New(slog.DiscardHandler),
	}
	stop := run(t, c)
	defer stop()
	<-stuck
	err := probe(c, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "OnState hook") {
		t.Errorf("Probe with OnState stuck = %v, want an error naming the OnState hook", err)
	}
	close(release)
	waitProbe(t, c)
}

// A server that takes the connection and never answers the tunnel's open
// holds an attempt: Probe lets it run for AttemptWithin, then fails.
func TestProbeFailsWhenAnAttemptOverrunsItsBound(t *testing.T) {
	addr, _ := stallingServer(t)
	const within = 500 * time.Millisecond
	dialed := make(chan struct{}, 1)
	c := &reconnect.Client{
		Dial: func(context.Context) (*ssh.Client, error) {
			sc, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.InsecureIgnoreHostKey()})
			dialed <- struct{}{}
			return sc, err
		},
		Mode: relay.PointToPoint, Unit: relay.AnyUnit,
		AttemptWithin: within,
		Setup:         func(*relay.TunnelConfig) (relay.Device, error) { return relaytest.New(1500, 8), nil },
		Log:           slog.New(slog.DiscardHandler),
	}
	stop := run(t, c)
	defer stop()
	<-dialed
	if err := probe(c, 50*time.Millisecond); err != nil {
		t.Errorf("Probe early in the attempt = %v, want nil", err)
	}
	time.Sleep(within)
	err := probe(c, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "a connection attempt") {
		t.Errorf("Probe with the attempt past its bound = %v, want an error naming the attempt", err)
	}
}

// waitProbe waits for Probe to pass again.
func waitProbe(t *testing.T, c *reconnect.Client) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := probe(c, 200*time.Millisecond)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Probe still fails once the hook returned: %v", err)
		}
	}
}

// Reconnects counts connections mended after a loss: not the failed dials
// before the first connection, nor the failed ones after a loss; and the
// failures before anything was up are "connecting", not "reconnecting".
func TestReconnectsCountsMendedLosses(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{})
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	var (
		mu     sync.Mutex
		fail   = 2 // dials to refuse before the next success
		conns  []*ssh.Client
		states []string
	)
	up := make(chan struct{}, 4)
	c := &reconnect.Client{
		Dial: func(context.Context) (*ssh.Client, error) {
			mu.Lock()
			defer mu.Unlock()
			if fail > 0 {
				fail--
				return nil, refused
			}
			sc, err := ssh.Dial("tcp", g.Addr, g.ClientConfig("SSH-2.0-sshvpn-test"))
			if err == nil {
				conns = append(conns, sc)
			}
			return sc, err
		},
		Retryable: func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) },
		Persist:   true,
		Mode:      relay.PointToPoint, Unit: relay.AnyUnit,
		Setup: func(*relay.TunnelConfig) (relay.Device, error) { return relaytest.New(1500, 8), nil },
		OnState: func(state string, why error) {
			mu.Lock()
			states = append(states, fmt.Sprintf("%s %v", state, why != nil))
			mu.Unlock()
			if state == reconnect.Up {
				up <- struct{}{}
			}
		},
		Log: slog.New(slog.DiscardHandler),
	}
	stop := run(t, c)
	defer stop()
	waitUp := func() {
		t.Helper()
		select {
		case <-up:
		case <-time.After(20 * time.Second):
			t.Fatal("no tunnel came up")
		}
	}
	waitUp()
	if s := c.State(); s.Reconnects != 0 {
		t.Errorf("after two failed dials and a first tunnel: %d reconnects, want 0", s.Reconnects)
	}
	mu.Lock()
	fail = 1
	conns[0].Close()
	mu.Unlock()
	waitUp()
	if s := c.State(); s.Reconnects != 1 {
		t.Errorf("after a loss, a failed dial and a tunnel again: %d reconnects, want 1", s.Reconnects)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"connecting false", "connecting true", "connecting true", "up false", "reconnecting true", "reconnecting true", "up false"}
	if !slices.Equal(states, want) {
		t.Errorf("OnState heard %q, want %q", states, want)
	}
}

package reconnect_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/reconnect"
	"github.com/sshvpn/sshvpn/relay/relaytest"
)

// The client keeps its local device across a lost connection, makes it
// once, and carries packets again after reconnecting.
func TestClientReconnectsAndKeepsTheDevice(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{})
	local := relaytest.New(1500, 8)
	var mu sync.Mutex
	var conns []*ssh.Client
	var setups atomic.Int32
	var states []string // OnState's, with whether a reason came
	ctx, cancel := context.WithCancel(context.Background())
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
			setups.Add(1)
			return local, nil
		},
		OnState: func(state string, why error) {
			mu.Lock()
			defer mu.Unlock()
			states = append(states, fmt.Sprintf("%s %v", state, why != nil))
		},
		Log: slog.New(slog.DiscardHandler),
	}
	if s := c.State(); s.Phase != reconnect.Connecting {
		t.Errorf("before Run: phase %q, want connecting", s.Phase)
	}
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	send := func(n int) {
		t.Helper()
		p := relaytest.IPv4("through tunnel " + string(rune('a'+n)))
		deadline := time.Now().Add(10 * time.Second)
		for {
			var dev *relaytest.Dev
			if devs := g.Devs(); len(devs) > n {
				dev = devs[n]
			}
			if dev != nil {
				local.Inject(p)
				rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
				got, err := dev.Recv(rctx)
				rcancel()
				if err == nil && bytes.Equal(got, p) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("tunnel %d carried nothing", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The Pump counts a packet once the channel's Write returned, which
	// may be after the gateway has it.
	counted := func(n uint64) reconnect.State {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s := c.State()
			if s.Out.Packets >= n || time.Now().After(deadline) {
				return s
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	send(0)
	s := counted(1)
	if s.Phase != reconnect.Up || !s.Tunnel || s.PeerVersion != "SSH-2.0-sshvpn" || s.Channel == "" || s.Config == nil ||
		s.Out.Packets == 0 || s.Reconnects != 0 || s.Since.IsZero() {
		t.Errorf("with the tunnel up: %+v", s)
	}
	mu.Lock()
	conns[0].Close() // the connection dies
	mu.Unlock()
	send(1)
	if s := counted(2); s.Phase != reconnect.Up || s.Reconnects != 1 || s.LastError == "" || s.Out.Packets < 2 {
		t.Errorf("after a reconnect: %+v; want up again, one reconnect, the loss and both packets out", s)
	}
	if setups.Load() != 1 {
		t.Errorf("the local device was set up %d times, want once", setups.Load())
	}
	mu.Lock()
	want := []string{"connecting false", "up false", "reconnecting true", "up false"}
	if !slices.Equal(states, want) {
		t.Errorf("OnState heard %q, want %q", states, want)
	}
	mu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case <-local.Closed():
	default:
		t.Error("Run did not close the local device it owned")
	}
}

// A failing Setup or a final dial error ends Run with that error.
func TestClientStopsOnFinalErrors(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{})
	setupErr := errors.New("device busy")
	for name, c := range map[string]*reconnect.Client{
		"setup": {
			Dial: func(ctx context.Context) (*ssh.Client, error) {
				return ssh.Dial("tcp", g.Addr, g.ClientConfig("SSH-2.0-sshvpn-test"))
			},
			Setup: func(*relay.TunnelConfig) (relay.Device, error) { return nil, setupErr },
		},
		"dial": {
			Dial:      func(ctx context.Context) (*ssh.Client, error) { return nil, setupErr },
			Retryable: func(error) bool { return false },
		},
	} {
		t.Run(name, func(t *testing.T) {
			c.Mode, c.Unit = relay.PointToPoint, relay.AnyUnit // and no Log: nil must do
			done := make(chan error)
			go func() { done <- c.Run(context.Background()) }()
			select {
			case err := <-done:
				if !errors.Is(err, setupErr) {
					t.Fatalf("Run = %v, want %v", err, setupErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run retried a final error")
			}
		})
	}
}

package gateway_test

import (
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway"
)

// waitLoad waits until the gateway's Load is want.
func waitLoad(t *testing.T, srv *gateway.Server, want gateway.Load) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Load = %+v, want %+v", srv.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLoadCountsConnectionsAndTunnels(t *testing.T) {
	g := startGateway(t, gateway.PermitYes, "")
	waitLoad(t, g.Server, gateway.Load{})
	a, b := g.Dial(t), g.Dial(t)
	waitLoad(t, g.Server, gateway.Load{Connections: 2})
	for range 2 {
		if _, err := openTunnel(a, relay.PointToPoint, relay.AnyUnit); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := openTunnel(b, relay.PointToPoint, relay.AnyUnit); err != nil {
		t.Fatal(err)
	}
	waitLoad(t, g.Server, gateway.Load{Connections: 2, Tunnels: 3})
	a.Close()
	waitLoad(t, g.Server, gateway.Load{Connections: 1, Tunnels: 1})
}

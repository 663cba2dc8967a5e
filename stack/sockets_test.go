package stack

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// The flows of all clients share the gateway's host sockets, one key at
// most a quarter: a key past its share is refused (counted), while
// another key's flows go on; a flow that ends gives its socket back, and
// two tunnels of one key share one share.
func TestHostSockets(t *testing.T) {
	srv := tcpListener(t, "tcp4", "127.0.0.1:0")
	g := newGatewayWith(t, Config{HostSockets: 8}, "127.0.0.1") // 2 a key
	dst := netip.AddrPortFrom(gw4, srv.Port())
	a1, a2 := open(t, g, "SHA256:a"), open(t, g, "SHA256:a")
	pa1, pa2 := newPeer(t, a1), newPeer(t, a2)
	first, err := pa1.dialTCP(t, dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pa2.dialTCP(t, dst); err != nil {
		t.Fatalf("the key's second socket, from its second tunnel: %v", err)
	}
	if c, err := pa1.dialTCP(t, dst); err == nil {
		c.Close()
		t.Fatal("a third connection past the key's share of 2")
	}
	if n := a1.(*tunnel).Stats().SocketsLimited.Load(); n != 1 {
		t.Errorf("SocketsLimited %d, want 1", n)
	}
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	pa2.dialUDP(t, netip.AddrPortFrom(gw4, silent.LocalAddr().(*net.UDPAddr).AddrPort().Port())).Write([]byte("x"))
	st2 := a2.(*tunnel).Stats()
	waitFor(t, "a UDP flow refused past the key's share", func() bool { return st2.SocketsLimited.Load() == 1 })
	if n := st2.UDPFlows.Load(); n != 0 {
		t.Errorf("%d UDP flows past the key's share, want 0", n)
	}
	// Another key is not held to a's share.
	pb := newPeer(t, open(t, g, "SHA256:b"))
	for i := range 2 {
		if _, err := pb.dialTCP(t, dst); err != nil {
			t.Fatalf("key b's connection %d: %v", i+1, err)
		}
	}
	// A flow that ends gives its socket back.
	first.Close()
	waitFor(t, "key a's socket back", func() bool {
		c, err := pa1.dialTCP(t, dst)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// The budget in all holds when every key keeps to its share.
func TestHostSocketsBudget(t *testing.T) {
	h := newHostSockets(4) // 1 a key
	for _, k := range []string{"a", "b", "c", "d"} {
		if ok, _, _ := h.take(k); !ok {
			t.Fatalf("key %s refused its first socket", k)
		}
	}
	if ok, spent, _ := h.take("e"); ok || spent != "host sockets of all clients" {
		t.Fatalf("a fifth socket past a budget of 4: %v, %q", ok, spent)
	}
	h.give("a")
	if ok, _, _ := h.take("e"); !ok {
		t.Fatal("a socket given back was not there to take")
	}
	unbounded := newHostSockets(-1)
	for i := range 3 {
		if ok, _, _ := unbounded.take("a"); !ok {
			t.Fatalf("no bound refused socket %d", i+1)
		}
	}
}

// Forwards (ssh -L, -D, -W) are host sockets of the key too: past its
// share DialStream refuses, and a forward closed gives its socket back. A
// half-close still reaches the target.
func TestHostSocketsForwards(t *testing.T) {
	srv := tcpListener(t, "tcp4", "127.0.0.1:0")
	g := newGatewayWith(t, Config{HostSockets: 8}, "127.0.0.1") // 2 a key
	req := relay.StreamRequest{Host: "127.0.0.1", Port: srv.Port(), Client: relay.TunnelRequest{Key: "SHA256:fwd"}}
	var open []net.Conn
	for i := range 2 {
		c, err := g.DialStream(context.Background(), req)
		if err != nil {
			t.Fatalf("forward %d: %v", i+1, err)
		}
		defer c.Close()
		open = append(open, c)
	}
	if c, err := g.DialStream(context.Background(), req); !errors.Is(err, errLimited) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a third forward past the key's share of 2: %v", err)
	}
	if err := open[0].(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Errorf("half-close of a forward: %v", err)
	}
	open[0].Close()
	c, err := g.DialStream(context.Background(), req)
	if err != nil {
		t.Fatalf("a forward once one was closed: %v", err)
	}
	c.Close()
}

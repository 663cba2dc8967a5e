package gateway_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
	"github.com/sshvpn/sshvpn/relay/relaytest"
	"github.com/sshvpn/sshvpn/relay/wire"
	"github.com/sshvpn/sshvpn/status"
)

// waitStatus polls the gateway's Status until ok says it shows what the
// test waits for.
func waitStatus(t *testing.T, g *gatewaytest.Gateway, what string, ok func(status.Gateway) bool) status.Gateway {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := g.Server.Status()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status never showed %s: %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStatus: a logged-in client shows with its key, comment, version
// and round trip, its tunnel with the backend's figures and traffic that
// grows; refused logins count by reason; a departed tunnel's traffic
// stays in the totals.
func TestStatus(t *testing.T) {
	g := gatewaytest.Start(t, gatewaytest.Options{ClientAliveInterval: 20 * time.Millisecond})

	// A key on no line is refused, and counted so.
	stranger := g.ClientConfig("")
	stranger.Auth = []ssh.AuthMethod{ssh.PublicKeys(gatewaytest.NewSigner(t))}
	if c, err := ssh.Dial("tcp", g.Addr, stranger); err == nil {
		c.Close()
		t.Fatal("a stranger's key logged in")
	}

	cfg := g.ClientConfig("SSH-2.0-OpenSSH_9.2p1 status-test")
	c, err := ssh.Dial("tcp", g.Addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, reqs, err := c.OpenChannel(wire.ChannelType, wire.OpenRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit}.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	before := time.Now()
	pkt := withAF(2, relaytest.IPv4("counted"))
	for range 3 {
		if _, err := ch.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	s := waitStatus(t, g, "three packets in and a round trip", func(s status.Gateway) bool {
		return len(s.Connections) == 1 && len(s.Connections[0].Tunnels) == 1 &&
			s.Connections[0].Tunnels[0].In.Packets == 3 && s.Connections[0].RTT > 0
	})
	conn := s.Connections[0]
	if want := ssh.FingerprintSHA256(g.Client.PublicKey()); conn.Key != want || conn.KeyComment != gatewaytest.KeyComment ||
		conn.User != "test" || conn.PeerVersion != "SSH-2.0-OpenSSH_9.2p1 status-test" || conn.Remote != c.LocalAddr().String() {
		t.Errorf("connection %+v; want key %s (%s), user test, the client's version and address %s", conn, want, gatewaytest.KeyComment, c.LocalAddr())
	}
	if conn.RTT <= 0 || time.Duration(conn.RTT) > time.Second || conn.Since.After(before) {
		t.Errorf("rtt %v, since %v: want a loopback round trip and a start before %v", time.Duration(conn.RTT), conn.Since, before)
	}
	if conn.Forwards.Limit == 0 {
		t.Errorf("forwards %+v: want the per-connection limit", conn.Forwards)
	}
	tun := conn.Tunnels[0]
	if tun.Channel != wire.ChannelType || tun.Mode != "point-to-point" || tun.Device != "fake0" ||
		!slices.Equal(tun.Addresses, []netip.Prefix{netip.MustParsePrefix("198.18.3.2/24")}) {
		t.Errorf("tunnel %+v", tun)
	}
	if tun.LastReceived.Before(before) || tun.In.Bytes != 3*uint64(len(pkt)-4) {
		t.Errorf("tunnel in %+v, latest packet %v (sent after %v)", tun.In, tun.LastReceived, before)
	}
	if !slices.Equal(tun.Claimed, []netip.Addr{netip.MustParseAddr("198.18.3.9")}) || tun.Flows == nil || tun.Flows.Used != 2 {
		t.Errorf("the backend's report did not pass: claimed %v, flows %+v", tun.Claimed, tun.Flows)
	}
	if s.AuthFailures["unknown_key"] == 0 {
		t.Errorf("auth failures %v: the stranger's key is not counted", s.AuthFailures)
	}
	if s.Totals.In.Packets != 3 {
		t.Errorf("totals %+v, want the live tunnel's 3 packets in", s.Totals)
	}
	if s.Refused["flows_per_client"] != 5 || s.Refused["memory_per_client"] != 1 {
		t.Errorf("refused %v: want the live tunnel's per-client limit hits, 5 flows and 1 memory", s.Refused)
	}

	// Out: a packet from the device.
	if err := g.Devs()[0].Inject(relaytest.IPv4("out")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, g, "a packet out", func(s status.Gateway) bool {
		return len(s.Connections) == 1 && len(s.Connections[0].Tunnels) == 1 && s.Connections[0].Tunnels[0].Out.Packets == 1
	})

	// Gone, the tunnel's traffic stays in the totals.
	ch.Close()
	c.Close()
	s = waitStatus(t, g, "the client gone", func(s status.Gateway) bool { return len(s.Connections) == 0 })
	if s.Totals.In.Packets != 3 || s.Totals.Out.Packets != 1 {
		t.Errorf("totals after the tunnel went: %+v, want 3 in and 1 out", s.Totals)
	}
	if s.Refused["flows_per_client"] != 5 || s.Refused["memory_per_client"] != 1 {
		t.Errorf("refused after the tunnel went: %v; want its per-client limit hits kept, 5 flows and 1 memory", s.Refused)
	}
}

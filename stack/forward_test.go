package stack

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// TestTCP carries a connection from the peer's stack through the tunnel's
// Device and the TCP forwarder to a real listener on the host's loopback
// (the gateway's virtual address stands for it), with a half-close the
// listener waits for, both families, and 1 MiB checked byte for byte.
func TestTCP(t *testing.T) {
	for _, tc := range []struct {
		name, network, listen, rule string
		gw                          netip.Addr
	}{
		{"ipv4", "tcp4", "127.0.0.1:0", "127.0.0.1/tcp", gw4},
		{"ipv6", "tcp6", "[::1]:0", "::1/tcp", gw6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tcpListener(t, tc.network, tc.listen)
			g := newGateway(t, tc.rule)
			tun := open(t, g, "SHA256:tcp")
			p := newPeer(t, tun)
			c, err := p.dialTCP(t, netip.AddrPortFrom(tc.gw, srv.Port()))
			if err != nil {
				t.Fatalf("dial through the stack: %v", err)
			}
			defer c.Close()
			data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
			go func() { c.Write(data); c.CloseWrite() }()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read after half-close: %v", err)
			}
			if want := append([]byte("got:"), data...); !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d, equal prefix %v", len(got), len(want), bytes.HasPrefix(want, got))
			}
			st := tun.(*tunnel).Stats()
			if st.TCPDenied.Load() != 0 || st.TCPDialFailed.Load() != 0 {
				t.Errorf("denied %d, dial failed %d", st.TCPDenied.Load(), st.TCPDialFailed.Load())
			}
		})
	}
}

// TestTCPRefused: the default policy denies the host's loopback and the
// other clients' subnet, an --deny rule holds, and a closed port resets:
// each time the peer's handshake fails at once with a reset.
func TestTCPRefused(t *testing.T) {
	closed := closedPort(t)
	for _, tc := range []struct {
		name  string
		rules []string
		dst   netip.AddrPort
		count func(*Stats) uint64
	}{
		{"loopback by default", nil, netip.AddrPortFrom(gw4, closed), func(s *Stats) uint64 { return s.TCPDenied.Load() }},
		{"another client", nil, netip.MustParseAddrPort("100.77.0.9:80"), func(s *Stats) uint64 { return s.TCPDenied.Load() }},
		{"closed port", []string{"127.0.0.1/tcp"}, netip.AddrPortFrom(gw4, closed), func(s *Stats) uint64 { return s.TCPDialFailed.Load() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tun := open(t, newGateway(t, tc.rules...), "SHA256:refused")
			p := newPeer(t, tun)
			start := time.Now()
			c, err := p.dialTCP(t, tc.dst)
			if err == nil {
				c.Close()
				t.Fatal("connected; want a reset")
			}
			if !errors.Is(err, syscall.ECONNREFUSED) && !isRefused(err) {
				t.Fatalf("dial: %v, want connection refused", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("reset after %v: the client should fail fast", d)
			}
			if n := tc.count(tun.(*tunnel).Stats()); n != 1 {
				t.Errorf("counter %d, want 1", n)
			}
		})
	}
}

func isRefused(err error) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("refused"))
}

func closedPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).AddrPort().Port()
	l.Close()
	return port
}

// TestUDP echoes through the UDP forwarder to a loopback service, then
// checks the flow ends on its idle timeout and its socket is closed.
func TestUDP(t *testing.T) {
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		b := make([]byte, 2048)
		for {
			n, a, err := srv.ReadFrom(b)
			if err != nil {
				return
			}
			srv.WriteTo(append([]byte("echo:"), b[:n]...), a)
		}
	}()
	tun := open(t, newGateway(t, "127.0.0.1/udp"), "SHA256:udp")
	p := newPeer(t, tun)
	c := p.dialUDP(t, netip.AddrPortFrom(gw4, srv.LocalAddr().(*net.UDPAddr).AddrPort().Port()))
	for i := range 3 {
		msg := []byte{'p', byte('0' + i)}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 100)
		n, err := c.Read(b)
		if err != nil || string(b[:n]) != "echo:"+string(msg) {
			t.Fatalf("reply %q, %v", b[:n], err)
		}
	}
	st := tun.(*tunnel).Stats()
	if n := st.UDPFlows.Load(); n != 1 {
		t.Errorf("%d flows, want 1 (one socket per flow)", n)
	}
	waitFor(t, "the idle flow to end", func() bool { return st.UDPFlows.Load() == 0 })
}

// TestUDPDenied: a denied flow gets no socket and is counted.
func TestUDPDenied(t *testing.T) {
	tun := open(t, newGateway(t), "SHA256:udp-denied")
	p := newPeer(t, tun)
	c := p.dialUDP(t, netip.AddrPortFrom(gw4, 9))
	c.Write([]byte("x"))
	st := tun.(*tunnel).Stats()
	waitFor(t, "the denial", func() bool { return st.UDPDenied.Load() == 1 })
	if st.UDPFlows.Load() != 0 {
		t.Error("a denied flow was opened")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCloseReleases opens and closes 50 tunnels, some with a live TCP
// connection and a UDP flow, and checks the goroutines come back: RemoveNIC
// alone would leave the endpoints and their relays behind.
func TestCloseReleases(t *testing.T) {
	srv := tcpListener(t, "tcp4", "127.0.0.1:0")
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0") // keeps the flow open until its idle timeout
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	g := newGateway(t, "127.0.0.1")
	base := runtime.NumGoroutine()
	for i := range 50 {
		func() {
			tun, err := g.Open(t.Context(), relay.TunnelRequest{Mode: relay.PointToPoint, Key: "SHA256:cycle"})
			if err != nil {
				t.Fatal(err)
			}
			pp := newPeer(t, tun)
			if i%5 == 0 {
				c, err := pp.dialTCP(t, netip.AddrPortFrom(gw4, srv.Port()))
				if err != nil {
					t.Fatal(err)
				}
				c.Write([]byte("held open"))
				u := pp.dialUDP(t, netip.AddrPortFrom(gw4, silent.LocalAddr().(*net.UDPAddr).AddrPort().Port()))
				u.Write([]byte("x"))
				waitFor(t, "the flows", func() bool {
					st := tun.(*tunnel).Stats()
					return st.TCPEstablished.Load() == 1 && st.UDPFlows.Load() == 1
				})
				defer c.Close()
			}
			pp.close(tun)
		}()
	}
	settleGoroutines(t, base)
	if n := len(g.owners); n != 0 {
		t.Errorf("%d addresses still claimed", n)
	}
}

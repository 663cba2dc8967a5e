package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/sshvpn/sshvpn/relay"
)

// localThrough builds a Local from the configuration of a tunnel the
// gateway g opened for key, and joins the two with a relay.Pump, as
// sshvpn connect joins its stack to the SSH channel: the gateway's stack
// is a real, independent peer that re-originates the Local's flows from
// the host's loopback.
func localThrough(t *testing.T, g *Gateway, key string) (*Local, relay.Tunnel) {
	t.Helper()
	tun := open(t, g, key)
	cfg := tun.Config()
	l, err := NewLocal(LocalConfig{MTU: tun.MTU(), Addresses: cfg.Addresses, DNS: cfg.DNS})
	if err != nil {
		t.Fatal(err)
	}
	pumpLocal(t, l, tun)
	return l, tun
}

// pumpLocal runs a relay.Pump between l and tun until the test ends.
func pumpLocal(t *testing.T, l *Local, tun relay.Device) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.NewPump(l, tun, nil, nil, nil).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pump: %v", err)
		}
		l.Close()
	})
}

// TestLocalDialTCP: a few MiB through the Local and the gateway's stack to
// a loopback server and back, byte for byte, over IPv4 and IPv6.
func TestLocalDialTCP(t *testing.T) {
	for _, tc := range []struct {
		name, network, listen string
		gw                    netip.Addr
	}{
		{"v4", "tcp4", "127.0.0.1:0", gw4},
		{"v6", "tcp6", "[::1]:0", gw6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tcpListener(t, tc.network, tc.listen)
			l, _ := localThrough(t, newGateway(t, "127.0.0.1", "::1"), "SHA256:local-tcp-"+tc.name)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := l.DialTCP(ctx, netip.AddrPortFrom(tc.gw, srv.Port()))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			want := make([]byte, 4<<20)
			rand.Read(want)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(want)
				if err == nil {
					err = c.(interface{ CloseWrite() error }).CloseWrite()
				}
				errc <- err
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, append([]byte("got:"), want...)) {
				t.Fatalf("got %d bytes back, want %d, or they differ", len(got), len(want)+4)
			}
			if want := netip.AddrPortFrom(tc.gw, srv.Port()).String(); c.RemoteAddr().String() != want {
				t.Errorf("remote address %s, want %s", c.RemoteAddr(), want)
			}
			st := l.Stats()
			if st.BytesOut < 4<<20 || st.BytesIn == 0 || st.PacketsIn == 0 || st.PacketsOut == 0 {
				t.Errorf("stats %+v: want the transfer counted", st)
			}
		})
	}
}

// TestLocalDialRefused: a closed port is ECONNREFUSED, at once; a
// destination the gateway cannot reach is not.
func TestLocalDialRefused(t *testing.T) {
	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := closed.Addr().(*net.TCPAddr).AddrPort().Port()
	closed.Close()
	l, _ := localThrough(t, newGateway(t, "127.0.0.1"), "SHA256:local-refused")
	start := time.Now()
	_, err = l.DialTCP(context.Background(), netip.AddrPortFrom(gw4, port))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a closed port: %v, want ECONNREFUSED", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refusal took %v", d)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Errorf("error %v: want a *net.OpError of the dial", err)
	}
}

// TestLocalDialTimeout: a destination that never answers fails with
// ETIMEDOUT when the context's deadline passes, and the error says which
// dial it was.
func TestLocalDialTimeout(t *testing.T) {
	l := localV4(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := l.DialTCP(ctx, netip.MustParseAddrPort("198.18.0.1:80")) // nothing reads the Device
	if !errors.Is(err, syscall.ETIMEDOUT) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial into a silent tunnel: %v, want ETIMEDOUT and DeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v: want a net.Error that is a timeout", err)
	}
}

// TestLocalNoFamily: a Local with an IPv4 address only fails an IPv6
// destination at once, saying why.
func TestLocalNoFamily(t *testing.T) {
	l := localV4(t)
	_, err := l.DialTCP(context.Background(), netip.MustParseAddrPort("[2001:2::1]:80"))
	if !errors.Is(err, syscall.ENETUNREACH) || !bytes.Contains([]byte(err.Error()), []byte("no IPv6 address on the tunnel")) {
		t.Errorf("dial IPv6 from an IPv4-only tunnel: %v, want ENETUNREACH saying there is no IPv6 address", err)
	}
}

// TestLocalConfigRefused: configurations the stack cannot carry.
func TestLocalConfigRefused(t *testing.T) {
	for _, cfg := range []LocalConfig{
		{},
		{MTU: 1000, Addresses: []netip.Prefix{netip.MustParsePrefix("2001:2::2/64")}},
		{MTU: 100, Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}},
		{Addresses: []netip.Prefix{{}}},
	} {
		if l, err := NewLocal(cfg); err == nil {
			l.Close()
			t.Errorf("NewLocal(%+v) accepted", cfg)
		}
	}
}

// TestLocalNotPromiscuous: the stack takes packets to its own addresses
// only, and counts the rest.
func TestLocalNotPromiscuous(t *testing.T) {
	l := localV4(t)
	pc, err := l.ListenUDP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	from := netip.MustParseAddrPort("198.18.0.1:5000")
	for _, to := range []netip.Addr{netip.MustParseAddr("198.18.0.3"), netip.MustParseAddr("198.18.0.2")} {
		if _, err := l.Write([][]byte{udp4(from, netip.AddrPortFrom(to, port), []byte(to.String()))}, 0); err != nil {
			t.Fatal(err)
		}
	}
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "198.18.0.2" {
		t.Errorf("read %q, %v: want only the datagram to the stack's own address", buf[:n], err)
	}
	if st := l.Stats(); st.DropsNotOurs != 1 {
		t.Errorf("DropsNotOurs %d, want 1", st.DropsNotOurs)
	}
}

// TestLocalClose: Close ends the calls in flight, leaves no goroutine, and
// every later call fails with net.ErrClosed.
func TestLocalClose(t *testing.T) {
	base := runtime.NumGoroutine()
	l, err := NewLocal(LocalConfig{Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24"), netip.MustParsePrefix("2001:2::2/64")},
		DNS: []netip.Addr{netip.MustParseAddr("198.18.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := l.ListenUDP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { // a dial into a tunnel nobody reads: it waits
		_, err := l.DialTCP(context.Background(), netip.MustParseAddrPort("198.18.0.1:80"))
		errs <- err
	})
	wg.Go(func() {
		_, _, err := pc.ReadFrom(make([]byte, 10))
		errs <- err
	})
	wg.Go(func() {
		_, err := l.LookupHost(context.Background(), "example.test")
		errs <- err
	})
	time.Sleep(100 * time.Millisecond)
	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		t.Fatal("Close waits")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("a call in flight at Close: %v, want net.ErrClosed", err)
		}
	}
	if _, err := l.DialTCP(context.Background(), netip.MustParseAddrPort("198.18.0.1:80")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("DialTCP after Close: %v", err)
	}
	if _, err := l.ListenUDP(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ListenUDP after Close: %v", err)
	}
	if _, err := l.LookupHost(context.Background(), "example.test"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("LookupHost after Close: %v", err)
	}
	if err := l.Update([]netip.Prefix{netip.MustParsePrefix("198.18.0.3/24")}, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Update after Close: %v", err)
	}
	if _, err := l.Read(make([][]byte, 1), make([]int, 1), 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, _, err := pc.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Close: %v", err)
	}
	settleGoroutines(t, base)
}

// udp4 is an IPv4 UDP datagram from src to dst carrying payload, with no
// UDP checksum (IPv4 allows none).
func udp4(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: addrTo(src.Addr()), DstAddr: addrTo(dst.Addr())})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(b[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(b) - header.IPv4MinimumSize)})
	copy(u.Payload(), payload)
	return b
}

// localV4 is a Local with one IPv4 address and no name server, closed
// when the test ends.
func localV4(t *testing.T) *Local {
	t.Helper()
	l, err := NewLocal(LocalConfig{Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

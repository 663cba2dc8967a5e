package proxy

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// loopbackDatagrams is a Datagrams over real loopback UDP sockets. It
// hands out the socket behind a bare net.PacketConn, as a userspace stack
// would, so the proxy's path without WriteToUDPAddrPort runs.
type loopbackDatagrams struct {
	names map[string]netip.Addr
	mu    sync.Mutex
	asked []string
}

func (d *loopbackDatagrams) ListenUDP(ctx context.Context) (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	return struct{ net.PacketConn }{pc}, err
}

func (d *loopbackDatagrams) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	d.asked = append(d.asked, host)
	d.mu.Unlock()
	if a, ok := d.names[host]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, errTest
}

// udpEcho is a real UDP peer that echoes each datagram to its sender.
func udpEcho(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// associateUDP opens a control connection and a UDP ASSOCIATE on it and
// returns the relay's address.
func associateUDP(t *testing.T, addr string) (net.Conn, netip.AddrPort) {
	t.Helper()
	c := rawSOCKS5(t, addr)
	c.Write([]byte{5, cmdUDPAssociate, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	rep, bnd := readReply5(t, c)
	if rep != socks5Succeeded || len(bnd) != 6 {
		t.Fatalf("UDP ASSOCIATE: reply %02x %v", rep, bnd)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(bnd[:4])), binary.BigEndian.Uint16(bnd[4:]))
	if !relay.Addr().IsLoopback() || relay.Port() == 0 {
		t.Fatalf("relay address %v, want the control connection's local IP and a port", relay)
	}
	return c, relay
}

func udpRequest(frag byte, dst netip.AddrPort, payload string) []byte {
	b := []byte{0, 0, frag, atypIPv4}
	v := dst.Addr().As4()
	b = append(b, v[:]...)
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	return append(b, payload...)
}

func udpNameRequest(name string, port uint16, payload string) []byte {
	b := append([]byte{0, 0, 0, atypName, byte(len(name))}, name...)
	b = binary.BigEndian.AppendUint16(b, port)
	return append(b, payload...)
}

// expectReply reads one datagram on c, or none when want is "".
func expectReply(t *testing.T, c *net.UDPConn, from netip.AddrPort, want string) {
	t.Helper()
	buf := make([]byte, 2048)
	if want == "" {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	} else {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if want == "" {
		if err == nil {
			t.Fatalf("got a reply %q, want none", buf[:n])
		}
		return
	}
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	h, err := parseUDPHeader(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if got := netip.AddrPortFrom(h.addr, h.port); got != from || string(buf[h.n:n]) != want {
		t.Fatalf("reply from %v %q, want from %v %q", got, buf[h.n:n], from, want)
	}
}

func TestUDPAssociate(t *testing.T) {
	echo := udpEcho(t)
	dg := &loopbackDatagrams{names: map[string]netip.Addr{"echo.invalid": echo.Addr()}}
	d := &recordingDialer{to: echoServer(t)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, UDP: dg})
	addr := serve(t, s)
	base := numGoroutines()

	ctl, relay := associateUDP(t, addr)
	client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	send := func(c *net.UDPConn, b []byte) {
		if _, err := c.WriteToUDPAddrPort(b, relay); err != nil {
			t.Fatal(err)
		}
	}

	send(client, udpRequest(0, echo, "by address"))
	expectReply(t, client, echo, "by address")
	send(client, udpNameRequest("echo.invalid", echo.Port(), "by name"))
	expectReply(t, client, echo, "by name")
	send(client, udpNameRequest("echo.invalid", echo.Port(), "cached name"))
	expectReply(t, client, echo, "cached name")

	send(client, udpRequest(1, echo, "a fragment"))
	expectReply(t, client, echo, "")

	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	send(other, udpRequest(0, echo, "from another port"))
	expectReply(t, other, echo, "")
	// Same port as the client, another address: only the IP check stops it.
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: client.LocalAddr().(*net.UDPAddr).Port})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	send(stranger, udpRequest(0, echo, "from another address"))
	expectReply(t, stranger, echo, "")
	expectReply(t, client, echo, "")

	st := s.Stats().Snapshot()
	if st.UDPOut != 3 || st.UDPIn != 3 || st.UDPDropped["fragment"] != 1 || st.UDPDropped["foreign"] != 2 {
		t.Fatalf("stats %+v", st)
	}
	dg.mu.Lock()
	if len(dg.asked) != 1 || dg.asked[0] != "echo.invalid" {
		t.Errorf("LookupHost asked %q, want echo.invalid once (then cached)", dg.asked)
	}
	dg.mu.Unlock()

	ctl.Close()
	waitGoroutines(t, base)
	// The relay socket is gone with the association.
	send(client, udpRequest(0, echo, "after close"))
	expectReply(t, client, echo, "")
}

// TestUDPAssociateNamedPort: a client that names its source port is held
// to it from the first datagram.
func TestUDPAssociateNamedPort(t *testing.T) {
	echo := udpEcho(t)
	d := &recordingDialer{to: echoServer(t)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, UDP: &loopbackDatagrams{}})
	addr := serve(t, s)
	client, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer client.Close()
	wrong, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer wrong.Close()
	port := client.LocalAddr().(*net.UDPAddr).AddrPort().Port()

	c := rawSOCKS5(t, addr)
	c.Write(binary.BigEndian.AppendUint16([]byte{5, cmdUDPAssociate, 0, atypIPv4, 127, 0, 0, 1}, port))
	_, bnd := readReply5(t, c)
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(bnd[:4])), binary.BigEndian.Uint16(bnd[4:]))
	wrong.WriteToUDPAddrPort(udpRequest(0, echo, "first but wrong"), relay)
	expectReply(t, wrong, echo, "")
	client.WriteToUDPAddrPort(udpRequest(0, echo, "named"), relay)
	expectReply(t, client, echo, "named")
	if st := s.Stats().Snapshot(); st.UDPDropped["foreign"] != 1 {
		t.Fatalf("drops %v, want 1 foreign", st.UDPDropped)
	}
}

func numGoroutines() int {
	time.Sleep(20 * time.Millisecond)
	return runtimeNumGoroutine()
}

// TestUDPAssociationLimit: a listener holds maxAssociations; the next
// ASSOCIATE gets 01 and is counted, and a closed one makes room again.
func TestUDPAssociationLimit(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, UDP: &loopbackDatagrams{}})
	addr := serve(t, s)
	ctls := make([]net.Conn, maxAssociations)
	for i := range ctls {
		ctls[i], _ = associateUDP(t, addr)
	}
	over := func() byte {
		c := rawSOCKS5(t, addr)
		c.Write([]byte{5, cmdUDPAssociate, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
		rep, _ := readReply5(t, c)
		return rep
	}
	if rep := over(); rep != socks5GeneralFailure {
		t.Fatalf("ASSOCIATE past the limit: reply %02x, want 01", rep)
	}
	if st := s.Stats().Snapshot(); st.UDPRefused != 1 {
		t.Fatalf("UDPRefused %d, want 1", st.UDPRefused)
	}
	ctls[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for over() != socks5Succeeded {
		if time.Now().After(deadline) {
			t.Fatal("no room for an association after one closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"
)

// TestMaxConns fills the listener's slots with live flows; each protocol's
// next connection gets its failure reply, and each refusal is counted.
func TestMaxConns(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, HTTP: true, MaxConns: 2})
	addr := serve(t, s)
	for range 2 {
		c := rawSOCKS5(t, addr)
		c.Write([]byte{5, cmdConnect, 0, atypName, 1, 'h', 0, 7})
		if rep, _ := readReply5(t, c); rep != socks5Succeeded {
			t.Fatalf("connection within the limit: reply %02x", rep)
		}
		roundTrip(t, c, "holding a slot")
	}

	c := rawSOCKS5(t, addr)
	c.Write([]byte{5, cmdConnect, 0, atypName, 1, 'h', 0, 7})
	if rep, _ := readReply5(t, c); rep != socks5GeneralFailure {
		t.Fatalf("SOCKS5 past the limit: reply %02x, want 01", rep)
	}

	c4 := dialRaw(t, addr)
	c4.Write([]byte{4, cmdConnect, 0, 7, 0, 0, 0, 1, 0, 'h', 0})
	var r4 [8]byte
	if _, err := io.ReadFull(c4, r4[:]); err != nil || r4[1] != socks4Rejected {
		t.Fatalf("SOCKS4a past the limit: reply %x, %v; want 5b", r4, err)
	}

	ch := dialRaw(t, addr)
	io.WriteString(ch, "GET http://h.invalid/ HTTP/1.1\r\nHost: h.invalid\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(ch), nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("HTTP past the limit: %v, %v; want 503", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	t.Logf("503 body: %s", body)

	if st := s.Stats().Snapshot(); st.Refused != 3 || st.Active != 2 {
		t.Fatalf("Refused %d Active %d, want 3 and 2", st.Refused, st.Active)
	}
	if n := len(d.seen()); n != 2 {
		t.Fatalf("Dial called %d times, want 2: a refused connection dials nothing", n)
	}
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// idleSockets opens n connections that never send a byte, and waits until
// the listener has accepted them all.
func idleSockets(t *testing.T, s *Server, addr string, n int) []net.Conn {
	t.Helper()
	before := s.Stats().Snapshot().Accepted
	cs := make([]net.Conn, n)
	for i := range cs {
		cs[i] = dialRaw(t, addr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Snapshot().Accepted < before+uint64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("accepted %d of %d idle sockets", s.Stats().Snapshot().Accepted-before, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cs
}

// TestIdleSocketsCannotLockOut: sockets that never finish their handshake
// hold every slot, and the client with the password still gets through,
// by closing the oldest of them.
func TestIdleSocketsCannotLockOut(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	creds := &Credentials{}
	if err := creds.Add("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, HTTP: true, Auth: creds, MaxConns: 4})
	addr := serve(t, s)
	idle := idleSockets(t, s, addr, 10)

	client, _ := xproxy.SOCKS5("tcp", addr, &xproxy.Auth{User: "alice", Password: "secret"}, xproxy.Direct)
	c, err := client.Dial("tcp", "example.invalid:7")
	if err != nil {
		t.Fatalf("the client with the password, behind idle sockets: %v", err)
	}
	defer c.Close()
	roundTrip(t, c, "through")
	// The oldest idle socket was closed to make room, the newest kept.
	if _, err := idle[0].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("oldest idle socket: read %v, want EOF", err)
	}
	idle[9].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := idle[9].Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("newest idle socket: read %v, want it still open", err)
	}
	if st := s.Stats().Snapshot(); st.HandshakeEvicted != 7 || st.Refused != 0 || st.Active != 4 {
		t.Fatalf("HandshakeEvicted %d Refused %d Active %d, want 7, 0 and 4", st.HandshakeEvicted, st.Refused, st.Active)
	}
}

// TestHandshakeBudget: far below MaxConns, no more than maxHandshakes
// connections wait in their handshake; each one past it closes the oldest.
func TestHandshakeBudget(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true})
	addr := serve(t, s)
	idle := idleSockets(t, s, addr, maxHandshakes+3)
	for i, c := range idle[:3] {
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("idle socket %d: read %v, want EOF", i, err)
		}
	}
	if st := s.Stats().Snapshot(); st.HandshakeEvicted != 3 || st.Active != maxHandshakes {
		t.Fatalf("HandshakeEvicted %d Active %d, want 3 and %d", st.HandshakeEvicted, st.Active, maxHandshakes)
	}
	// A connection past its handshake is no longer anyone's to evict.
	c := rawSOCKS5(t, addr)
	c.Write([]byte{5, cmdConnect, 0, atypName, 1, 'h', 0, 7})
	if rep, _ := readReply5(t, c); rep != socks5Succeeded {
		t.Fatalf("reply %02x", rep)
	}
	idleSockets(t, s, addr, maxHandshakes)
	roundTrip(t, c, "still here")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

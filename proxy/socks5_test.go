package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"
)

func TestSOCKS5ConnectXNet(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true})
	addr := serve(t, s)
	client, err := xproxy.SOCKS5("tcp", addr, nil, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"example.invalid:80", "198.18.0.1:443", "[2001:2::1]:8080"} {
		c, err := client.Dial("tcp", dest)
		if err != nil {
			t.Fatalf("dial %s: %v", dest, err)
		}
		roundTrip(t, c, "hello "+dest)
		// Half-close passes on: the echo peer sees EOF and closes its side.
		c.(interface{ CloseWrite() error }).CloseWrite()
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("after half-close: %q, %v", b, err)
		}
		c.Close()
	}
	want := []string{"example.invalid:80", "198.18.0.1:443", "[2001:2::1]:8080"}
	if got := d.seen(); !slices.Equal(got, want) {
		t.Fatalf("Dial saw %q, want %q (names untouched)", got, want)
	}
	st := s.Stats().Snapshot()
	if st.Accepted != 3 || st.BytesOut == 0 || st.BytesIn != st.BytesOut {
		t.Fatalf("stats %+v", st)
	}
}

func TestSOCKS5Auth(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	creds := &Credentials{}
	if err := creds.Add("alice", "s3cret:with:colons"); err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, Auth: creds})
	addr := serve(t, s)

	good, _ := xproxy.SOCKS5("tcp", addr, &xproxy.Auth{User: "alice", Password: "s3cret:with:colons"}, xproxy.Direct)
	c, err := good.Dial("tcp", "example.invalid:7")
	if err != nil {
		t.Fatalf("with the right password: %v", err)
	}
	roundTrip(t, c, "authenticated")
	c.Close()

	for _, auth := range []*xproxy.Auth{{User: "alice", Password: "wrong"}, {User: "bob", Password: "s3cret:with:colons"}, nil} {
		bad, _ := xproxy.SOCKS5("tcp", addr, auth, xproxy.Direct)
		if c, err := bad.Dial("tcp", "example.invalid:7"); err == nil {
			c.Close()
			t.Fatalf("auth %+v: dial succeeded", auth)
		}
	}
	if got := s.Stats().Snapshot().AuthFailures; got != 3 {
		t.Fatalf("AuthFailures = %d, want 3", got)
	}
	if got := d.seen(); len(got) != 1 {
		t.Fatalf("Dial called %d times, want only for the authenticated client", len(got))
	}
}

// rawSOCKS5 connects and negotiates "no authentication".
func rawSOCKS5(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte{5, 1, 0})
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, 0} {
		t.Fatalf("method selection: %x, %v", sel, err)
	}
	return c
}

func readReply5(t *testing.T, c net.Conn) (rep byte, bnd []byte) {
	t.Helper()
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	n := 4 + 2
	if h[3] == atypIPv6 {
		n = 16 + 2
	}
	bnd = make([]byte, n)
	if _, err := io.ReadFull(c, bnd); err != nil {
		t.Fatal(err)
	}
	return h[1], bnd
}

func TestSOCKS5BindUnsupported(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	addr := serve(t, NewServer(Config{Dial: d.Dial, SOCKS: true}))
	c := rawSOCKS5(t, addr)
	c.Write([]byte{5, cmdBind, 0, atypIPv4, 198, 18, 0, 1, 0, 80})
	if rep, _ := readReply5(t, c); rep != socks5CmdUnsupported {
		t.Fatalf("BIND: reply %02x, want 07", rep)
	}
}

func TestSOCKS5UDPOff(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	addr := serve(t, NewServer(Config{Dial: d.Dial, SOCKS: true, UDPOff: "the server allows no tunnel"}))
	c := rawSOCKS5(t, addr)
	c.Write([]byte{5, cmdUDPAssociate, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	if rep, _ := readReply5(t, c); rep != socks5CmdUnsupported {
		t.Fatalf("UDP ASSOCIATE without Datagrams: reply %02x, want 07", rep)
	}
}

func TestSOCKS5ConnectBND(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	addr := serve(t, NewServer(Config{Dial: d.Dial, SOCKS: true}))
	c := rawSOCKS5(t, addr)
	c.Write([]byte{5, cmdConnect, 0, atypName, 4, 'h', 'o', 's', 't', 0, 80})
	rep, bnd := readReply5(t, c)
	if rep != socks5Succeeded {
		t.Fatalf("reply %02x", rep)
	}
	// The far stream's local address: the loopback socket our dialler made.
	if bnd[0] != 127 || bnd[4] == 0 && bnd[5] == 0 {
		t.Fatalf("BND %v, want the far stream's local 127.x address and port", bnd)
	}
}

func TestHandshakeTimeoutFreesSlot(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the handshake timeout")
	}
	d := &recordingDialer{to: echoServer(t)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true})
	addr := serve(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(HandshakeTimeout + 5*time.Second))
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle client: read %v, want EOF when the proxy gives up", err)
	}
	if el := time.Since(start); el < HandshakeTimeout-time.Second {
		t.Fatalf("closed after %v, before the handshake timeout", el)
	}
}

// TestMalformedRequestsAnswered: requests that parse to nothing usable
// get their protocol's failure reply, not a silent close.
func TestMalformedRequestsAnswered(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	addr := serve(t, NewServer(Config{Dial: d.Dial, SOCKS: true}))

	c := dialRaw(t, addr)
	c.Write([]byte{5, 0})
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, methodNone} {
		t.Errorf("NMETHODS=0: reply %x, %v; want 05 ff", sel, err)
	}

	c = rawSOCKS5(t, addr)
	c.Write([]byte{5, cmdConnect, 0, atypName, 0, 0, 80})
	if rep, _ := readReply5(t, c); rep != socks5GeneralFailure {
		t.Errorf("SOCKS5 empty name: reply %02x, want 01", rep)
	}

	c = dialRaw(t, addr)
	c.Write([]byte{4, cmdConnect, 0, 80, 0, 0, 0, 1, 'u', 0, 0})
	var r4 [8]byte
	if _, err := io.ReadFull(c, r4[:]); err != nil || r4[1] != socks4Rejected {
		t.Errorf("SOCKS4a empty name: reply %x, %v; want 5b", r4, err)
	}
	if n := len(d.seen()); n != 0 {
		t.Errorf("Dial called %d times for malformed requests", n)
	}
}

// warnings records the messages of Warn records.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return true }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnings) WithGroup(string) slog.Handler                { return w }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.mu.Lock()
		w.msgs = append(w.msgs, r.Message)
		w.mu.Unlock()
	}
	return nil
}

func (w *warnings) count(substr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// TestAuthFailuresWarnOnce: the first failed authentication and the first
// SOCKS4 client refused under auth on a listener are warnings, so the user
// learns why clients fail; the rest are only counted.
func TestAuthFailuresWarnOnce(t *testing.T) {
	d := &recordingDialer{to: echoServer(t)}
	creds := &Credentials{}
	if err := creds.Add("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	w := &warnings{}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, HTTP: true, Auth: creds, Log: slog.New(w)})
	addr := serve(t, s)
	for range 3 {
		bad, _ := xproxy.SOCKS5("tcp", addr, &xproxy.Auth{User: "alice", Password: "wrong"}, xproxy.Direct)
		if c, err := bad.Dial("tcp", "example.invalid:7"); err == nil {
			c.Close()
			t.Fatal("wrong password: dial succeeded")
		}
		c := dialRaw(t, addr)
		c.Write([]byte{4, cmdConnect, 0, 80, 198, 18, 0, 1, 0})
		var r4 [8]byte
		if _, err := io.ReadFull(c, r4[:]); err != nil || r4[1] != socks4Rejected {
			t.Fatalf("SOCKS4 under auth: reply %x, %v", r4, err)
		}
	}
	if st := s.Stats().Snapshot(); st.AuthFailures != 6 {
		t.Fatalf("AuthFailures %d, want 6", st.AuthFailures)
	}
	if n := w.count("authentication failed"); n != 1 {
		t.Errorf("%d warnings of a failed authentication, want 1: %q", n, w.msgs)
	}
	if n := w.count("SOCKS4 refused"); n != 1 {
		t.Errorf("%d warnings of SOCKS4 refused, want 1: %q", n, w.msgs)
	}
}

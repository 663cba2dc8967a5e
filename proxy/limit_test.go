package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
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

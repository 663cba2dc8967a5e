package proxy

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzSOCKSRequest feeds every SOCKS parser the same bytes: none may
// panic, a parse never claims more bytes than it was given, and errShort
// always asks for more than it had.
func FuzzSOCKSRequest(f *testing.F) {
	f.Add([]byte{5, 1, 0})
	f.Add([]byte{5, 2, 0, 2})
	f.Add([]byte{1, 5, 'a', 'l', 'i', 'c', 'e', 2, 'p', 'w'})
	f.Add([]byte{5, 1, 0, 1, 198, 18, 0, 1, 0, 80})
	f.Add([]byte{5, 1, 0, 3, 4, 'h', 'o', 's', 't', 1, 187})
	f.Add(append([]byte{5, 3, 0, 4}, make([]byte, 18)...))
	f.Add([]byte{4, 1, 0, 80, 198, 18, 0, 1, 'u', 0})
	f.Add([]byte{4, 1, 0, 80, 0, 0, 0, 1, 0, 'h', 'o', 's', 't', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(what string, n int, err error) {
			switch {
			case err == errShort && n <= len(b):
				t.Fatalf("%s: errShort asks for %d bytes, had %d", what, n, len(b))
			case err == nil && (n <= 0 || n > len(b)):
				t.Fatalf("%s: consumed %d of %d bytes", what, n, len(b))
			}
		}
		methods, n, err := parseGreeting(b)
		check("greeting", n, err)
		if err == nil && len(methods) != n-2 {
			t.Fatalf("greeting: %d methods in %d bytes", len(methods), n)
		}
		user, pass, n, err := parseUserPass(b)
		check("user/pass", n, err)
		if err == nil && len(user)+len(pass)+3 != n {
			t.Fatalf("user/pass: %d+%d bytes in %d", len(user), len(pass), n)
		}
		req, n, err := parseSOCKS5Request(b)
		check("socks5", n, err)
		checkRequest(t, req, err)
		req, _, n, err = parseSOCKS4Request(b)
		check("socks4", n, err)
		checkRequest(t, req, err)
		if err == nil && n > maxSOCKS4 {
			t.Fatalf("socks4: %d bytes, more than %d", n, maxSOCKS4)
		}
	})
}

func checkRequest(t *testing.T, req request, err error) {
	if err != nil {
		return
	}
	if req.host == "" || len(req.host) > 255 {
		t.Fatalf("host %q", req.host)
	}
	if req.addr.IsValid() && req.addr.String() != req.host {
		t.Fatalf("address %v given as host %q", req.addr, req.host)
	}
}

// FuzzUDPHeader checks the UDP header parser, and that a reply header for
// any parsed address parses back to it.
func FuzzUDPHeader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 198, 18, 0, 1, 0, 53, 'q'})
	f.Add([]byte{0, 0, 1, 3, 3, 'a', '.', 'b', 0, 53})
	f.Add(append([]byte{0, 0, 0, 4, 0x20, 0x01, 0, 2}, make([]byte, 14)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseUDPHeader(b)
		if err != nil {
			return
		}
		if h.n > len(b) || h.nameEnd > h.n || h.nameStart > h.nameEnd {
			t.Fatalf("header %+v in %d bytes", h, len(b))
		}
		if !h.addr.IsValid() {
			if h.nameEnd == h.nameStart {
				t.Fatal("empty name accepted")
			}
			return
		}
		src := netip.AddrPortFrom(h.addr, h.port)
		var buf [maxUDPHeader + 4]byte
		copy(buf[maxUDPHeader:], "data")
		start := putUDPHeader(buf[:maxUDPHeader], src)
		back, err := parseUDPHeader(buf[start:])
		if err != nil || back.frag != 0 || netip.AddrPortFrom(back.addr, back.port) != netip.AddrPortFrom(h.addr.Unmap(), h.port) ||
			!bytes.Equal(buf[start+back.n:], []byte("data")) {
			t.Fatalf("reply header for %v parses back as %+v, %v", src, back, err)
		}
	})
}

package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestHdrRoundTrip(t *testing.T) {
	h := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: 0x0102, GSOSize: 1448, CsumStart: 40, CsumOffset: 16}
	b := make([]byte, HdrLen)
	h.Encode(b)
	want := []byte{1, 0x84, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.NativeEndian.PutUint16(want[2:], 0x0102)
	binary.NativeEndian.PutUint16(want[4:], 1448)
	binary.NativeEndian.PutUint16(want[6:], 40)
	binary.NativeEndian.PutUint16(want[8:], 16)
	if !bytes.Equal(b, want) {
		t.Fatalf("Encode = %x, want %x", b, want)
	}
	var g Hdr
	if err := g.Decode(b); err != nil || g != h {
		t.Fatalf("Decode = %+v, %v; want %+v", g, err, h)
	}
	if err := g.Decode(b[:HdrLen-1]); !errors.Is(err, ErrShortHdr) {
		t.Fatalf("Decode of 9 bytes: %v", err)
	}
}

func TestSum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 300)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for off := 0; off < 8; off++ {
		for n := 0; n+off <= len(buf); n++ {
			b := buf[off : off+n]
			if got, want := sum(b), rfc1071(b); got != want && !(n > 0 && got^want == 0xffff) {
				t.Fatalf("sum of %d bytes at %d = %#04x, want %#04x", n, off, got, want)
			}
		}
	}
	ff := bytes.Repeat([]byte{0xff}, 4096)
	if got := sum(ff); got != 0xffff {
		t.Fatalf("sum of 0xff bytes = %#04x", got)
	}
}

// checkSegments verifies segs, the result of splitting the packet s
// describes at gsoSize: lengths, ids, sequence numbers, flags, checksums,
// every other header byte unchanged, and payloads that add up to the
// original byte for byte.
func checkSegments(t *testing.T, s spec, gsoSize int, segs [][]byte) {
	t.Helper()
	orig := build(s)
	l3 := l3len(orig)
	hdr := l3 + 8
	if !s.udp {
		hdr = l3 + 20 + len(s.opts)
	}
	want := max(1, (len(s.payload)+gsoSize-1)/gsoSize)
	if len(segs) != want {
		t.Fatalf("%d segments, want %d", len(segs), want)
	}
	var data []byte
	for i, p := range segs {
		n := min(gsoSize, len(s.payload)-i*gsoSize)
		if len(p) != hdr+n {
			t.Fatalf("segment %d: %d bytes, want %d", i, len(p), hdr+n)
		}
		checkSums(t, p, s.proto())
		// Compare the headers with the original with the fields that must
		// change patched in, so everything else is checked unchanged.
		w := bytes.Clone(orig[:hdr])
		if s.v6 {
			binary.BigEndian.PutUint16(w[4:], uint16(len(p)-40))
		} else {
			binary.BigEndian.PutUint16(w[2:], uint16(len(p)))
			binary.BigEndian.PutUint16(w[4:], s.id+uint16(i))
			copy(w[10:12], p[10:12])
		}
		if s.udp {
			binary.BigEndian.PutUint16(w[l3+4:], uint16(len(p)-l3))
			copy(w[l3+6:l3+8], p[l3+6:l3+8])
		} else {
			binary.BigEndian.PutUint32(w[l3+4:], s.seq+uint32(i*gsoSize))
			f := s.flags
			if i != len(segs)-1 {
				f &^= tcpFIN | tcpPSH
			}
			if i != 0 {
				f &^= tcpCWR
			}
			w[l3+13] = f
			copy(w[l3+16:l3+18], p[l3+16:l3+18])
		}
		if !bytes.Equal(p[:hdr], w) {
			t.Fatalf("segment %d headers\n got %x\nwant %x", i, p[:hdr], w)
		}
		data = append(data, p[hdr:]...)
	}
	if !bytes.Equal(data, s.payload) {
		t.Fatalf("payloads differ from the original")
	}
}

// splitAll splits pkt with one call, into fresh buffers with headroom.
func splitAll(t *testing.T, pkt []byte, h Hdr) [][]byte {
	t.Helper()
	return splitAllLink(t, IP, pkt, h)
}

// splitAllLink is splitAll for a packet of link.
func splitAllLink(t *testing.T, link Link, pkt []byte, h Hdr) [][]byte {
	t.Helper()
	n, err := Segments(link, pkt, h)
	if err != nil {
		t.Fatalf("Segments: %v", err)
	}
	const off = 7
	outs := bufs(n, off+int(h.GSOSize)+128)
	sizes := make([]int, n)
	before := bytes.Clone(pkt)
	got, err := Split(link, pkt, h, 0, outs, sizes, off)
	if err != nil || got != n {
		t.Fatalf("Split = %d, %v; Segments said %d", got, err, n)
	}
	if !bytes.Equal(pkt, before) {
		t.Fatalf("Split modified its input")
	}
	segs := make([][]byte, n)
	for i := range segs {
		segs[i] = outs[i][off : off+sizes[i]]
	}
	return segs
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    spec
		gso  int
	}{
		// 64 KiB: 45 full segments and a short one; the id and the
		// sequence number wrap on the way.
		{"tcp4-64k", spec{sport: 40000, dport: 22, seq: 0xffff0000, ack: 77, flags: tcpACK | tcpPSH | tcpFIN | tcpCWR | tcpECE,
			window: 502, opts: tsOpt, id: 0xfff0, tos: 0x10, payload: payload(65535-20-32, 1)}, 1448},
		{"tcp6-64k", spec{v6: true, sport: 40000, dport: 443, seq: 12345, ack: 0xdeadbeef, flags: tcpACK | tcpPSH,
			window: 65535, opts: tsOpt, tos: 0xb8, payload: payload(65535-20-32, 2)}, 1448},
		{"tcp4-even", spec{sport: 1, dport: 2, seq: 9, flags: tcpACK | tcpPSH, payload: payload(1448*10, 3)}, 1448},
		{"tcp4-odd-mss", spec{sport: 1, dport: 2, flags: tcpACK, payload: payload(10001, 4)}, 1337},
		{"tcp4-one", spec{sport: 1, dport: 2, flags: tcpACK | tcpPSH, payload: payload(1000, 5)}, 1448},
		{"tcp6-no-opts", spec{v6: true, sport: 1, dport: 2, flags: tcpACK | tcpFIN, payload: payload(5000, 6)}, 1220},
		{"udp4", spec{udp: true, sport: 53, dport: 5353, id: 7, payload: payload(8001, 7)}, 1200},
		{"udp6", spec{v6: true, udp: true, sport: 4500, dport: 4500, payload: payload(1200*8, 8)}, 1200},
		{"udp4-odd", spec{udp: true, sport: 1, dport: 2, payload: payload(3001, 9)}, 999},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt, h := gso(tc.s, tc.gso)
			if tc.s.flags&tcpCWR != 0 {
				h.GSOType |= GSOECN
			}
			checkSegments(t, tc.s, tc.gso, splitAll(t, pkt, h))
			// Without NEEDS_CSUM (and with garbage in the field) the result is
			// the same: checksums are computed from scratch.
			h.Flags, h.CsumOffset = 0, 0
			pkt[int(h.CsumStart)+map[bool]int{false: 16, true: 6}[tc.s.udp]] ^= 0x5a
			checkSegments(t, tc.s, tc.gso, splitAll(t, pkt, h))
		})
	}
}

// TestSplitResume splits a 64 KiB packet a few segments at a time, as a
// caller with few buffers would, and compares with one call.
func TestSplitResume(t *testing.T) {
	s := spec{sport: 5, dport: 6, seq: 1, flags: tcpACK | tcpPSH, opts: tsOpt, payload: payload(65000, 11)}
	pkt, h := gso(s, 1448)
	total, _ := Segments(IP, pkt, h)
	var segs [][]byte
	outs := bufs(7, 1600)
	sizes := make([]int, 7)
	for first := 0; first < total; {
		n, err := Split(IP, pkt, h, first, outs, sizes, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := min(7, total-first); n != want {
			t.Fatalf("Split from %d wrote %d, want %d", first, n, want)
		}
		for i := range n {
			segs = append(segs, bytes.Clone(outs[i][:sizes[i]]))
		}
		first += n
	}
	checkSegments(t, s, 1448, segs)
	if n, err := Split(IP, pkt, h, total, outs, sizes, 0); n != 0 || err != nil {
		t.Fatalf("Split past the end = %d, %v", n, err)
	}
	if n, err := Split(IP, pkt, h, 3, nil, nil, 0); n != 0 || err != nil {
		t.Fatalf("Split with no outs = %d, %v", n, err)
	}
}

func TestSplitNoGSO(t *testing.T) {
	for _, s := range []spec{
		{sport: 1, dport: 2, flags: tcpACK, payload: payload(999, 1)},
		{v6: true, udp: true, sport: 1, dport: 2, payload: payload(77, 2)},
		{udp: true, sport: 1, dport: 2},
	} {
		want := build(s)
		pkt, h := gso(s, 1448)
		h.GSOType, h.GSOSize, h.HdrLen = GSONone, 0, 0
		before := bytes.Clone(pkt)
		outs, sizes := bufs(2, 2000), make([]int, 2)
		n, err := Split(IP, pkt, h, 0, outs, sizes, 3)
		if err != nil || n != 1 || sizes[0] != len(pkt) {
			t.Fatalf("Split = %d, %v, size %d", n, err, sizes[0])
		}
		if got := outs[0][3 : 3+sizes[0]]; !bytes.Equal(got, want) {
			t.Fatalf("completed checksum\n got %x\nwant %x", got, want)
		}
		if !bytes.Equal(pkt, before) {
			t.Fatal("Split modified its input")
		}
		// Without NEEDS_CSUM it is a copy.
		h.Flags = 0
		if n, err := Split(IP, pkt, h, 0, outs, sizes, 0); n != 1 || err != nil || !bytes.Equal(outs[0][:sizes[0]], pkt) {
			t.Fatalf("plain copy: %d, %v", n, err)
		}
	}
}

func TestSplitErrors(t *testing.T) {
	good4, h4 := gso(spec{sport: 1, dport: 2, flags: tcpACK, opts: tsOpt, payload: payload(5000, 1)}, 1448)
	good6, h6 := gso(spec{v6: true, sport: 1, dport: 2, flags: tcpACK, payload: payload(5000, 1)}, 1448)
	udp4, hu := gso(spec{udp: true, sport: 1, dport: 2, payload: payload(5000, 1)}, 1448)
	with := func(p []byte, f func(p []byte)) []byte { p = bytes.Clone(p); f(p); return p }
	// cut shortens an IPv4 packet and keeps its total length consistent, so
	// the check that fails is the one the case is about.
	cut := func(p []byte, n int) []byte {
		p = bytes.Clone(p[:n])
		binary.BigEndian.PutUint16(p[2:], uint16(n))
		return p
	}
	hdr := func(h Hdr, f func(h *Hdr)) Hdr { f(&h); return h }
	for _, tc := range []struct {
		name string
		pkt  []byte
		h    Hdr
		want error
	}{
		{"empty", nil, h4, ErrMalformed},
		{"short-ip4", good4[:19], Hdr{GSOType: GSOTCPv4, GSOSize: 100, CsumStart: 20}, ErrMalformed},
		{"short-tcp", cut(good4, 30), Hdr{GSOType: GSOTCPv4, GSOSize: 100, CsumStart: 20, Flags: 1, CsumOffset: 16}, ErrMalformed},
		{"short-ip6", good6[:39], Hdr{GSOType: GSOTCPv6, GSOSize: 100, CsumStart: 40}, ErrMalformed},
		{"hdr-len-beyond", good4, hdr(h4, func(h *Hdr) { h.HdrLen = uint16(len(good4) + 1) }), ErrMalformed},
		{"csum-start-wrong", good4, hdr(h4, func(h *Hdr) { h.CsumStart = 24 }), ErrMalformed},
		{"csum-start-beyond", good4, hdr(h4, func(h *Hdr) { h.CsumStart = 60000 }), ErrMalformed},
		{"csum-offset-wrong", good4, hdr(h4, func(h *Hdr) { h.CsumOffset = 6 }), ErrMalformed},
		{"none-csum-beyond", good4, Hdr{Flags: FlagNeedsCsum, CsumStart: 20, CsumOffset: uint16(len(good4))}, ErrMalformed},
		{"ufo", udp4, hdr(hu, func(h *Hdr) { h.GSOType = GSOUDP }), ErrUnsupported},
		{"unknown-type", good4, hdr(h4, func(h *Hdr) { h.GSOType = 2 }), ErrUnsupported},
		{"unknown-type-ecn", good4, hdr(h4, func(h *Hdr) { h.GSOType = 0x86 }), ErrUnsupported},
		{"gso-size-0", good4, hdr(h4, func(h *Hdr) { h.GSOSize = 0 }), ErrMalformed},
		{"v4-as-v6", good4, hdr(h4, func(h *Hdr) { h.GSOType = GSOTCPv6 }), ErrMalformed},
		{"v6-as-v4", good6, hdr(h6, func(h *Hdr) { h.GSOType = GSOTCPv4 }), ErrMalformed},
		{"udp-as-tcp", udp4, hdr(hu, func(h *Hdr) { h.GSOType = GSOTCPv4; h.CsumOffset = 16 }), ErrMalformed},
		{"tcp-doff-small", with(good4, func(p []byte) { p[32] = 4 << 4 }), h4, ErrMalformed},
		{"tcp-doff-beyond", cut(good4, 50), hdr(h4, func(h *Hdr) { h.HdrLen = 0 }), ErrMalformed},
		{"ip4-ihl-small", with(good4, func(p []byte) { p[0] = 0x44 }), h4, ErrMalformed},
		{"ip4-total-len", with(good4, func(p []byte) { p[3]++ }), h4, ErrMalformed},
		{"ip4-fragment", with(good4, func(p []byte) { p[6] |= 0x20 }), h4, ErrMalformed},
		{"ip6-payload-len", with(good6, func(p []byte) { p[5]++ }), h6, ErrMalformed},
		{"ip6-routing-hdr", with(good6, func(p []byte) { p[6] = 43 }), h6, ErrMalformed},
		{"ip6-ext-beyond", with(good6[:44], func(p []byte) { p[6] = 0; p[4], p[5] = 0, 4 }), Hdr{GSOType: GSOTCPv6, GSOSize: 1, CsumStart: 40}, ErrMalformed},
		{"huge-gso", good4, hdr(h4, func(h *Hdr) { h.GSOSize = 65535; h.HdrLen = 0 }), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outs, sizes := bufs(64, 66000), make([]int, 64)
			_, serr := Segments(IP, tc.pkt, tc.h)
			n, err := Split(IP, tc.pkt, tc.h, 0, outs, sizes, 0)
			if !errors.Is(err, tc.want) || !errors.Is(serr, tc.want) || (err != nil && n != 0) {
				t.Fatalf("Split = %d, %v; Segments: %v; want %v", n, err, serr, tc.want)
			}
		})
	}

	// Buffers too small: the error names the one.
	outs, sizes := bufs(4, 1600), make([]int, 4)
	outs[2] = outs[2][:1000]
	n, err := Split(IP, good4, h4, 0, outs, sizes, 10)
	if !errors.Is(err, ErrShortBuffer) || n != 0 || !strings.Contains(err.Error(), "outs[2]") {
		t.Fatalf("short outs[2]: %d, %v", n, err)
	}
	if _, err := Split(IP, good4, h4, 0, bufs(4, 1600), sizes[:2], 0); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("short sizes: %v", err)
	}
	if _, err := Split(IP, good4, Hdr{}, 0, bufs(1, 100), sizes, 0); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("short outs[0] without GSO: %v", err)
	}
	for _, first := range []int{-1, 5} {
		if _, err := Split(IP, good4, h4, first, outs, sizes, 0); err == nil {
			t.Fatalf("first %d: no error", first)
		}
	}
	if _, err := Split(IP, good4, h4, 0, outs, sizes, -1); err == nil {
		t.Fatal("negative offset: no error")
	}
}

func TestSplitAllocs(t *testing.T) {
	pkt, h := gso(spec{sport: 1, dport: 2, flags: tcpACK, opts: tsOpt, payload: payload(65483, 1)}, 1448)
	outs, sizes := bufs(64, 1600), make([]int, 64)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := Split(IP, pkt, h, 0, outs, sizes, 0); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("Split allocates %v times", a)
	}
}

package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// TestSplitEthernet splits tap super-frames: every segment is the segment
// Split makes of the bare IP packet, behind the frame's own Ethernet
// header, VLAN tag included.
func TestSplitEthernet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		s      spec
		gso    int
		tagged bool
	}{
		{"tcp4", spec{sport: 40000, dport: 22, seq: 7, flags: tcpACK | tcpPSH, opts: tsOpt, id: 9, payload: payload(65000, 1)}, 1448, false},
		{"tcp6", spec{v6: true, sport: 40000, dport: 22, flags: tcpACK | tcpCWR, opts: tsOpt, payload: payload(20000, 2)}, 1428, false},
		{"udp4", spec{udp: true, sport: 53, dport: 5353, payload: payload(8001, 3)}, 1200, false},
		{"udp6", spec{v6: true, udp: true, sport: 1, dport: 2, payload: payload(3600, 4)}, 1200, false},
		{"tcp4-tagged", spec{sport: 1, dport: 2, flags: tcpACK, payload: payload(5000, 5)}, 1448, true},
		{"tcp6-tagged", spec{v6: true, sport: 1, dport: 2, flags: tcpACK, payload: payload(5000, 6)}, 1448, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bare, bh := gso(tc.s, tc.gso)
			frame, h := gsoEth(tc.s, tc.gso, tc.tagged)
			if tc.s.flags&tcpCWR != 0 {
				h.GSOType |= GSOECN
				bh.GSOType |= GSOECN
			}
			l2 := len(frame) - len(bare)
			want := splitAll(t, bare, bh)
			got := splitAllLink(t, Ethernet, frame, h)
			if len(got) != len(want) {
				t.Fatalf("%d segments, want %d", len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i][:l2], frame[:l2]) {
					t.Fatalf("segment %d: Ethernet header %x, want %x", i, got[i][:l2], frame[:l2])
				}
				if !bytes.Equal(got[i][l2:], want[i]) {
					t.Fatalf("segment %d differs from the bare packet's", i)
				}
			}
			checkSegments(t, tc.s, tc.gso, stripAll(got, l2))
		})
	}
}

func stripAll(frames [][]byte, l2 int) [][]byte {
	p := make([][]byte, len(frames))
	for i, f := range frames {
		p[i] = f[l2:]
	}
	return p
}

// TestSplitEthernetErrors: a GSO header on a frame that carries no IP
// packet of its kind, or whose csum_start counts from the IP header (as
// on a tun) rather than the frame's start, is refused.
func TestSplitEthernetErrors(t *testing.T) {
	good, h := gsoEth(spec{sport: 1, dport: 2, flags: tcpACK, payload: payload(5000, 1)}, 1448, false)
	with := func(f func(p []byte)) []byte { p := bytes.Clone(good); f(p); return p }
	arp := with(func(p []byte) { binary.BigEndian.PutUint16(p[12:], 0x0806) })
	v6type := with(func(p []byte) { binary.BigEndian.PutUint16(p[12:], etherIPv6) })
	qinq := vlan(vlan(good, 1), 2)
	for _, tc := range []struct {
		name string
		pkt  []byte
		h    Hdr
	}{
		{"arp", arp, h},
		{"type-says-ipv6", v6type, h},
		{"csum-start-from-ip", good, Hdr{Flags: h.Flags, GSOType: h.GSOType, GSOSize: h.GSOSize, CsumStart: h.CsumStart - ethHdrLen, CsumOffset: 16}},
		{"two-tags", qinq, Hdr{Flags: h.Flags, GSOType: h.GSOType, GSOSize: h.GSOSize, CsumStart: h.CsumStart + 8, CsumOffset: 16}},
		{"short", good[:13], Hdr{GSOType: GSOTCPv4, GSOSize: 1}},
		{"header-only", good[:14], Hdr{GSOType: GSOTCPv4, GSOSize: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Segments(Ethernet, tc.pkt, tc.h); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Segments = %v; want ErrMalformed", err)
			}
			if n, err := Split(Ethernet, tc.pkt, tc.h, 0, bufs(8, 2000), make([]int, 8), 0); n != 0 || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Split = %d, %v; want ErrMalformed", n, err)
			}
		})
	}
	// The same frame read as an IP packet is refused too: its first byte is
	// a MAC's.
	if _, err := Segments(IP, good, h); err == nil {
		t.Fatal("a frame passed as an IP packet was accepted")
	}
}

// TestSplitEthernetChecksumOnly completes a tap frame's partial checksum
// with csum_start counted from the frame's first byte.
func TestSplitEthernetChecksumOnly(t *testing.T) {
	s := spec{udp: true, sport: 1, dport: 2, payload: payload(300, 1)}
	want := eth(build(s), 0)
	frame, h := gsoEth(s, 1448, false)
	h.GSOType, h.GSOSize, h.HdrLen = GSONone, 0, 0
	outs, sizes := bufs(1, 2000), make([]int, 1)
	if n, err := Split(Ethernet, frame, h, 0, outs, sizes, 0); n != 1 || err != nil || !bytes.Equal(outs[0][:sizes[0]], want) {
		t.Fatalf("Split = %d, %v:\n got %x\nwant %x", n, err, outs[0][:sizes[0]], want)
	}
}

// TestCoalesceEthernet: runs merge only behind the same Ethernet header,
// and frames the coalescer cannot read as untagged IPv4 or IPv6 go out in
// place: tagged, ARP, a type that does not match the packet, padding.
func TestCoalesceEthernet(t *testing.T) {
	a, a6 := flow(false), flow(true)
	for _, tc := range []struct {
		name   string
		pkts   func() [][]byte
		groups [][]int
	}{
		{"run-v4", func() [][]byte { return ethAll(buildAll(train(a, repeat(40, 1448)...))) }, [][]int{seq(0, 40)}},
		{"run-v6", func() [][]byte { return ethAll(buildAll(train(a6, repeat(40, 1448)...))) }, [][]int{seq(0, 40)}},
		{"mac-differs", func() [][]byte {
			p := ethAll(buildAll(train(a, repeat(4, 1448)...)))
			p[2][5]++ // another destination
			return p
		}, [][]int{{0, 1}, {2}, {3}}},
		{"source-mac-differs", func() [][]byte {
			p := ethAll(buildAll(train(a, repeat(3, 1448)...)))
			p[1][11]++ // from here on, another source
			p[2][11]++
			return p
		}, [][]int{{0}, {1, 2}}},
		{"tagged", func() [][]byte {
			p := ethAll(buildAll(train(a, repeat(3, 1448)...)))
			for i := range p {
				p[i] = vlan(p[i], 5)
			}
			return p
		}, [][]int{{0}, {1}, {2}}},
		{"arp-between", func() [][]byte {
			p := ethAll(buildAll(train(a, repeat(2, 1448)...)))
			arp := eth(make([]byte, 28), 0)
			binary.BigEndian.PutUint16(arp[12:], 0x0806)
			return [][]byte{p[0], arp, p[1]}
		}, [][]int{{0, 2}, {1}}},
		{"type-mismatch", func() [][]byte {
			p := ethAll(buildAll(train(a, repeat(3, 1448)...)))
			for i := range p {
				binary.BigEndian.PutUint16(p[i][12:], etherIPv6)
			}
			return p
		}, [][]int{{0}, {1}, {2}}},
		{"padded", func() [][]byte {
			p := ethAll(buildAll(train(a, 1448, 1448, 1448)))
			p[1] = append(p[1], 0, 0, 0, 0)
			return p
		}, [][]int{{0}, {1}, {2}}},
		{"runt", func() [][]byte {
			p := ethAll(buildAll(train(a, repeat(2, 1448)...)))
			return [][]byte{p[0], p[0][:13], p[0][:20], p[1]}
		}, [][]int{{0, 3}, {1}, {2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			coalesce(t, NewCoalescer(Ethernet, 64), tc.pkts(), tc.groups)
		})
	}
	// Runs stop where the IP packet would pass 64 KiB, not the frame.
	hl := 20 + 32
	per := (maxIP - hl) / 1448
	coalesce(t, NewCoalescer(Ethernet, 64), ethAll(buildAll(train(a, repeat(50, 1448)...))), [][]int{seq(0, per), seq(per, 50)})
}

// TestPlainCoalescerEthernet: toward a stock peer's tap, merged frames are
// exactly the frame a sender with a larger MSS would have sent, no larger
// than the limit with their Ethernet header, and accept sees the IP
// destination.
func TestPlainCoalescerEthernet(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			s := flow(v6)
			var seen []byte
			c := NewPlainCoalescer(Ethernet, 64, 16384, func(_, d []byte) bool { seen = bytes.Clone(d); return true })
			specs := train(s, repeat(20, 1448)...)
			pkts := ethAll(buildAll(specs))
			in := withHeadroom(pkts)
			frames := c.Coalesce(in, off, make([][]byte, 0, len(in)))
			if _, d := s.addrs(); !bytes.Equal(seen, d) {
				t.Fatalf("accept saw %x; want the IP destination %x", seen, d)
			}
			hl := ethHdrLen + 40 + len(tsOpt)
			if v6 {
				hl += 20
			}
			per := (16384 - hl) / 1448
			groups := [][]int{seq(0, per), seq(per, 20)}
			if len(frames) != len(groups) {
				t.Fatalf("%d frames, want %d", len(frames), len(groups))
			}
			for k, g := range groups {
				want := specs[g[0]]
				want.payload = nil
				for _, i := range g {
					want.payload = append(want.payload, specs[i].payload...)
				}
				p := frames[k][HdrLen:]
				if len(p) > 16384 || !bytes.Equal(p, eth(build(want), 0)) {
					t.Fatalf("frame %d (%d bytes) is not the frame a sender would have sent for packets %v", k, len(p), g)
				}
				checkSums(t, p[ethHdrLen:], 6)
			}
		})
	}
}

func TestSplitEthernetAllocs(t *testing.T) {
	frame, h := gsoEth(spec{sport: 1, dport: 2, flags: tcpACK, opts: tsOpt, payload: payload(65000, 1)}, 1448, false)
	outs, sizes := bufs(64, 1600), make([]int, 64)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := Split(Ethernet, frame, h, 0, outs, sizes, 0); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("Split of a frame allocates %v times", a)
	}
}

// TestEmptyDataValid: a header that only says the checksum was verified
// asks nothing of its packet, as a tap hands out for frames a NIC checked.
func TestEmptyDataValid(t *testing.T) {
	b := make([]byte, HdrLen)
	b[0] = FlagDataValid
	if !Empty(b) {
		t.Fatal("a FlagDataValid-only header is not Empty")
	}
	b[0] = FlagDataValid | FlagNeedsCsum
	if Empty(b) {
		t.Fatal("a header that needs a checksum is Empty")
	}
	b[0], b[1] = 0, GSOTCPv4
	if Empty(b) {
		t.Fatal("a GSO header is Empty")
	}
}

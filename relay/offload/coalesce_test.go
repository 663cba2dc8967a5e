package offload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

const off = 16 // headroom the tests give Coalesce

// flow is a bulk TCP sender's segment as Linux sends it: ACK, timestamps.
func flow(v6 bool) spec {
	return spec{v6: v6, sport: 40000, dport: 22, seq: 0xfffff000, ack: 5, flags: tcpACK, window: 500, opts: tsOpt, id: 100, ttl: 64}
}

// train returns consecutive segments of s with the given payload sizes:
// sequence numbers continuing, IPv4 ids incrementing, as a sender makes them.
func train(s spec, sizes ...int) []spec {
	var out []spec
	for i, n := range sizes {
		s.payload = payload(n, byte(i))
		out = append(out, s)
		s.seq += uint32(n)
		s.id++
	}
	return out
}

func repeat(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

// withHeadroom copies packets into buffers with off bytes of headroom.
func withHeadroom(pkts [][]byte) [][]byte {
	b := make([][]byte, len(pkts))
	for i, p := range pkts {
		b[i] = make([]byte, off+len(p))
		copy(b[i][off:], p)
	}
	return b
}

func buildAll(specs []spec) [][]byte {
	p := make([][]byte, len(specs))
	for i, s := range specs {
		p[i] = build(s)
	}
	return p
}

// checkFrames checks frames, what Coalesce made of pkts (in bufs), against
// groups, the packet indices each frame should carry: a frame of one
// packet is that packet in place with a zero header; a merged frame is a
// well-formed GSO packet that Split turns back into exactly its packets.
// The packets' IP headers start at l2: 0, or 14 behind an Ethernet header,
// which a merged frame carries as its first packet did.
func checkFrames(t *testing.T, l2 int, pkts, in [][]byte, frames [][]byte, groups [][]int) {
	t.Helper()
	if len(frames) != len(groups) {
		t.Fatalf("%d frames, want %d (%v)", len(frames), len(groups), groups)
	}
	for k, f := range frames {
		g := groups[k]
		var h Hdr
		if err := h.Decode(f); err != nil {
			t.Fatal(err)
		}
		if len(g) == 1 {
			i := g[0]
			if h != (Hdr{}) || &f[0] != &in[i][off-HdrLen] || len(f) != HdrLen+len(pkts[i]) || !bytes.Equal(f[HdrLen:], pkts[i]) {
				t.Fatalf("frame %d: want packet %d in place, untouched, with a zero header; header %+v", k, i, h)
			}
			continue
		}
		p := f[HdrLen:]
		ip := p[l2:]
		if len(ip) > maxIP {
			t.Fatalf("frame %d: %d bytes", k, len(p))
		}
		first := pkts[g[0]]
		if !bytes.Equal(p[:l2], first[:l2]) {
			t.Fatalf("frame %d: Ethernet header %x, its first packet's %x", k, p[:l2], first[:l2])
		}
		l3 := l2 + l3len(first[l2:])
		thl := int(first[l3+12]>>4) * 4
		want := Hdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: uint16(l3 + thl),
			GSOSize: uint16(len(first) - l3 - thl), CsumStart: uint16(l3), CsumOffset: 16}
		src, dst := ip[12:16], ip[16:20]
		if ip[0]>>4 == 6 {
			want.GSOType = GSOTCPv6
			src, dst = ip[8:24], ip[24:40]
			if int(binary.BigEndian.Uint16(ip[4:])) != len(ip)-40 {
				t.Fatalf("frame %d: IPv6 payload length", k)
			}
		} else {
			if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) || rfc1071(ip[:l3-l2]) != 0xffff {
				t.Fatalf("frame %d: IPv4 total length or header checksum", k)
			}
		}
		if first[l3+13]&tcpCWR != 0 {
			want.GSOType |= GSOECN
		}
		if h != want {
			t.Fatalf("frame %d: header %+v, want %+v", k, h, want)
		}
		if seed := rfc1071(pseudoHdr(src, dst, 6, len(p)-l3)); binary.BigEndian.Uint16(p[l3+16:]) != seed {
			t.Fatalf("frame %d: checksum field %#04x, want the pseudo-header sum %#04x", k, binary.BigEndian.Uint16(p[l3+16:]), seed)
		}
		// What the kernel does with CHECKSUM_PARTIAL yields a valid checksum.
		done := bytes.Clone(ip)
		binary.BigEndian.PutUint16(done[l3-l2+16:], ^rfc1071(done[l3-l2:]))
		checkSums(t, done, 6)

		segs := splitAllLink(t, linkOf(l2), p, h)
		if len(segs) != len(g) {
			t.Fatalf("frame %d splits into %d segments, want %d", k, len(segs), len(g))
		}
		for j, i := range g {
			if !bytes.Equal(segs[j], pkts[i]) {
				t.Fatalf("frame %d segment %d differs from packet %d\n got %x\nwant %x", k, j, i, segs[j][:60], pkts[i][:60])
			}
		}
	}
}

// linkOf is the Link whose packets have their IP header at l2.
func linkOf(l2 int) Link {
	if l2 > 0 {
		return Ethernet
	}
	return IP
}

func coalesce(t *testing.T, c *Coalescer, pkts [][]byte, groups [][]int) {
	t.Helper()
	in := withHeadroom(pkts)
	frames := c.Coalesce(in, off, make([][]byte, 0, len(in)))
	for i := range pkts {
		if !bytes.Equal(in[i][off:], pkts[i]) {
			t.Fatalf("Coalesce modified packet %d", i)
		}
	}
	checkFrames(t, c.l2, pkts, in, frames, groups)
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestCoalesceRun(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprint("v6=", v6), func(t *testing.T) {
			c := NewCoalescer(IP, 64)
			coalesce(t, c, buildAll(train(flow(v6), repeat(40, 1448)...)), [][]int{seq(0, 40)})

			// A short last segment with PSH ends the run, and is merged.
			sizes := append(repeat(5, 1448), 600, 1448, 1448)
			sp := train(flow(v6), sizes...)
			sp[5].flags |= tcpPSH
			coalesce(t, c, buildAll(sp), [][]int{seq(0, 6), {6, 7}})

			// Runs stop short of 64 KiB.
			hl := map[bool]int{false: 20, true: 40}[v6] + 32
			per := (maxIP - hl) / 1448
			coalesce(t, c, buildAll(train(flow(v6), repeat(50, 1448)...)), [][]int{seq(0, per), seq(per, 50)})

			// Segments without options, odd sizes, CWR on the first.
			s := flow(v6)
			s.opts = nil
			s.flags |= tcpCWR | tcpECE
			sp = train(s, 999, 999, 999, 5)
			for i := 1; i < len(sp); i++ {
				sp[i].flags &^= tcpCWR
			}
			coalesce(t, c, buildAll(sp), [][]int{{0, 1, 2, 3}})
		})
	}
}

func TestCoalesceCases(t *testing.T) {
	a := flow(false)
	b := a
	b.sport = 40001 // another flow
	rev := a
	rev.src, rev.dst = dst4, src4 // the same connection's other direction
	a6 := flow(true)
	mod := func(sp []spec, i int, f func(*spec)) []spec { f(&sp[i]); return sp }
	ack := func(s spec) spec { s.payload = nil; return s }
	udp := spec{udp: true, sport: 53, dport: 53, payload: payload(100, 9)}

	for _, tc := range []struct {
		name   string
		pkts   func() [][]byte
		groups [][]int
	}{
		{"empty", func() [][]byte { return nil }, nil},
		{"single", func() [][]byte { return buildAll(train(a, 1448)) }, [][]int{{0}}},
		{"out-of-order", func() [][]byte {
			p := buildAll(train(a, repeat(4, 1448)...))
			p[1], p[2] = p[2], p[1]
			return p
		}, [][]int{{0}, {1}, {2}, {3}}},
		{"gap", func() [][]byte {
			p := buildAll(train(a, repeat(6, 1448)...))
			return append(p[:3], p[4:]...)
		}, [][]int{{0, 1, 2}, {3, 4}}},
		{"duplicate", func() [][]byte {
			p := buildAll(train(a, repeat(3, 1448)...))
			return [][]byte{p[0], p[1], p[1], p[2]}
		}, [][]int{{0, 1}, {2, 3}}},
		{"interleaved", func() [][]byte {
			x, y := buildAll(train(a, repeat(3, 1448)...)), buildAll(train(b, repeat(3, 1448)...))
			return [][]byte{x[0], y[0], x[1], y[1], x[2], y[2]}
		}, [][]int{{0, 2, 4}, {1, 3, 5}}},
		{"both-directions", func() [][]byte {
			x, y := buildAll(train(a, repeat(2, 1448)...)), buildAll(train(rev, repeat(2, 1448)...))
			return [][]byte{x[0], y[0], y[1], x[1]}
		}, [][]int{{0, 3}, {1, 2}}},
		{"v4-and-v6", func() [][]byte {
			x, y := buildAll(train(a, repeat(2, 1448)...)), buildAll(train(a6, repeat(2, 1448)...))
			return [][]byte{x[0], y[0], x[1], y[1]}
		}, [][]int{{0, 2}, {1, 3}}},
		{"psh-middle", func() [][]byte {
			return buildAll(mod(train(a, repeat(4, 1448)...), 1, func(s *spec) { s.flags |= tcpPSH }))
		}, [][]int{{0, 1}, {2, 3}}},
		{"psh-first", func() [][]byte {
			return buildAll(mod(train(a, repeat(3, 1448)...), 0, func(s *spec) { s.flags |= tcpPSH }))
		}, [][]int{{0}, {1, 2}}},
		{"shorter-middle", func() [][]byte { return buildAll(train(a, 1448, 1000, 1448)) }, [][]int{{0, 1}, {2}}},
		{"longer-after", func() [][]byte { return buildAll(train(a, 1000, 1448, 1448)) }, [][]int{{0}, {1, 2}}},
		{"pure-ack-closes", func() [][]byte {
			p := buildAll(train(a, repeat(4, 1448)...))
			return [][]byte{p[0], p[1], build(ack(a)), p[2], p[3]}
		}, [][]int{{0, 1}, {2}, {3, 4}}},
		{"other-flow-ack", func() [][]byte {
			p := buildAll(train(a, repeat(2, 1448)...))
			return [][]byte{p[0], build(ack(rev)), p[1]}
		}, [][]int{{0, 2}, {1}}},
		{"non-tcp", func() [][]byte {
			p := buildAll(train(a, repeat(3, 1448)...))
			return [][]byte{build(udp), p[0], build(udp), p[1], {0x45, 1, 2}, p[2], nil, {0x60, 0, 0}}
		}, [][]int{{0}, {1, 3, 5}, {2}, {4}, {6}, {7}}},
		{"ack-differs", func() [][]byte {
			return buildAll(mod(train(a, repeat(2, 1448)...), 1, func(s *spec) { s.ack++ }))
		}, [][]int{{0}, {1}}},
		{"window-differs", func() [][]byte {
			return buildAll(mod(train(a, repeat(2, 1448)...), 1, func(s *spec) { s.window++ }))
		}, [][]int{{0}, {1}}},
		{"options-differ", func() [][]byte {
			return buildAll(mod(train(a, repeat(2, 1448)...), 1, func(s *spec) {
				s.opts = bytes.Clone(s.opts)
				s.opts[11]++
			}))
		}, [][]int{{0}, {1}}},
		{"options-length-differs", func() [][]byte {
			return buildAll(mod(train(a, repeat(2, 1448)...), 1, func(s *spec) { s.opts = nil }))
		}, [][]int{{0}, {1}}},
		{"ttl-differs", func() [][]byte {
			return buildAll(mod(train(a, repeat(2, 1448)...), 1, func(s *spec) { s.ttl = 63 }))
		}, [][]int{{0}, {1}}},
		{"tos-differs", func() [][]byte {
			return buildAll(mod(train(a, repeat(2, 1448)...), 1, func(s *spec) { s.tos = 2 }))
		}, [][]int{{0}, {1}}},
		{"v6-class-differs", func() [][]byte {
			return buildAll(mod(train(a6, repeat(2, 1448)...), 1, func(s *spec) { s.tos = 0x20 }))
		}, [][]int{{0}, {1}}},
		{"v6-hop-limit-differs", func() [][]byte {
			return buildAll(mod(train(a6, repeat(2, 1448)...), 1, func(s *spec) { s.ttl = 1 }))
		}, [][]int{{0}, {1}}},
		{"ipv4-ids-free", func() [][]byte {
			// With DF the id means nothing; Split renumbers, so compare
			// after the fact: here just that they merge.
			return buildAll(train(a, repeat(2, 1448)...))
		}, [][]int{{0, 1}}},
		{"no-df", func() [][]byte {
			s := a
			s.noDF = true
			return buildAll(train(s, repeat(3, 1448)...))
		}, [][]int{{0}, {1}, {2}}},
		{"ip-options", func() [][]byte {
			s := a
			s.ipOpts = []byte{1, 1, 1, 0}
			return buildAll(train(s, repeat(3, 1448)...))
		}, [][]int{{0}, {1}, {2}}},
		{"v6-extension-header", func() [][]byte {
			p := buildAll(train(a6, repeat(3, 1448)...))
			for _, q := range p {
				q[6] = 60 // as if a destination options header came first
			}
			return p
		}, [][]int{{0}, {1}, {2}}},
		{"trailing-bytes", func() [][]byte {
			p := buildAll(train(a, repeat(3, 1448)...))
			p[1] = append(p[1], 0, 0)
			return p
		}, [][]int{{0}, {1}, {2}}},
		{"syn-fin-rst-urg", func() [][]byte {
			sp := train(a, repeat(6, 100)...)
			sp[1].flags |= tcpFIN
			sp[2].flags |= tcpRST
			sp[3].flags |= tcpURG
			sp[4].flags |= tcpSYN
			return buildAll(sp)
		}, [][]int{{0}, {1}, {2}, {3}, {4}, {5}}},
		{"cwr-second", func() [][]byte {
			return buildAll(mod(train(a, repeat(3, 1448)...), 1, func(s *spec) { s.flags |= tcpCWR }))
		}, [][]int{{0}, {1, 2}}},
		{"ece-differs", func() [][]byte {
			return buildAll(mod(train(a, repeat(2, 1448)...), 1, func(s *spec) { s.flags |= tcpECE }))
		}, [][]int{{0}, {1}}},
		{"bad-checksum-middle", func() [][]byte {
			p := buildAll(train(a, repeat(4, 1448)...))
			p[1][100] ^= 1
			return p
		}, [][]int{{0}, {1}, {2, 3}}},
		{"bad-checksum-first", func() [][]byte {
			p := buildAll(train(a, repeat(3, 1448)...))
			p[0][100] ^= 1
			return p
		}, [][]int{{0}, {1, 2}}},
		{"bad-ip-checksum", func() [][]byte {
			p := buildAll(train(a, repeat(3, 1448)...))
			p[2][10] ^= 1
			return p
		}, [][]int{{0, 1}, {2}}},
		{"bad-checksum-v6", func() [][]byte {
			p := buildAll(train(a6, repeat(3, 1448)...))
			p[1][60] ^= 0x80
			return p
		}, [][]int{{0}, {1}, {2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			coalesce(t, NewCoalescer(IP, 64), tc.pkts(), tc.groups)
		})
		// The same packets in Ethernet frames, as a tap has them, merge
		// the same way.
		t.Run(tc.name+"/ethernet", func(t *testing.T) {
			coalesce(t, NewCoalescer(Ethernet, 64), ethAll(tc.pkts()), tc.groups)
		})
	}
}

func TestCoalesceBatchLimit(t *testing.T) {
	c := NewCoalescer(IP, 4)
	coalesce(t, c, buildAll(train(flow(false), repeat(7, 1448)...)), [][]int{{0, 1, 2, 3}, {4}, {5}, {6}})
	// The next call starts afresh: no run carries over.
	coalesce(t, c, buildAll(train(flow(false), repeat(2, 1448)...)), [][]int{{0, 1}})
	coalesce(t, NewCoalescer(IP, 0), buildAll(train(flow(false), repeat(2, 1448)...)), [][]int{{0}, {1}})
}

// TestCoalesceReuse checks a second call does not disturb nor depend on the
// first's frames beyond the documented lifetime.
func TestCoalesceReuse(t *testing.T) {
	c := NewCoalescer(IP, 8)
	for round := range 300 { // past a few generations of the flow table
		s := flow(round%2 == 1)
		s.sport = uint16(round)
		coalesce(t, c, buildAll(train(s, repeat(8, 1000+round)...)), [][]int{seq(0, 8)})
	}
	c.gen = ^uint32(0) // the generation counter wraps
	coalesce(t, c, buildAll(train(flow(false), repeat(3, 1448)...)), [][]int{{0, 1, 2}})
}

func TestCoalesceHeadroom(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for offset < HdrLen")
		}
	}()
	NewCoalescer(IP, 4).Coalesce(withHeadroom(buildAll(train(flow(false), 10))), HdrLen-1, nil)
}

func TestCoalesceAllocs(t *testing.T) {
	for _, link := range []Link{IP, Ethernet} {
		coalesceAllocs(t, link)
	}
}

// coalesceAllocs checks that both coalescers merge two interleaved
// trains of link's packets without allocating.
func coalesceAllocs(t *testing.T, link Link) {
	x := buildAll(train(flow(false), repeat(32, 1448)...))
	y := buildAll(train(flow(true), repeat(32, 1448)...))
	if link == Ethernet {
		x, y = ethAll(x), ethAll(y)
	}
	var pkts [][]byte
	for i := range x {
		pkts = append(pkts, x[i], y[i])
	}
	in := withHeadroom(pkts)
	out := make([][]byte, 0, len(in))
	accept := func(_, d []byte) bool { return true }
	for _, c := range []*Coalescer{NewCoalescer(link, len(in)), NewPlainCoalescer(link, len(in), maxIP, accept)} {
		if a := testing.AllocsPerRun(100, func() {
			if got := c.Coalesce(in, off, out); len(got) != 2 {
				t.Fatalf("%d packets", len(got))
			}
		}); a != 0 {
			t.Fatalf("Coalesce (link %v, plain %v) allocates %v times", link, c.plain, a)
		}
	}
}

// TestPlainCoalescer checks the mode for a stock peer: merged packets are
// exactly the packet a sender with a larger MSS would have sent, complete
// checksums and all, no larger than the limit, for accepted destinations
// only, and the caller's headroom is left alone.
func TestPlainCoalescer(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			mine := flow(v6)
			other := flow(v6)
			sa, d := other.addrs()
			other.src, other.dst = sa, append([]byte(nil), d...)
			other.dst[len(other.dst)-1]++
			c := NewPlainCoalescer(IP, 64, 16384, func(_, d []byte) bool {
				_, want := mine.addrs()
				return bytes.Equal(d, want)
			})
			specs := train(mine, repeat(20, 1448)...)
			specs[19].flags |= tcpPSH
			specs = append(specs, train(other, repeat(4, 1448)...)...)
			pkts := buildAll(specs)
			in := withHeadroom(pkts)
			for i := range in {
				for j := range off {
					in[i][j] = 0xa5
				}
			}
			frames := c.Coalesce(in, off, make([][]byte, 0, len(in)))
			hl := 40 + len(tsOpt)
			if v6 {
				hl += 20
			}
			per := (16384 - hl) / 1448
			groups := [][]int{seq(0, per), seq(per, 20), {20}, {21}, {22}, {23}}
			if len(frames) != len(groups) {
				t.Fatalf("%d frames, want %d", len(frames), len(groups))
			}
			for k, g := range groups {
				f := frames[k]
				p := f[HdrLen:]
				if len(g) == 1 {
					if !bytes.Equal(f[:HdrLen], bytes.Repeat([]byte{0xa5}, HdrLen)) {
						t.Fatalf("frame %d: headroom written: %x", k, f[:HdrLen])
					}
					if &f[0] != &in[g[0]][off-HdrLen] || !bytes.Equal(p, pkts[g[0]]) {
						t.Fatalf("frame %d: want packet %d in place", k, g[0])
					}
					continue
				}
				want := specs[g[0]]
				want.payload = nil
				for _, i := range g {
					want.payload = append(want.payload, specs[i].payload...)
				}
				want.flags |= specs[g[len(g)-1]].flags & tcpPSH
				if len(p) > 16384 || !bytes.Equal(p, build(want)) {
					t.Fatalf("frame %d (%d bytes) is not the packet a sender would have sent for packets %v", k, len(p), g)
				}
				checkSums(t, p, 6)
			}
		})
	}
}

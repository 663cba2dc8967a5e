package offload

import "testing"

// BenchmarkSplit cuts a 64 KiB TCPv4 super-packet into 46 segments of 1448.
func BenchmarkSplit(b *testing.B) {
	pkt, h := gso(spec{sport: 1, dport: 2, flags: tcpACK, opts: tsOpt, payload: payload(65483, 1)}, 1448)
	outs, sizes := bufs(64, 1600), make([]int, 64)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := Split(IP, pkt, h, 0, outs, sizes, 0); n != 46 || err != nil {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkCoalesce merges a batch of 64 segments of two interleaved flows,
// one IPv4, one IPv6, into two super-packets, verifying every checksum.
func BenchmarkCoalesce(b *testing.B) {
	x := buildAll(train(flow(false), repeat(32, 1448)...))
	y := buildAll(train(flow(true), repeat(32, 1448)...))
	var pkts [][]byte
	n := 0
	for i := range x {
		pkts = append(pkts, x[i], y[i])
		n += len(x[i]) + len(y[i])
	}
	in := withHeadroom(pkts)
	c := NewCoalescer(IP, len(in))
	out := make([][]byte, 0, len(in))
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		if got := c.Coalesce(in, off, out); len(got) != 2 {
			b.Fatal(len(got))
		}
	}
}

// BenchmarkCoalescePassThrough is the cost for a batch with nothing to
// merge: 64 segments of 64 different flows.
func BenchmarkCoalescePassThrough(b *testing.B) {
	var pkts [][]byte
	for i := range 64 {
		s := flow(i%2 == 0)
		s.sport = uint16(i)
		pkts = append(pkts, buildAll(train(s, 1448))...)
	}
	in := withHeadroom(pkts)
	c := NewCoalescer(IP, len(in))
	out := make([][]byte, 0, len(in))
	b.ReportAllocs()
	for b.Loop() {
		if got := c.Coalesce(in, off, out); len(got) != 64 {
			b.Fatal(len(got))
		}
	}
}

func BenchmarkSum1500(b *testing.B) {
	p := payload(1500, 1)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		sum(p)
	}
}

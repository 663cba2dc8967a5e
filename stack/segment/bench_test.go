package segment

import (
	"net/netip"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// ipRig is a segment whose client's MAC is known and whose inner device
// keeps nothing: what is measured is the segment alone.
func ipRig(tb testing.TB) (*rig, [][]byte, [][]byte, []int) {
	r := newRig(tb, nil)
	r.write(ip4Frame(lease.Addr(), gw4))
	if _, ok := r.seg.ClientMAC(); !ok {
		tb.Fatal("the client's MAC was not learnt")
	}
	r.inner.takeWritten()
	r.inner.keep = false
	frame := ip6Frame(stable6.Addr(), netip.MustParseAddr("2001:2:1::1"))
	in := make([][]byte, r.seg.BatchSize())
	out := make([][]byte, r.seg.BatchSize())
	for i := range in {
		in[i] = append(make([]byte, relay.Headroom), frame...)
		out[i] = make([]byte, relay.Headroom+HeaderLen+r.inner.mtu)
	}
	return r, in, out, make([]int, len(out))
}

// roundTrip writes a batch of IP frames and reads a batch of IP packets.
func roundTrip(tb testing.TB, r *rig, in, out [][]byte, sizes []int, pkt []byte) {
	if _, err := r.seg.Write(in, relay.Headroom); err != nil {
		tb.Fatal(err)
	}
	for range out {
		r.inner.q <- pkt
	}
	if n, err := r.seg.Read(out, sizes, relay.Headroom); err != nil || n != len(out) {
		tb.Fatalf("Read = %d, %v", n, err)
	}
}

func TestIPPathAllocs(t *testing.T) {
	r, in, out, sizes := ipRig(t)
	pkt := ipv4Packet(gw4, lease.Addr(), 6, tcpSYN())
	if a := testing.AllocsPerRun(100, func() { roundTrip(t, r, in, out, sizes, pkt) }); a != 0 {
		t.Errorf("%.1f allocations per batch on the IP path, want 0", a)
	}
}

// BenchmarkIPPath is one frame each way per op: Write strips the header,
// Read writes it.
func BenchmarkIPPath(b *testing.B) {
	r, in, out, sizes := ipRig(b)
	pkt := ipv4Packet(gw4, lease.Addr(), 6, tcpSYN())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(in) {
		roundTrip(b, r, in, out, sizes, pkt)
	}
}

package sshchan

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/offload"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// ipPacket is an IPv4 packet of n bytes whose payload bytes count from seed.
func ipPacket(n int, seed byte) []byte {
	p := make([]byte, n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	p[9] = 17
	for i := 20; i < n; i++ {
		p[i] = seed + byte(i)
	}
	return p
}

// withHeadroom copies packets behind relay.Headroom bytes of room.
func withHeadroom(pkts ...[]byte) [][]byte {
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = append(make([]byte, relay.Headroom), p...)
	}
	return bufs
}

// readAll reads from d until it has want packets.
func readAll(t *testing.T, d relay.Device, want int) [][]byte {
	t.Helper()
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, relay.Headroom+wire.MaxStreamPacket)
	}
	sizes := make([]int, len(bufs))
	var got [][]byte
	for len(got) < want {
		n, err := d.Read(bufs, sizes, relay.Headroom)
		if err != nil {
			t.Fatalf("Read after %d packets: %v", len(got), err)
		}
		for i := range n {
			got = append(got, append([]byte(nil), bufs[i][relay.Headroom:relay.Headroom+sizes[i]]...))
		}
	}
	return got
}

// Batches of packets from 20 bytes to 64 KiB cross a real x/crypto/ssh
// channel in order and byte for byte, whatever the SSH messages' sizes.
func TestFramedCarriesBatches(t *testing.T) {
	a, b := channelPair(t)
	tx, rx := NewFramed(a, FramedConfig{Mode: relay.PointToPoint}), NewFramed(b, FramedConfig{Mode: relay.PointToPoint})
	defer tx.Close()
	defer rx.Close()
	r := rand.New(rand.NewPCG(1, 2))
	var sent [][]byte
	var batches [][][]byte
	for range 20 {
		var pkts [][]byte
		for range 1 + r.IntN(64) {
			n := 20 + r.IntN(1500)
			if r.IntN(8) == 0 {
				n = 20 + r.IntN(65535-20)
			}
			pkts = append(pkts, ipPacket(n, byte(len(sent))))
			sent = append(sent, pkts[len(pkts)-1])
		}
		batches = append(batches, withHeadroom(pkts...))
	}
	errc := make(chan error, 1)
	go func() {
		for _, bufs := range batches {
			if n, err := tx.Write(bufs, relay.Headroom); n != len(bufs) || err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	got := readAll(t, rx, len(sent))
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("packet %d of %d: %d bytes arrived for %d sent, or different bytes", i, len(sent), len(got[i]), len(sent[i]))
		}
	}
}

// tcpSuper is an IPv4 TCP super-packet of payload bytes with the header the
// kernel puts in front of one it hands out with TSO: the checksum left to
// complete over the TCP header and payload.
func tcpSuper(payload, mss int) ([]byte, offload.Hdr) {
	p := make([]byte, 40+payload)
	p[0], p[8], p[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:], []byte{198, 18, 3, 2, 198, 18, 2, 9})
	binary.BigEndian.PutUint16(p[20:], 40000)
	binary.BigEndian.PutUint16(p[22:], 5201)
	binary.BigEndian.PutUint32(p[24:], 1000)
	p[32], p[33] = 5<<4, 0x18 // data offset 5, ACK|PSH
	binary.BigEndian.PutUint16(p[34:], 512)
	for i := 40; i < len(p); i++ {
		p[i] = byte(i * 7)
	}
	return p, offload.Hdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOTCPv4, HdrLen: 40,
		GSOSize: uint16(mss), CsumStart: 20, CsumOffset: 16}
}

// A super-packet from a GSO device reaches a plain one as segments of its
// MSS whose payloads, in order, are the original's.
func TestFramedSplitsForAPlainDevice(t *testing.T) {
	a, b := channelPair(t)
	tx := NewFramed(a, FramedConfig{Mode: relay.PointToPoint, GSO: true})
	rx := NewFramed(b, FramedConfig{Mode: relay.PointToPoint})
	defer tx.Close()
	defer rx.Close()
	const payload, mss = 60000, 1448
	super, h := tcpSuper(payload, mss)
	buf := withHeadroom(super)
	h.Encode(buf[0][relay.Headroom-offload.HdrLen:])
	// A plain packet in the same batch goes without a header.
	plainPkt := ipPacket(100, 9)
	bufs := append(buf, withHeadroom(plainPkt)...)
	go tx.Write(bufs, relay.Headroom)
	want := (payload + mss - 1) / mss
	got := readAll(t, rx, want+1)
	var joined []byte
	for i, seg := range got[:want] {
		if len(seg) > 40+mss || binary.BigEndian.Uint16(seg[2:]) != uint16(len(seg)) {
			t.Fatalf("segment %d: %d bytes, IPv4 length %d", i, len(seg), binary.BigEndian.Uint16(seg[2:]))
		}
		joined = append(joined, seg[40:]...)
	}
	if !bytes.Equal(joined, super[40:]) {
		t.Fatal("the segments' payloads are not the super-packet's")
	}
	if !bytes.Equal(got[want], plainPkt) {
		t.Fatal("the plain packet after the super-packet did not arrive whole")
	}
}

// A device that passes GSO packets gets the header back in its headroom.
func TestFramedPassesGSOWhole(t *testing.T) {
	a, b := channelPair(t)
	tx := NewFramed(a, FramedConfig{Mode: relay.PointToPoint, GSO: true})
	rx := NewFramed(b, FramedConfig{Mode: relay.PointToPoint, GSO: true})
	defer tx.Close()
	defer rx.Close()
	super, h := tcpSuper(30000, 1448)
	buf := withHeadroom(super)
	h.Encode(buf[0][relay.Headroom-offload.HdrLen:])
	go tx.Write(buf, relay.Headroom)
	bufs := [][]byte{make([]byte, relay.Headroom+wire.MaxStreamPacket)}
	sizes := []int{0}
	if n, err := rx.Read(bufs, sizes, relay.Headroom); n != 1 || err != nil {
		t.Fatalf("Read: %d, %v", n, err)
	}
	var got offload.Hdr
	if err := got.Decode(bufs[0][relay.Headroom-offload.HdrLen:]); err != nil || got != h {
		t.Fatalf("header %+v (%v), want %+v", got, err, h)
	}
	if !bytes.Equal(bufs[0][relay.Headroom:relay.Headroom+sizes[0]], super) {
		t.Fatal("the super-packet changed on the way")
	}
}

// Bad frames are counted and skipped; a length out of range ends the
// stream, which cannot be resynchronised.
func TestFramedBadInput(t *testing.T) {
	good := ipPacket(60, 1)
	frame := func(flags byte, p []byte) []byte {
		b := make([]byte, wire.FrameHeader)
		wire.PutFrameHeader(b, flags, len(p))
		return append(b, p...)
	}
	var stream []byte
	stream = append(stream, frame(0x40, good)...)                     // an unknown kind of frame
	stream = append(stream, frame(0, append(ipPacket(60, 2), 0))...)  // a trailing byte
	stream = append(stream, frame(wire.FrameGSO, []byte{1, 2, 3})...) // a header cut short
	stream = append(stream, frame(0, good)...)                        // fine
	stream = append(stream, 0, 0, 0, 0)                               // length 0
	var in relay.Counters
	f := NewFramed(&chunkChannel{chunks: [][]byte{stream}}, FramedConfig{Mode: relay.PointToPoint, In: &in})
	bufs := [][]byte{make([]byte, 2000), make([]byte, 2000)}
	sizes := make([]int, 2)
	n, err := f.Read(bufs, sizes, relay.Headroom)
	if n != 1 || !bytes.Equal(bufs[0][relay.Headroom:relay.Headroom+sizes[0]], good) {
		t.Fatalf("Read: %d packets, %v; want the one good packet", n, err)
	}
	if n, err = f.Read(bufs, sizes, relay.Headroom); n != 0 || err == nil || err == io.EOF {
		t.Fatalf("Read at a zero length: %d, %v; want an error", n, err)
	}
	if d := in.Snapshot().Dropped(); d != 4 {
		t.Fatalf("%d drops counted, want 4 (three bad frames and the bad length)", d)
	}
}

// sink is an ssh.Channel that counts what is written to it.
type sink struct {
	chunkChannel
	n int
}

func (s *sink) Write(p []byte) (int, error) { s.n += len(p); return len(p), nil }

// Neither direction allocates per packet.
func TestFramedAllocs(t *testing.T) {
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = ipPacket(1400, byte(i))
	}
	bufs := withHeadroom(pkts...)
	s := &sink{}
	w := NewFramed(s, FramedConfig{Mode: relay.PointToPoint})
	if a := testing.AllocsPerRun(100, func() { w.Write(bufs, relay.Headroom) }); a != 0 {
		t.Errorf("Write: %v allocations per batch", a)
	}
	var stream []byte
	for _, p := range pkts {
		h := make([]byte, wire.FrameHeader)
		wire.PutFrameHeader(h, 0, len(p))
		stream = append(append(stream, h...), p...)
	}
	r := NewFramed(&loop{data: stream}, FramedConfig{Mode: relay.PointToPoint})
	rb := make([][]byte, 64)
	for i := range rb {
		rb[i] = make([]byte, 2000)
	}
	sizes := make([]int, 64)
	if a := testing.AllocsPerRun(100, func() { r.Read(rb, sizes, relay.Headroom) }); a != 0 {
		t.Errorf("Read: %v allocations per batch", a)
	}
}

// loop is an ssh.Channel whose reads return data over and over.
type loop struct {
	chunkChannel
	data []byte
	off  int
}

func (l *loop) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// BenchmarkFramed moves batches of 64 packets through a real channel.
func BenchmarkFramed(b *testing.B) {
	for _, size := range []int{1400, 65000} {
		b.Run(fmtSize(size), func(b *testing.B) {
			t := &testing.T{}
			a, c := channelPair(t)
			tx, rx := NewFramed(a, FramedConfig{Mode: relay.PointToPoint}), NewFramed(c, FramedConfig{Mode: relay.PointToPoint})
			defer tx.Close()
			defer rx.Close()
			pkts := make([][]byte, 64)
			for i := range pkts {
				pkts[i] = ipPacket(size, byte(i))
			}
			bufs := withHeadroom(pkts...)
			go func() {
				for {
					if _, err := tx.Write(bufs, relay.Headroom); err != nil {
						return
					}
				}
			}()
			rb := make([][]byte, 64)
			for i := range rb {
				rb[i] = make([]byte, relay.Headroom+size)
			}
			sizes := make([]int, 64)
			b.SetBytes(int64(64 * size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for got := 0; got < 64; {
					n, err := rx.Read(rb, sizes, relay.Headroom)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
		})
	}
}

func fmtSize(n int) string {
	if n >= 60000 {
		return "64KiB"
	}
	return "1400B"
}

// A GSO header that does not describe its packet never reaches a device
// that takes headers as they are (the kernel's tun): it is counted and
// dropped.
func TestFramedRefusesBadGSOHeaders(t *testing.T) {
	super, h := tcpSuper(3000, 1448)
	bad := h
	bad.CsumStart = 3000 // past the packet
	unknown := h
	unknown.GSOType = 9
	var stream []byte
	for _, hd := range []offload.Hdr{bad, unknown, h} {
		payload := make([]byte, offload.HdrLen, offload.HdrLen+len(super))
		hd.Encode(payload)
		payload = append(payload, super...)
		f := make([]byte, wire.FrameHeader)
		wire.PutFrameHeader(f, wire.FrameGSO, len(payload))
		stream = append(append(stream, f...), payload...)
	}
	var in relay.Counters
	f := NewFramed(&chunkChannel{chunks: [][]byte{stream}}, FramedConfig{Mode: relay.PointToPoint, GSO: true, In: &in})
	bufs := [][]byte{make([]byte, relay.Headroom+wire.MaxStreamPacket), make([]byte, relay.Headroom+wire.MaxStreamPacket)}
	sizes := make([]int, 2)
	n, err := f.Read(bufs, sizes, relay.Headroom)
	if n != 1 || err != nil || !bytes.Equal(bufs[0][relay.Headroom:relay.Headroom+sizes[0]], super) {
		t.Fatalf("Read: %d packets, %v; want only the well-formed one", n, err)
	}
	if d := in.Snapshot().Dropped(); d != 2 {
		t.Fatalf("%d drops, want 2", d)
	}
}

package sshchan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
)

// csum is the Internet checksum of b (RFC 1071), complemented.
func csum(b []byte) uint16 {
	var s uint32
	for ; len(b) > 1; b = b[2:] {
		s += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// tcpTrain is n consecutive IPv4 TCP segments of mss bytes from
// 198.18.2.9:5201 to dst:40000, with DF and valid checksums, as a sender
// cuts them for a 1500-byte MTU, and the payload they carry together.
func tcpTrain(n, mss int, dst [4]byte) (segs [][]byte, payload []byte) {
	return tcpTrainAt(1000, n, mss, dst)
}

// tcpTrainAt is tcpTrain from sequence number seq.
func tcpTrainAt(seq uint32, n, mss int, dst [4]byte) (segs [][]byte, payload []byte) {
	for i := range n {
		p := make([]byte, 40+mss)
		p[0], p[6], p[8], p[9] = 0x45, 0x40, 64, 6
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		binary.BigEndian.PutUint16(p[4:], uint16(i))
		copy(p[12:], []byte{198, 18, 2, 9})
		copy(p[16:], dst[:])
		binary.BigEndian.PutUint16(p[10:], csum(p[:20]))
		binary.BigEndian.PutUint16(p[20:], 5201)
		binary.BigEndian.PutUint16(p[22:], 40000)
		binary.BigEndian.PutUint32(p[24:], seq+uint32(i*mss))
		p[32], p[33] = 5<<4, 0x10 // ACK
		binary.BigEndian.PutUint16(p[34:], 512)
		for j := 40; j < len(p); j++ {
			p[j] = byte(i*31 + j*7)
		}
		pseudo := append(append([]byte(nil), p[12:20]...), 0, 6, byte((len(p)-20)>>8), byte(len(p)-20))
		binary.BigEndian.PutUint16(p[36:], csum(append(pseudo, p[20:]...)))
		segs = append(segs, p)
		payload = append(payload, p[40:]...)
	}
	return segs, payload
}

// mergePair is a Channel toward an OpenSSH peer whose own network is
// 198.18.3.0/24, less routed, and the peer's end, which takes packets of
// up to MergeSize.
func mergePair(t *testing.T, routed []netip.Prefix) (tx, rx *Channel) {
	a, b := channelPair(t)
	return newMergePair(t, a, b, []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")}, routed)
}

// newMergePair wraps a and b: a as a Channel toward an OpenSSH peer whose
// own networks are local less routed, b as that peer's end.
func newMergePair(tb testing.TB, a, b ssh.Channel, local, routed []netip.Prefix) (tx, rx *Channel) {
	tb.Helper()
	tx, err := New(a, Config{Mode: relay.PointToPoint, MTU: 1500, PeerVersion: openSSHPeer, Local: local, Routed: routed})
	if err != nil {
		tb.Fatal(err)
	}
	rx, err = New(b, Config{Mode: relay.PointToPoint, MTU: MergeSize, PeerVersion: openSSHPeer})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tx.Close(); rx.Close() })
	return tx, rx
}

// A stock peer gets runs of segments toward its own network merged into
// packets of up to MergeSize with valid checksums, carrying the same bytes
// in order; segments toward anything it routes on go as they came; and a
// packet that cannot be framed is reported by its own index, the packets
// before it sent.
func TestChannelMergesTowardThePeer(t *testing.T) {
	tx, rx := mergePair(t, nil)

	mine, want := tcpTrain(40, 1448, [4]byte{198, 18, 3, 2})
	routed, _ := tcpTrain(3, 1448, [4]byte{198, 18, 9, 9})
	bad := make([]byte, 40) // version 0: not an IP packet
	bufs := withHeadroom(append(append(append([][]byte(nil), mine...), routed...), bad)...)
	done := make(chan error, 1)
	go func() {
		n, err := tx.Write(bufs, relay.Headroom)
		if n != len(bufs)-1 || !errors.Is(err, relay.ErrDropped) {
			err = errors.Join(errors.New("Write did not report the last packet as dropped"), err)
		} else {
			err = nil
		}
		done <- err
	}()

	rbufs := make([][]byte, batch)
	for i := range rbufs {
		rbufs[i] = make([]byte, relay.Headroom+MergeSize)
	}
	sizes := make([]int, batch)
	var got []byte
	var packets, routedGot int
	for routedGot < len(routed) {
		n, err := rx.Read(rbufs, sizes, relay.Headroom)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			p := rbufs[i][relay.Headroom : relay.Headroom+sizes[i]]
			if p[19] == 9 {
				if !bytes.Equal(p, routed[routedGot]) {
					t.Fatalf("routed segment %d was changed", routedGot)
				}
				routedGot++
				continue
			}
			packets++
			if len(p) > MergeSize || int(binary.BigEndian.Uint16(p[2:])) != len(p) || csum(p[:20]) != 0 {
				t.Fatalf("merged packet of %d bytes: bad length or IPv4 header checksum", len(p))
			}
			pseudo := append(append([]byte(nil), p[12:20]...), 0, 6, byte((len(p)-20)>>8), byte(len(p)-20))
			if csum(append(pseudo, p[20:]...)) != 0 {
				t.Fatalf("merged packet %d: bad TCP checksum", packets)
			}
			got = append(got, p[40:]...)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the merged packets carry %d bytes, not the %d the segments did, in order", len(got), len(want))
	}
	if per := (MergeSize - 40) / 1448; packets != (40+per-1)/per {
		t.Fatalf("40 segments toward the peer came as %d packets, want %d of up to %d segments", packets, (40+per-1)/per, per)
	}
}

// A run that fills MergeSize exactly goes as one packet; networks the
// peer routes on inside its own are never merged; and once the peer says
// a packet was too big for a link of its own, nothing more is merged.
func TestChannelMergeLimits(t *testing.T) {
	tx, rx := mergePair(t, []netip.Prefix{netip.MustParsePrefix("198.18.3.128/25")})
	// write sends segs from a goroutine of its own, since the reader must
	// run meanwhile; the returned channel closes when Write has returned,
	// so that no two Writes overlap (Channel allows one at a time).
	write := func(segs [][]byte) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			if n, err := tx.Write(withHeadroom(segs...), relay.Headroom); n != len(segs) || err != nil {
				t.Errorf("Write = %d, %v; want %d, nil", n, err, len(segs))
			}
		}()
		return done
	}

	full, _ := tcpTrain(10, (MergeSize-40)/10, [4]byte{198, 18, 3, 2})
	wrote1 := write(full)
	if got := readAll(t, rx, 1); len(got[0]) != MergeSize {
		t.Fatalf("a run of exactly MergeSize came as a packet of %d bytes", len(got[0]))
	}
	<-wrote1
	// 11 x 1448 and a 416-byte tail would make 16,384 bytes, whose frame
	// (with the address family) is more than the framer sends.
	over, want := tcpTrain(11, 1448, [4]byte{198, 18, 3, 2})
	tail, more := tcpTrainAt(1000+11*1448, 1, 416, [4]byte{198, 18, 3, 2})
	wrote2 := write(append(over, tail...))
	var joined []byte
	for _, p := range readAll(t, rx, 2) {
		if len(p) > MergeSize {
			t.Fatalf("merged packet of %d bytes", len(p))
		}
		joined = append(joined, p[40:]...)
	}
	if !bytes.Equal(joined, append(want, more...)) {
		t.Fatal("a run past MergeSize did not arrive whole and in order")
	}
	<-wrote2

	routed, _ := tcpTrain(8, 1448, [4]byte{198, 18, 3, 200})
	wrote3 := write(routed)
	for i, p := range readAll(t, rx, len(routed)) {
		if len(p) != len(routed[i]) {
			t.Fatalf("segment %d toward an AllowedIPs network inside the tunnel's came as %d bytes", i, len(p))
		}
	}
	<-wrote3

	// ICMP type 3 code 4 from the peer, quoting nothing in particular.
	icmp := make([]byte, 56)
	icmp[0], icmp[8], icmp[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(icmp[2:], uint16(len(icmp)))
	copy(icmp[12:], []byte{198, 18, 3, 2, 198, 18, 2, 9})
	icmp[20], icmp[21] = 3, 4
	go rx.Write(withHeadroom(icmp), relay.Headroom)
	if got := readAll(t, tx, 1); len(got[0]) != len(icmp) {
		t.Fatal("the ICMP message did not arrive")
	}
	mine, _ := tcpTrain(8, 1448, [4]byte{198, 18, 3, 2})
	wrote4 := write(mine)
	if got := readAll(t, rx, len(mine)); len(got[0]) != len(mine[0]) {
		t.Fatalf("after the peer's packet-too-big, segments still came merged (%d bytes)", len(got[0]))
	}
	<-wrote4
}

package sshchan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

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
		binary.BigEndian.PutUint32(p[24:], uint32(1000+i*mss))
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

// A stock peer gets runs of segments toward its own network merged into
// packets of up to MergeSize with valid checksums, carrying the same bytes
// in order; segments toward anything it routes on go as they came; and a
// packet that cannot be framed is reported by its own index, the packets
// before it sent.
func TestChannelMergesTowardThePeer(t *testing.T) {
	a, b := channelPair(t)
	peer := []byte("SSH-2.0-OpenSSH_9.2p1")
	tx, err := New(a, Config{Mode: relay.PointToPoint, MTU: 1500, PeerVersion: peer,
		Local: []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	rx, err := New(b, Config{Mode: relay.PointToPoint, MTU: MergeSize, PeerVersion: peer})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	defer rx.Close()

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

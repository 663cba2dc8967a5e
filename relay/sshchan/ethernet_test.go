package sshchan

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/offload"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// Locally administered MACs for the ethernet tests.
var (
	macGateway = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	macPeer    = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	macBehind  = [6]byte{0x02, 0, 0, 0, 0, 0x03} // a host behind the peer's bridge
)

// ethFrame puts the IPv4 packet p behind an Ethernet header.
func ethFrame(dst, src [6]byte, p []byte) []byte {
	f := append(append(append([]byte(nil), dst[:]...), src[:]...), 0x08, 0x00)
	return append(f, p...)
}

func ethFrames(dst, src [6]byte, pkts [][]byte) [][]byte {
	f := make([][]byte, len(pkts))
	for i, p := range pkts {
		f[i] = ethFrame(dst, src, p)
	}
	return f
}

// arpFrom is an ARP reply's frame from src, all that tells a Channel the
// MAC its peer sends from.
func arpFrom(src [6]byte) []byte {
	f := append(append(append([]byte(nil), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), src[:]...), 0x08, 0x06)
	return append(f, make([]byte, 28)...)
}

// A stock peer's tap gets runs of segments merged into frames of up to
// wire.MaxFrame, its own Ethernet header in front and complete checksums,
// only once its frames have shown the one MAC they come from, only toward
// that MAC, and never again once a second MAC shows up behind it.
func TestChannelMergesEthernetTowardThePeer(t *testing.T) {
	a, b := channelPair(t)
	tx, err := New(a, Config{Mode: relay.Ethernet, MTU: 1500, PeerVersion: openSSHPeer,
		Local: []netip.Prefix{netip.MustParsePrefix("198.18.3.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	rx, err := New(b, Config{Mode: relay.Ethernet, MTU: wire.MaxFrame, PeerVersion: openSSHPeer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close(); rx.Close() })

	// A Read that waits for frames that never come fails the test
	// instead of hanging it.
	watchdog := time.AfterFunc(20*time.Second, func() { tx.Close(); rx.Close() })
	defer watchdog.Stop()
	// send writes frames of 40-byte IPv4 and TCP headers toward the peer
	// and returns the frames the peer read, once they carry all the TCP
	// payload sent.
	send := func(frames [][]byte) [][]byte {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if n, err := tx.Write(withHeadroom(frames...), relay.Headroom); n != len(frames) || err != nil {
				t.Errorf("Write = %d, %v; want %d, nil", n, err, len(frames))
			}
		}()
		want := 0
		for _, f := range frames {
			want += len(f) - 14 - 40
		}
		var got [][]byte
		for have := 0; have < want; {
			for _, f := range readAll(t, rx, 1) {
				got = append(got, f)
				have += len(f) - 14 - 40
			}
		}
		<-done
		return got
	}
	// from has the peer send frame, and the Channel read it.
	from := func(frame []byte) {
		t.Helper()
		go rx.Write(withHeadroom(frame), relay.Headroom)
		if got := readAll(t, tx, 1); !bytes.Equal(got[0], frame) {
			t.Fatal("the peer's frame did not arrive")
		}
	}

	segs, payload := tcpTrain(20, 1448, [4]byte{198, 18, 3, 2})
	if got := send(ethFrames(macPeer, macGateway, segs)); len(got) != len(segs) {
		t.Fatalf("before the peer sent a frame, %d segments came as %d frames", len(segs), len(got))
	}

	from(arpFrom(macPeer))
	per := (wire.MaxFrame - 14 - 40) / 1448
	merged := send(ethFrames(macPeer, macGateway, segs))
	if len(merged) != (len(segs)+per-1)/per {
		t.Fatalf("%d segments toward the peer came as %d frames, want %d", len(segs), len(merged), (len(segs)+per-1)/per)
	}
	var joined []byte
	for i, f := range merged {
		if len(f) > wire.MaxFrame || !bytes.Equal(f[:14], ethFrame(macPeer, macGateway, nil)) {
			t.Fatalf("merged frame %d: %d bytes, header %x", i, len(f), f[:14])
		}
		p := f[14:]
		if int(binary.BigEndian.Uint16(p[2:])) != len(p) || csum(p[:20]) != 0 {
			t.Fatalf("merged frame %d: bad IPv4 length or header checksum", i)
		}
		pseudo := append(append([]byte(nil), p[12:20]...), 0, 6, byte((len(p)-20)>>8), byte(len(p)-20))
		if csum(append(pseudo, p[20:]...)) != 0 {
			t.Fatalf("merged frame %d: bad TCP checksum", i)
		}
		joined = append(joined, p[40:]...)
	}
	if !bytes.Equal(joined, payload) {
		t.Fatal("the merged frames do not carry the segments' bytes in order")
	}

	// A frame to another MAC behind the peer, even to its network, is
	// forwarded by its bridge, which drops what its MTU does not take.
	if got := send(ethFrames(macBehind, macGateway, segs)); len(got) != len(segs) {
		t.Fatalf("%d segments toward another MAC came as %d frames", len(segs), len(got))
	}

	from(arpFrom(macBehind))
	if got := send(ethFrames(macPeer, macGateway, segs)); len(got) != len(segs) {
		t.Fatalf("after a second MAC behind the peer, %d segments came as %d frames", len(segs), len(got))
	}
}

// tcpSuperFrame is tcpSuper behind an Ethernet header, its header's
// offsets counted from the frame's start, as a tap hands it out.
func tcpSuperFrame(payload, mss int) ([]byte, offload.Hdr) {
	p, h := tcpSuper(payload, mss)
	h.CsumStart += 14
	h.HdrLen += 14
	return ethFrame(macPeer, macGateway, p), h
}

// A super-frame from a GSO tap reaches a plain one as frames of its MSS,
// each behind the super-frame's Ethernet header; a GSO tap gets it whole,
// header and all.
func TestFramedEthernetSuperFrames(t *testing.T) {
	const payload, mss = 60000, 1448
	super, h := tcpSuperFrame(payload, mss)
	arp := arpFrom(macPeer)
	for _, gso := range []bool{false, true} {
		a, b := channelPair(t)
		tx := NewFramed(a, FramedConfig{Mode: relay.Ethernet, GSO: true})
		rx := NewFramed(b, FramedConfig{Mode: relay.Ethernet, GSO: gso})
		// A Read that waits for frames that never come fails the test
		// instead of hanging it.
		watchdog := time.AfterFunc(20*time.Second, func() { tx.Close(); rx.Close() })
		buf := withHeadroom(super)
		h.Encode(buf[0][relay.Headroom-offload.HdrLen:])
		go tx.Write(append(buf, withHeadroom(arp)...), relay.Headroom)
		if gso {
			bufs := [][]byte{make([]byte, relay.Headroom+wire.MaxStreamPacket+18)}
			sizes := []int{0}
			if n, err := rx.Read(bufs, sizes, relay.Headroom); n != 1 || err != nil {
				t.Fatalf("Read: %d, %v", n, err)
			}
			var got offload.Hdr
			if err := got.Decode(bufs[0][relay.Headroom-offload.HdrLen:]); err != nil || got != h {
				t.Fatalf("header %+v (%v), want %+v", got, err, h)
			}
			if !bytes.Equal(bufs[0][relay.Headroom:relay.Headroom+sizes[0]], super) {
				t.Fatal("the super-frame changed on the way")
			}
		} else {
			want := (payload + mss - 1) / mss
			got := readAll(t, rx, want+1)
			var joined []byte
			for i, f := range got[:want] {
				if !bytes.Equal(f[:14], super[:14]) {
					t.Fatalf("frame %d: Ethernet header %x, want %x", i, f[:14], super[:14])
				}
				seg := f[14:]
				if len(seg) > 40+mss || binary.BigEndian.Uint16(seg[2:]) != uint16(len(seg)) {
					t.Fatalf("frame %d: %d bytes, IPv4 length %d", i, len(seg), binary.BigEndian.Uint16(seg[2:]))
				}
				pseudo := append(append([]byte(nil), seg[12:20]...), 0, 6, byte((len(seg)-20)>>8), byte(len(seg)-20))
				if csum(append(pseudo, seg[20:]...)) != 0 {
					t.Fatalf("frame %d: bad TCP checksum", i)
				}
				joined = append(joined, seg[40:]...)
			}
			if !bytes.Equal(joined, super[14+40:]) {
				t.Fatal("the frames' payloads are not the super-frame's")
			}
			if !bytes.Equal(got[want], arp) {
				t.Fatal("the ARP frame after the super-frame did not arrive whole")
			}
		}
		watchdog.Stop()
		tx.Close()
		rx.Close()
	}
}

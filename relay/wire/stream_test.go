package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// ipv4Of is a bare IPv4 header stating a packet of n bytes, zero-filled.
func ipv4Of(n int) []byte {
	p := make([]byte, n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	return p
}

func streamFrame(flags byte, payload []byte) []byte {
	b := make([]byte, FrameHeader, FrameHeader+len(payload))
	PutFrameHeader(b, flags, len(payload))
	return append(b, payload...)
}

func TestNextFrame(t *testing.T) {
	a, big := ipv4Of(20), ipv4Of(65535)
	stream := append(append(streamFrame(0, a), streamFrame(FrameGSO, append(make([]byte, 10), big...))...), streamFrame(0x80, a)...)
	flags, p, rest, known, err := NextFrame(stream)
	if err != nil || flags != 0 || !known || !bytes.Equal(p, a) {
		t.Fatalf("first frame: %x %x %v %v", flags, p, known, err)
	}
	flags, p, rest, known, err = NextFrame(rest)
	if err != nil || flags != FrameGSO || !known || len(p) != 10+65535 {
		t.Fatalf("second frame: %x %d %v %v", flags, len(p), known, err)
	}
	if _, _, _, known, err = NextFrame(rest); err != nil || known {
		t.Fatalf("a frame with an unknown flag: known %v, %v; want known false", known, err)
	}
	for i := range FrameHeader + 20 {
		if _, _, r, _, err := NextFrame(stream[:i]); err != ErrShort || len(r) != i {
			t.Fatalf("NextFrame of %d bytes: %v, rest %d; want ErrShort and all bytes left", i, err, len(r))
		}
	}
	for _, n := range []int{0, MaxStreamPayload + 1} {
		var h [FrameHeader]byte
		PutFrameHeader(h[:], 0, n)
		if _, _, _, _, err := NextFrame(append(h[:], make([]byte, 100)...)); err != ErrFrameLength {
			t.Errorf("length %d: %v, want ErrFrameLength", n, err)
		}
	}
}

func TestCheckStreamPacket(t *testing.T) {
	six := make([]byte, 40+8)
	six[0] = 0x60
	binary.BigEndian.PutUint16(six[4:], 8)
	for _, c := range []struct {
		name string
		pkt  []byte
		ok   bool
		want relay.DropReason
	}{
		{"ipv4", ipv4Of(100), true, 0},
		{"ipv6", six, true, 0},
		{"ipv4 super-packet", ipv4Of(65535), true, 0},
		{"trailing bytes", append(ipv4Of(100), 0), false, relay.DropMalformed},
		{"truncated", nil, false, relay.DropTruncated},
		{"not ip", []byte{0x10, 0, 0, 0}, false, relay.DropFamily},
		{"empty", nil, false, relay.DropTruncated},
	} {
		pkt := c.pkt
		if c.name == "truncated" {
			pkt = ipv4Of(100)
			binary.BigEndian.PutUint16(pkt[2:], 101)
		}
		err := CheckStreamPacket(relay.PointToPoint, pkt, MaxStreamPacket)
		var de *relay.DropError
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case !c.ok && (!errors.As(err, &de) || de.Reason != c.want):
			t.Errorf("%s: %v, want a %v drop", c.name, err, c.want)
		}
	}
	if err := CheckStreamPacket(relay.PointToPoint, ipv4Of(2000), 1500); err == nil {
		t.Error("a packet above the MTU was accepted")
	}
}

func TestStreamOpen(t *testing.T) {
	o := StreamOpen{OpenRequest: OpenRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit}, GSO: true}
	got, err := ParseStreamOpen(o.Marshal())
	if err != nil || got != o {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := ParseStreamOpen(o.Marshal()[:8]); err == nil {
		t.Fatal("tun@openssh.com open data taken as a stream open")
	}
	later := binary.BigEndian.AppendUint32(o.OpenRequest.Marshal(), 0xfffffffe)
	if got, err := ParseStreamOpen(later); err != nil || got.GSO {
		t.Fatalf("unknown flags: %+v, %v; want them ignored", got, err)
	}
}

// FuzzNextFrame checks that the stream deframer never reads past its
// input, never returns a payload outside it, and that every stream made of
// the frames it returned parses back to the same frames.
func FuzzNextFrame(f *testing.F) {
	f.Add(streamFrame(0, ipv4Of(20)))
	f.Add(append(streamFrame(FrameGSO, append(make([]byte, 10), ipv4Of(40)...)), streamFrame(0x81, []byte{1})...))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var again []byte
		var payloads [][]byte
		rest := b
		for {
			flags, p, r, _, err := NextFrame(rest)
			if err != nil {
				if err != ErrShort && err != ErrFrameLength {
					t.Fatalf("unexpected error %v", err)
				}
				if !bytes.Equal(r, rest) {
					t.Fatal("an error consumed bytes")
				}
				break
			}
			if len(p) == 0 || len(p) > MaxStreamPayload || len(r) >= len(rest) {
				t.Fatalf("frame of %d bytes, %d then %d left", len(p), len(rest), len(r))
			}
			again = append(again, streamFrame(flags, p)...)
			payloads = append(payloads, p)
			rest = r
			_ = CheckStreamPacket(relay.PointToPoint, p, MaxStreamPacket) // must not panic
		}
		for _, p := range payloads {
			_, q, r, _, err := NextFrame(again)
			if err != nil || !bytes.Equal(p, q) {
				t.Fatalf("re-framed stream: %v", err)
			}
			again = r
		}
	})
}

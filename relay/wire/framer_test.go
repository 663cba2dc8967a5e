package wire

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

type splitFunc func(b []byte) (frame, rest []byte, err error)

// splitAll splits b into frames until an error or the end.
func splitAll(split splitFunc, b []byte) (frames [][]byte, rest []byte, err error) {
	rest = b
	for len(rest) > 0 {
		var frame []byte
		frame, rest, err = split(rest)
		if err != nil {
			return frames, rest, err
		}
		frames = append(frames, frame)
	}
	return frames, rest, nil
}

type splitTest struct {
	name   string
	in     []byte
	frames [][]byte // the frames to expect, in order
	err    error    // after the frames
}

func runSplitTests(t *testing.T, split splitFunc, tests []splitTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frames, rest, err := splitAll(split, tt.in)
			checkErr(t, err, tt.err)
			if len(frames) != len(tt.frames) {
				t.Fatalf("got %d frames %x, want %d", len(frames), frames, len(tt.frames))
			}
			for i := range frames {
				if !bytes.Equal(frames[i], tt.frames[i]) {
					t.Fatalf("frame %d = %x, want %x", i, frames[i], tt.frames[i])
				}
			}
			if n := len(bytes.Join(frames, nil)) + len(rest); n != len(tt.in) {
				t.Fatalf("frames and rest hold %d bytes, input %d", n, len(tt.in))
			}
		})
	}
}

func frames(f ...[]byte) [][]byte { return f }

func TestSplitL3(t *testing.T) {
	v4 := l3(afInet, icmpEcho())
	v6 := l3(afInet6, udp6("hello"))
	v6linux := l3(afInet6Linux, udp6("hi"))
	big6 := l3(afInet6, ipv6(17, make([]byte, MaxFrame-40)))
	tooBig6 := l3(afInet6, ipv6(17, make([]byte, MaxFrame-39)))
	runSplitTests(t, SplitL3, []splitTest{
		{"ipv4", v4, frames(v4), nil},
		{"ipv6", v6, frames(v6), nil},
		{"ipv6 linux family", v6linux, frames(v6linux), nil},
		{"two", cat(v4, v6), frames(v4, v6), nil},
		{"three", cat(v6, v4, v6linux), frames(v6, v4, v6linux), nil},
		{"largest", big6, frames(big6), nil},
		{"oversized", tooBig6, nil, drop(relay.DropOversized)},
		{"oversized ipv4 header only", l3(afInet, with(with(icmpEcho(), 2, 0x50), 3, 0))[:8], nil, drop(relay.DropOversized)},
		{"partial family", []byte{0, 0}, nil, ErrShort},
		{"family only", l3(afInet, nil), nil, ErrShort},
		{"ipv4 header cut", v4[:6], nil, ErrShort},
		{"ipv6 header cut", v6[:9], nil, ErrShort},
		{"truncated", v4[:len(v4)-1], nil, ErrShort},
		{"complete then truncated", cat(v4, v6[:20]), frames(v4), ErrShort},
		{"junk", []byte("SSH-2.0-junk"), nil, drop(relay.DropFamily)},
		{"junk first byte", []byte{0x45}, nil, drop(relay.DropFamily)},
		{"frame then junk", cat(v6, []byte{0xff, 0, 0, 2}), frames(v6), drop(relay.DropFamily)},
		{"unknown family", l3(3, icmpEcho()), nil, drop(relay.DropFamily)},
		{"mismatched family", l3(afInet6, icmpEcho()), nil, drop(relay.DropFamily)},
		{"ipv4 ihl 4", l3(afInet, with(icmpEcho(), 0, 0x44)), nil, drop(relay.DropMalformed)},
		{"ipv4 total below header", l3(afInet, with(with(icmpEcho(), 2, 0), 3, 10)), nil, drop(relay.DropMalformed)},
		{"ipv6 jumbogram", l3(afInet6, with(with(udp6(""), 4, 0), 5, 0)), nil, drop(relay.DropMalformed)},
	})
}

func TestSplitL2(t *testing.T) {
	v4 := eth(etherIPv4, icmpEcho())
	vlan4 := eth(etherIPv4, icmpEcho(), etherVLAN)
	qinq6 := eth(etherIPv6, udp6("hello"), etherQinQ, etherVLAN)
	arp := eth(etherARP, arpRequest())                // 42 bytes, as Linux sends it
	arpPadded := pad(eth(etherARP, arpRequest()), 60) // as it arrives from a wire
	vlanARP := pad(eth(etherARP, arpRequest(), etherVLAN), 60)
	llc := pad(eth(38, append([]byte{0x42, 0x42, 0x03}, make([]byte, 35)...)), 60) // 802.3 + LLC (STP)
	tcpAck := eth(etherIPv4, ipv4(6, make([]byte, 20)))                            // 54 bytes
	zeroLed := with(with(with(v4, 0, 0), 1, 0), 2, 0x5e)                           // to 00:00:5e:…, a VRRP MAC
	runSplitTests(t, SplitL2, []splitTest{
		{"ipv4", v4, frames(v4), nil},
		{"vlan ipv4", vlan4, frames(vlan4), nil},
		{"qinq ipv6", qinq6, frames(qinq6), nil},
		{"arp unpadded", arp, frames(arp), nil},
		{"arp padded", arpPadded, frames(arpPadded), nil},
		{"vlan arp padded", vlanARP, frames(vlanARP), nil},
		{"arp padding cut at end", arpPadded[:50], frames(arpPadded[:50]), nil},
		{"arp unpadded then ipv4", cat(arp, v4), frames(arp, v4), nil},
		{"arp padded then ipv4", cat(arpPadded, v4), frames(arpPadded, v4), nil},
		{"arp then the start of a zero-led mac", cat(arp, []byte{0, 0, 0}), nil, ErrShort},
		{"arp then a frame to a zero-led mac", cat(arp, zeroLed), frames(arp, zeroLed), nil},
		{"arp padded then a frame to a zero-led mac", cat(arpPadded, zeroLed), frames(arpPadded, zeroLed), nil},
		{"arp then zeros then junk", cat(arp, make([]byte, 8), []byte{1}), frames(arp), drop(relay.DropMalformed)},
		{"tcp ack unpadded then arp", cat(tcpAck, arp), frames(tcpAck, arp), nil},
		{"three", cat(v4, arpPadded, qinq6), frames(v4, arpPadded, qinq6), nil},
		{"802.3 llc", llc, frames(llc), nil},
		{"802.3 then ipv4", cat(llc, v4), frames(llc, v4), nil},
		{"802.3 bad length", eth(1501, make([]byte, 100)), nil, drop(relay.DropMalformed)},
		{"unknown type", eth(0x88cc, make([]byte, 40)), nil, ErrUnknownLength},
		{"three tags", eth(etherIPv4, icmpEcho(), etherQinQ, etherVLAN, etherVLAN), nil, ErrUnknownLength},
		{"empty dst so far", []byte{0, 0, 0}, nil, ErrShort},
		{"zero dst", make([]byte, 60), nil, drop(relay.DropMalformed)},
		{"header cut", v4[:13], nil, ErrShort},
		{"tag cut", vlan4[:17], nil, ErrShort},
		{"ip header cut", v4[:16], nil, ErrShort},
		{"arp header cut", arp[:19], nil, ErrShort},
		{"truncated", v4[:len(v4)-1], nil, ErrShort},
		{"ipv4 then truncated", cat(v4, qinq6[:30]), frames(v4), ErrShort},
		{"type and version disagree", eth(etherIPv4, udp6("x")), nil, drop(relay.DropMalformed)},
		{"bad ihl", eth(etherIPv4, with(icmpEcho(), 0, 0x43)), nil, drop(relay.DropMalformed)},
		{"jumbogram", eth(etherIPv6, with(with(udp6(""), 4, 0), 5, 0)), nil, drop(relay.DropMalformed)},
		{"oversized", eth(etherIPv6, ipv6(17, make([]byte, MaxFrame-53))), nil, drop(relay.DropOversized)},
		{"largest", eth(etherIPv6, ipv6(17, make([]byte, MaxFrame-54))), frames(eth(etherIPv6, ipv6(17, make([]byte, MaxFrame-54)))), nil},
	})
}

// TestSplitCapacity checks that a frame cannot be appended to over the bytes
// that follow it.
func TestSplitCapacity(t *testing.T) {
	v4 := l3(afInet, icmpEcho())
	frame, _, err := SplitL3(cat(v4, v4))
	if err != nil || cap(frame) != len(v4) {
		t.Fatalf("cap(frame) = %d, err %v; want %d, nil", cap(frame), err, len(v4))
	}
}

func TestSplitAllocs(t *testing.T) {
	stream3 := cat(l3(afInet, icmpEcho()), l3(afInet6, udp6("x")), []byte{9, 9, 9, 9})
	stream2 := cat(eth(etherARP, arpRequest()), eth(etherIPv6, udp6("x"), etherVLAN), []byte{0, 0})
	allocs := testing.AllocsPerRun(100, func() {
		_, _, _ = splitAllNoAlloc(SplitL3, stream3)
		_, _, _ = splitAllNoAlloc(SplitL2, stream2)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per split, want 0", allocs)
	}
}

func splitAllNoAlloc(split splitFunc, b []byte) (n int, rest []byte, err error) {
	rest = b
	for len(rest) > 0 && err == nil {
		_, rest, err = split(rest)
		n++
	}
	return n, rest, err
}

func BenchmarkSplitL3(b *testing.B) {
	var stream []byte
	for range 32 {
		stream = append(stream, l3(afInet, ipv4(17, make([]byte, 1380)))...)
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		if _, rest, err := splitAllNoAlloc(SplitL3, stream); err != nil || len(rest) != 0 {
			b.Fatal(err)
		}
	}
}

func BenchmarkSplitL2(b *testing.B) {
	var stream []byte
	for i := range 32 {
		stream = append(stream, eth(etherIPv4, ipv4(17, make([]byte, 1380)))...)
		binary.BigEndian.PutUint16(stream[len(stream)-2:], uint16(i))
		stream = append(stream, pad(eth(etherARP, arpRequest()), 60)...)
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		if _, rest, err := splitAllNoAlloc(SplitL2, stream); err != nil || len(rest) != 0 {
			b.Fatal(err)
		}
	}
}

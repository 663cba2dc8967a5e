package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// Packet builders for the codec, framer and fuzz tests. Addresses come from
// the benchmarking ranges (198.18.0.0/15, 2001:2::/48), which no real
// network uses.

var (
	macA = []byte{0x02, 0, 0, 0, 0, 0x01}
	macB = []byte{0x02, 0, 0, 0, 0, 0x02}
)

// ipv4 returns an IPv4 header for protocol proto followed by payload.
func ipv4(proto byte, payload []byte) []byte {
	p := make([]byte, 20, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(20+len(payload)))
	p[8], p[9] = 64, proto
	copy(p[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	return append(p, payload...)
}

// ipv6 returns an IPv6 header for next header next followed by payload.
func ipv6(next byte, payload []byte) []byte {
	p := make([]byte, 40, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6], p[7] = next, 64
	copy(p[8:], []byte{0x20, 0x01, 0, 2, 15: 1})
	copy(p[24:], []byte{0x20, 0x01, 0, 2, 15: 2})
	return append(p, payload...)
}

// icmpEcho is a ping of 56 data bytes, 84 bytes of IPv4 in all.
func icmpEcho() []byte {
	icmp := make([]byte, 64)
	icmp[0] = 8 // echo request
	for i := 8; i < len(icmp); i++ {
		icmp[i] = byte(i)
	}
	return ipv4(1, icmp)
}

// udp6 is an IPv6 UDP datagram carrying data.
func udp6(data string) []byte {
	u := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(u[0:], 40000)
	binary.BigEndian.PutUint16(u[2:], 53)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(data)))
	return ipv6(17, append(u, data...))
}

// l3 prefixes pkt with the address family word af.
func l3(af uint32, pkt []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, af), pkt...)
}

// eth returns an ethernet frame from macA to macB with the given VLAN tag
// protocol IDs (each followed by TCI 100), type etype and payload.
func eth(etype uint16, payload []byte, tags ...uint16) []byte {
	f := append(append([]byte(nil), macB...), macA...)
	for _, tpid := range tags {
		f = binary.BigEndian.AppendUint16(f, tpid)
		f = binary.BigEndian.AppendUint16(f, 100)
	}
	f = binary.BigEndian.AppendUint16(f, etype)
	return append(f, payload...)
}

// arpRequest is a 28-byte ARP who-has for 198.18.0.2.
func arpRequest() []byte {
	a := []byte{0, 1, 0x08, 0, 6, 4, 0, 1}
	a = append(a, macA...)
	a = append(a, 198, 18, 0, 1)
	a = append(a, 0, 0, 0, 0, 0, 0)
	return append(a, 198, 18, 0, 2)
}

// pad appends zeros to f up to n bytes.
func pad(f []byte, n int) []byte {
	return append(f, make([]byte, max(n-len(f), 0))...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// with returns a copy of b with b[i] set to v.
func with(b []byte, i int, v byte) []byte {
	c := bytes.Clone(b)
	c[i] = v
	return c
}

// drop is a wanted *relay.DropError of reason r, compared by reason only.
func drop(r relay.DropReason) error { return &relay.DropError{Reason: r} }

// checkErr compares err with want: nil, a sentinel, or drop(reason).
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if wd, ok := want.(*relay.DropError); ok {
		de, ok := errors.AsType[*relay.DropError](err)
		if !ok || de.Reason != wd.Reason || !errors.Is(err, relay.ErrDropped) {
			t.Fatalf("err = %v, want a drop for %v", err, wd.Reason)
		}
		return
	}
	if !errors.Is(err, want) || (want == nil) != (err == nil) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func TestEncodeL3(t *testing.T) {
	tests := []struct {
		name   string
		pkt    []byte
		offset int
		wantAF uint32
		want   error
	}{
		{"ipv4", icmpEcho(), 4, afInet, nil},
		{"ipv6", udp6("x"), 4, afInet6, nil},
		{"more headroom", icmpEcho(), 16, afInet, nil},
		{"empty", nil, 4, 0, drop(relay.DropMalformed)},
		{"not ip", []byte{0x50, 1, 2, 3}, 4, 0, drop(relay.DropFamily)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := append(make([]byte, tt.offset), tt.pkt...)
			frame, err := EncodeL3(buf, tt.offset, len(tt.pkt))
			checkErr(t, err, tt.want)
			if err != nil {
				return
			}
			if want := l3(tt.wantAF, tt.pkt); !bytes.Equal(frame, want) {
				t.Fatalf("frame = %x, want %x", frame, want)
			}
			if &frame[afLen] != &buf[tt.offset] {
				t.Fatal("frame is not encoded in place")
			}
		})
	}
}

func TestEncodeL3BadArguments(t *testing.T) {
	buf := make([]byte, 100)
	buf[8] = 0x45
	for _, a := range []struct{ offset, size int }{{3, 10}, {8, 93}, {8, -1}, {200, 1}} {
		_, err := EncodeL3(buf, a.offset, a.size)
		if err == nil || errors.Is(err, relay.ErrDropped) {
			t.Errorf("EncodeL3(offset %d, size %d) err = %v, want a caller error", a.offset, a.size, err)
		}
	}
}

func TestDecodeL3(t *testing.T) {
	v4, v6 := icmpEcho(), udp6("hello")
	tests := []struct {
		name string
		msg  []byte
		want []byte // the packet, when err is nil
		err  error
	}{
		{"ipv4", l3(afInet, v4), v4, nil},
		{"ipv6", l3(afInet6, v6), v6, nil},
		{"ipv6 linux family", l3(afInet6Linux, v6), v6, nil},
		{"trailing bytes", cat(l3(afInet, v4), []byte{0, 0, 0}), nil, drop(relay.DropMalformed)},
		{"empty", nil, nil, drop(relay.DropTruncated)},
		{"short family", []byte{0, 0, 2}, nil, drop(relay.DropTruncated)},
		{"family only", l3(afInet, nil), nil, drop(relay.DropTruncated)},
		{"ipv4 with ipv6 family", l3(afInet6, v4), nil, drop(relay.DropFamily)},
		{"ipv6 with ipv4 family", l3(afInet, v6), nil, drop(relay.DropFamily)},
		{"unknown family", l3(7, v4), nil, drop(relay.DropFamily)},
		{"family high bytes", l3(0x100002, v4), nil, drop(relay.DropFamily)},
		{"version 5", l3(afInet, with(v4, 0, 0x55)), nil, drop(relay.DropFamily)},
		{"ipv4 ihl 4", l3(afInet, with(v4, 0, 0x44)), nil, drop(relay.DropMalformed)},
		{"ipv4 total below ihl", l3(afInet, with(with(v4, 2, 0), 3, 19)), nil, drop(relay.DropMalformed)},
		{"ipv4 truncated", l3(afInet, v4[:60]), nil, drop(relay.DropTruncated)},
		{"ipv4 header cut", l3(afInet, v4[:3]), nil, drop(relay.DropTruncated)},
		{"ipv6 jumbogram", l3(afInet6, with(with(v6, 4, 0), 5, 0)), nil, drop(relay.DropMalformed)},
		{"ipv6 truncated", l3(afInet6, v6[:50]), nil, drop(relay.DropTruncated)},
		{"ipv6 header cut", l3(afInet6, v6[:5]), nil, drop(relay.DropTruncated)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt, err := DecodeL3(tt.msg)
			checkErr(t, err, tt.err)
			if !bytes.Equal(pkt, tt.want) {
				t.Fatalf("pkt = %x, want %x", pkt, tt.want)
			}
		})
	}
}

func TestDecodeL2(t *testing.T) {
	const mtu = 1500
	frame := func(n int) []byte { // an unknown type: only the size is judged
		return with(eth(0x88cc, make([]byte, max(n-ethHeaderLen, 0))), 0, 1)[:n]
	}
	arp := eth(etherARP, arpRequest())
	v4 := eth(etherIPv4, icmpEcho())
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, drop(relay.DropTruncated)},
		{"13 bytes", frame(13), drop(relay.DropTruncated)},
		{"header only", frame(14), nil},
		{"mtu", frame(mtu + 14), nil},
		{"mtu and a tag", frame(mtu + 18), nil},
		{"oversized", frame(mtu + 19), drop(relay.DropOversized)},
		{"arp", arp, nil},
		{"arp padded", pad(arp, 60), nil},
		{"arp with a few bytes of padding", pad(arp, 45), nil},
		{"ipv4 with trailing bytes", cat(v4, []byte{1, 2}), nil},
		{"ipv4 truncated", v4[:len(v4)-1], drop(relay.DropTruncated)},
		{"ipv4 header cut", v4[:16], drop(relay.DropTruncated)},
		{"all-zero destination", append(make([]byte, 6), v4[6:]...), drop(relay.DropMalformed)},
		{"type and version disagree", eth(etherIPv4, udp6("x")), drop(relay.DropMalformed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErr(t, DecodeL2(tt.msg, mtu), tt.want) })
	}
}

func TestCodecAllocs(t *testing.T) {
	buf := append(make([]byte, relay.Headroom), icmpEcho()...)
	bad := l3(afInet6, icmpEcho())
	allocs := testing.AllocsPerRun(100, func() {
		frame, _ := EncodeL3(buf, relay.Headroom, len(buf)-relay.Headroom)
		_, _ = DecodeL3(frame)
		_, _ = DecodeL3(bad)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per encode and decode, want 0", allocs)
	}
}

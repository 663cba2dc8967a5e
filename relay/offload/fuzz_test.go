package offload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
)

// FuzzSplit feeds Split arbitrary packets and headers, as IP packets or as
// Ethernet frames. It must never panic or read outside pkt, must agree with
// Segments, must leave pkt alone, and whatever it accepts must come out as
// well-formed packets whose payloads add up to the input's, each behind
// the input's Ethernet header.
//
// The seeds are small on purpose: the fuzzer minimizes every new input it
// finds, and minimizing kilobytes eats the whole -fuzztime.
func FuzzSplit(f *testing.F) {
	add := func(p []byte, h Hdr, first uint8) {
		f.Add(false, p, h.Flags, h.GSOType, h.HdrLen, h.GSOSize, h.CsumStart, h.CsumOffset, first)
	}
	addEth := func(p []byte, h Hdr, first uint8) {
		f.Add(true, p, h.Flags, h.GSOType, h.HdrLen, h.GSOSize, h.CsumStart, h.CsumOffset, first)
	}
	p, h := gso(spec{sport: 1, dport: 2, seq: 5, flags: tcpACK | tcpPSH | tcpFIN, opts: tsOpt, id: 9, payload: payload(500, 1)}, 144)
	add(p, h, 0)
	add(p, h, 2)
	p, h = gso(spec{v6: true, sport: 1, dport: 2, flags: tcpACK | tcpCWR, payload: payload(301, 2)}, 100)
	add(p, h, 0)
	p, h = gso(spec{udp: true, sport: 1, dport: 2, payload: payload(250, 3)}, 120)
	add(p, h, 0)
	p, h = gso(spec{v6: true, udp: true, sport: 1, dport: 2, payload: payload(77, 4)}, 120)
	h.GSOType, h.GSOSize = GSONone, 0
	add(p, h, 0)
	add([]byte{0x45}, Hdr{GSOType: GSOTCPv4, GSOSize: 1}, 0)
	add(p[:44], Hdr{GSOType: GSOUDPL4, GSOSize: 1, CsumStart: 40}, 0)
	// The same on a tap: frames, one of them tagged.
	p, h = gsoEth(spec{sport: 1, dport: 2, seq: 5, flags: tcpACK | tcpPSH, opts: tsOpt, id: 9, payload: payload(300, 5)}, 144, false)
	addEth(p, h, 0)
	p, h = gsoEth(spec{v6: true, sport: 1, dport: 2, flags: tcpACK, payload: payload(201, 6)}, 100, true)
	addEth(p, h, 1)
	p, h = gsoEth(spec{v6: true, udp: true, sport: 1, dport: 2, payload: payload(250, 7)}, 120, false)
	addEth(p, h, 0)
	addEth(eth([]byte{0x45}, 0), Hdr{GSOType: GSOTCPv4, GSOSize: 1, CsumStart: 14}, 0)

	outs := bufs(8, 7+18+40+maxIP) // the largest IPv6 segment parse allows, tagged
	sizes := make([]int, 8)
	f.Fuzz(func(t *testing.T, ethernet bool, pkt []byte, flags, typ uint8, hdrLen, gsoSize, csumStart, csumOffset uint16, first uint8) {
		h := Hdr{flags, typ, hdrLen, gsoSize, csumStart, csumOffset}
		link := IP
		if ethernet {
			link = Ethernet
		}
		before := bytes.Clone(pkt)
		segs, serr := Segments(link, pkt, h)
		n, err := Split(link, pkt, h, int(first), outs, sizes, 7)
		if !bytes.Equal(pkt, before) {
			t.Fatal("Split modified its input")
		}
		if serr != nil {
			if err == nil {
				t.Fatalf("Segments: %v, Split: nil", serr)
			}
			return
		}
		if err != nil {
			if int(first) <= segs {
				t.Fatalf("Segments: %d, Split: %v", segs, err)
			}
			return
		}
		if want := min(max(segs-int(first), 0), len(outs)); n != want {
			t.Fatalf("Split wrote %d, want %d", n, want)
		}
		if typ&^GSOECN == GSONone {
			if n == 1 && (sizes[0] != len(pkt) || flags&FlagNeedsCsum == 0 && !bytes.Equal(outs[0][7:7+len(pkt)], pkt)) {
				t.Fatal("GSONone is not a copy")
			}
			return
		}
		// Every segment verifies, and the payloads are the input's.
		l2, _, _ := link.ipStart(pkt, true)
		l3 := int(csumStart) - l2
		thl := 8
		proto := uint8(17)
		if typ&^GSOECN != GSOUDPL4 {
			thl, proto = int(pkt[l2+l3+12]>>4)*4, 6
		}
		var data []byte
		for i := range n {
			o := outs[i][7 : 7+sizes[i]]
			if !bytes.Equal(o[:l2], pkt[:l2]) {
				t.Fatalf("segment %d: Ethernet header %x, want %x", i, o[:l2], pkt[:l2])
			}
			o = o[l2:]
			if o[0]>>4 == 4 {
				if rfc1071(o[:l3]) != 0xffff || int(binary.BigEndian.Uint16(o[2:])) != len(o) {
					t.Fatalf("segment %d: IPv4 header", i)
				}
				if got := rfc1071(append(pseudoHdr(o[12:16], o[16:20], proto, len(o)-l3), o[l3:]...)); got != 0xffff {
					t.Fatalf("segment %d: checksum", i)
				}
			} else if got := rfc1071(append(pseudoHdr(o[8:24], o[24:40], proto, len(o)-l3), o[l3:]...)); got != 0xffff {
				t.Fatalf("segment %d: checksum", i)
			}
			data = append(data, o[l3+thl:]...)
		}
		if first == 0 && n == segs && !bytes.Equal(data, pkt[l2+l3+thl:]) {
			t.Fatal("payloads differ")
		}
	})
}

// FuzzCoalesce builds a batch of TCP segments (and odd packets) from the
// fuzzer's bytes (fuzzPackets), as IP packets or Ethernet frames, and
// checks that Coalesce loses, adds and reorders nothing: splitting its
// frames again gives every flow's packets back in order, the same but for
// the IPv4 ids Split renumbers. A frame with another Ethernet header, a
// tagged frame and an odd packet go out whole.
func FuzzCoalesce(f *testing.F) {
	for _, ethernet := range []bool{false, true} {
		f.Add(ethernet, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		f.Add(ethernet, []byte{0, 0, 0, 0x10, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x02})
		f.Add(ethernet, []byte{3, 0, 1, 0, 0x41, 0x10, 2, 2, 0x81, 1, 0, 0x40, 0, 0, 0})
		f.Add(ethernet, []byte{0x80, 0x45, 0, 0, 0x60, 6, 7, 0, 0, 0x20, 0, 0, 4})
	}
	f.Add(true, []byte{0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0})

	coalescers := map[bool]*Coalescer{false: NewCoalescer(IP, 32), true: NewCoalescer(Ethernet, 32)}
	f.Fuzz(func(t *testing.T, ethernet bool, data []byte) {
		c := coalescers[ethernet]
		pkts := fuzzPackets(data, ethernet)
		in := withHeadroom(pkts)
		frames := c.Coalesce(in, off, make([][]byte, 0, len(in)))

		// A packet of a flow Coalesce can name is known by its flow; any
		// other by its position, which it must keep (it is sent in place).
		type pkt struct {
			p []byte
			i int // index in the batch if sent in place, else -1
		}
		key := func(q pkt) string {
			if s := inspect(q.p, c.l2); s.keyed {
				return fmt.Sprint(s.key)
			}
			if q.i < 0 {
				t.Fatalf("a packet Coalesce cannot name was merged: %x", q.p)
			}
			return fmt.Sprint("packet ", q.i)
		}
		norm := func(p []byte) []byte {
			p = bytes.Clone(p)
			if ip := p[min(c.l2, len(p)):]; len(ip) >= 12 && ip[0]>>4 == 4 {
				ip[4], ip[5], ip[10], ip[11] = 0, 0, 0, 0
			}
			return p
		}
		var got []pkt
		for _, fr := range frames {
			var h Hdr
			if err := h.Decode(fr); err != nil {
				t.Fatal(err)
			}
			if h.GSOType == GSONone {
				i := slices.IndexFunc(in, func(b []byte) bool { return len(b) >= off && &b[off-HdrLen] == &fr[0] })
				if i < 0 || h != (Hdr{}) {
					t.Fatalf("a frame that is not a packet in place: %+v", h)
				}
				got = append(got, pkt{fr[HdrLen:], i})
				continue
			}
			segs := splitAllLink(t, linkOf(c.l2), fr[HdrLen:], h)
			if len(segs) < 2 || len(fr)-HdrLen-c.l2 > maxIP {
				t.Fatalf("a merged frame of %d segments, %d bytes", len(segs), len(fr)-HdrLen)
			}
			for _, s := range segs {
				got = append(got, pkt{s, -1})
			}
		}
		if len(got) != len(pkts) {
			t.Fatalf("%d packets in, %d out", len(pkts), len(got))
		}
		byFlow := map[string][][]byte{}
		for i, p := range pkts {
			k := key(pkt{p, i})
			byFlow[k] = append(byFlow[k], norm(p))
		}
		for _, q := range got {
			k := key(q)
			if len(byFlow[k]) == 0 || !bytes.Equal(norm(q.p), byFlow[k][0]) {
				t.Fatalf("packet out of order or altered:\n%x", q.p[:min(len(q.p), 64)])
			}
			byFlow[k] = byFlow[k][1:]
		}
		for i := range pkts {
			if !bytes.Equal(in[i][off:], pkts[i]) {
				t.Fatalf("packet %d modified", i)
			}
		}
	})
}

// fuzzPackets turns fuzzer bytes into a batch: segments of three flows
// (two IPv4, one IPv6) in and out of sequence, with flags, windows and
// sizes at will, some corrupted, and raw packets between them. With
// ethernet each segment is a frame, now and then to another MAC or with a
// VLAN tag; raw packets stay raw bytes.
func fuzzPackets(data []byte, ethernet bool) [][]byte {
	var pkts [][]byte
	var flows [3]spec
	for i := range flows {
		flows[i] = flow(i == 2)
		flows[i].sport = uint16(i)
	}
	for len(data) >= 3 && len(pkts) < 40 {
		op, x, y := data[0], data[1], data[2]
		data = data[3:]
		if op&0x80 != 0 { // a raw packet: the next x&63 bytes
			n := min(int(x&63), len(data))
			pkts = append(pkts, bytes.Clone(data[:n]))
			data = data[n:]
			continue
		}
		s := &flows[int(op&3)%3]
		size := []int{200, 200, 120, 0}[op>>2&3]
		if y&0x40 != 0 {
			size = int(y & 0x3f)
		}
		s.seq -= uint32(x >> 6)       // 0: next; otherwise repeats or overlaps
		s.flags = tcpACK | x&0x2f     // PSH, FIN, SYN, RST, URG at will
		s.flags |= (x & 0x10) << 3    // CWR
		s.window = 500 + uint16(y>>7) // a change of window now and then
		s.payload = payload(size, op)
		p := build(*s)
		if op&0x10 != 0 {
			p[len(p)-1] ^= 1 // corrupt
		}
		if ethernet {
			p = eth(p, op>>5&1) // another destination MAC
			if op&0x40 != 0 {
				p = vlan(p, 1)
			}
		}
		pkts = append(pkts, p)
		s.seq += uint32(size)
		s.id++
	}
	return pkts
}

// FuzzPlainCoalesce checks the mode for a stock peer on the same batches:
// a merged packet is an IPv4 packet to an accepted address (here: the
// IPv4 flows), no larger than the limit, with valid checksums; unmerged
// packets go in place and untouched, headroom included; and each flow's
// bytes come out in order.
func FuzzPlainCoalesce(f *testing.F) {
	for _, ethernet := range []bool{false, true} {
		f.Add(ethernet, uint16(16380), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		f.Add(ethernet, uint16(500), []byte{0, 0, 0, 0x10, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x02})
		f.Add(ethernet, uint16(3000), []byte{3, 0, 1, 0, 0x41, 0x10, 2, 2, 0x81, 1, 0, 0x40, 0, 0, 0})
	}
	f.Add(true, uint16(3000), []byte{0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ethernet bool, limit uint16, data []byte) {
		pkts := fuzzPackets(data, ethernet)
		link := IP
		if ethernet {
			link = Ethernet
		}
		c := NewPlainCoalescer(link, 32, int(limit), func(_, d []byte) bool { return len(d) == 4 })
		in := withHeadroom(pkts)
		for _, b := range in {
			for j := range off {
				b[j] = 0xa5
			}
		}
		frames := c.Coalesce(in, off, make([][]byte, 0, len(in)))
		flowBytes := func(p []byte, into map[string][]byte) {
			if s := inspect(p, c.l2); s.keyed && s.hdr > 0 && s.hdr <= len(p) {
				k := fmt.Sprint(s.key)
				into[k] = append(into[k], p[s.hdr:]...)
			}
		}
		want, got := map[string][]byte{}, map[string][]byte{}
		for _, p := range pkts {
			flowBytes(p, want)
		}
		for _, fr := range frames {
			p := fr[HdrLen:]
			if i := slices.IndexFunc(in, func(b []byte) bool { return len(b) >= off && &b[off-HdrLen] == &fr[0] }); i >= 0 {
				if !bytes.Equal(p, pkts[i]) || !bytes.Equal(in[i][:off], bytes.Repeat([]byte{0xa5}, off)) {
					t.Fatalf("packet %d not left as it was", i)
				}
			} else {
				ip := p[c.l2:]
				if len(p) > int(limit) || len(ip) < 40 || ip[0]>>4 != 4 {
					t.Fatalf("a merged packet of %d bytes (limit %d), version %d", len(p), limit, ip[0]>>4)
				}
				if int(binary.BigEndian.Uint16(ip[2:])) != len(ip) || !tcpValid(p, c.l2, c.l2+20) {
					t.Fatalf("a merged packet with a wrong length or checksum: %x", p[:c.l2+40])
				}
				if ethernet && !bytes.Equal(p[:c.l2], eth(ip, 0)[:c.l2]) && !bytes.Equal(p[:c.l2], eth(ip, 1)[:c.l2]) {
					t.Fatalf("a merged frame with Ethernet header %x", p[:c.l2])
				}
			}
			flowBytes(p, got)
		}
		for k, b := range want {
			if !bytes.Equal(got[k], b) {
				t.Fatalf("flow %s: its bytes came out altered or out of order", k)
			}
		}
	})
}

package offload

import (
	"bytes"
	"encoding/binary"
)

// Coalescer is receive-side GRO for a tun: it merges runs of consecutive
// TCP segments of one flow into a GSO super-packet, so the kernel's stack
// runs once per run instead of once per segment. It keeps its working
// memory between calls and is not safe for concurrent use.
//
// A segment joins the run its flow has open when everything that
// tcp_gso_segment would copy from the first segment already matches it:
// same addresses and ports, IPv4 without options and with DF (so the IPv4 id
// carries no meaning, RFC 6864, and may be regenerated) or IPv6 without
// extension headers, same TOS/TTL or traffic class/flow label/hop limit,
// same ack, window, flags and TCP options, a sequence number that continues
// the run, and a payload no longer than the first segment's, with only the
// last one shorter and only the last one carrying PSH. CWR may open a run
// but not join one. SYN, FIN, RST, URG and empty segments never merge.
// IPv4 ids need not be consecutive: GSO renumbers them from the first.
//
// Checksums are verified, not trusted. The merged packet goes to the tun
// as CHECKSUM_PARTIAL, which the kernel's TCP accepts without looking at
// the data (skb_csum_unnecessary), or from a plain Coalescer with a
// checksum computed afresh: either way merging a corrupted segment would
// launder it. So each segment's IPv4 header and TCP checksum are checked
// before it joins a run (the first one lazily, when a second arrives), and
// a segment that fails goes unmerged, for the receiver to drop.
//
// UDP is never merged: the payoff is smaller, and a tun accepts USO
// writes only from Linux 6.2 on.
//
// On a tap (link Ethernet) the same holds for the IP packet behind each
// frame's 14-byte header, and a segment joins a run only if its Ethernet
// header is the run's, byte for byte. Only untagged IPv4 and IPv6 frames
// merge; a tagged frame, ARP and the rest pass through in place.
type Coalescer struct {
	max   int
	l2    int // where the IP header starts: 0 (IP) or 14 (Ethernet)
	limit int // the largest merged packet, Ethernet header included
	// plain: merged packets carry a complete checksum and no header, for
	// a peer that takes only plain IP packets (see NewPlainCoalescer).
	plain  bool
	accept func(pkt, dst []byte) bool // may pkt, to IP address dst, merge; nil: all
	pkts   []member
	runs   []run
	slots  []slot
	mask   uint64
	gen    uint32
	arena  []byte
}

// member links a packet to its run; next chains the run's packets in order.
type member struct{ run, next int32 }

type flowKey struct {
	addrs [32]byte // source then destination; IPv4 uses the first 8 bytes
	ports uint32
	v6    bool
}

// slot is an entry of the open-addressing table from flow to its latest
// run. gen marks the call that wrote it, so a call starts with an empty
// table without clearing it.
type slot struct {
	gen uint32
	run int32
	key flowKey
}

// Its offsets count from the packet's first byte, the Ethernet header's
// on a tap.
type run struct {
	head, tail int32
	count      int32
	l3, hdr    int // where the TCP header starts; where the payload does
	gso        int // the first segment's payload
	size       int // the merged packet's length so far
	nextSeq    uint32
	open       bool // may still grow
	checked    bool // the head's checksums are verified
}

// NewCoalescer returns a Coalescer for batches of up to maxBatch packets
// of link. Packets past maxBatch in a call are passed through unmerged.
//
// It reserves room for maxBatch/2 runs of 64 KiB, the most one batch can
// produce, in one block. Runs are packed in it one after another, so only
// as much of the block as the merged bytes of the largest batch is ever
// touched (and, being fresh from the OS, resident).
func NewCoalescer(link Link, maxBatch int) *Coalescer {
	return newCoalescer(link, maxBatch, linkHdr(link)+maxIP)
}

// linkHdr is how many bytes a Coalescer for link finds in front of the
// IP header.
func linkHdr(link Link) int {
	if link == Ethernet {
		return ethHdrLen
	}
	return 0
}

func newCoalescer(link Link, maxBatch, limit int) *Coalescer {
	maxBatch = max(maxBatch, 1)
	n := 16
	for n < 2*maxBatch {
		n *= 2
	}
	return &Coalescer{
		max:   maxBatch,
		l2:    linkHdr(link),
		limit: limit,
		pkts:  make([]member, maxBatch),
		runs:  make([]run, 0, maxBatch),
		slots: make([]slot, n),
		mask:  uint64(n - 1),
		arena: make([]byte, maxBatch/2*(HdrLen+limit)),
	}
}

// NewPlainCoalescer returns a Coalescer for a peer that cannot take GSO
// super-packets but does take IP packets larger than the segments a TCP
// sender cut for its MTU: a Linux tun written by stock OpenSSH accepts any
// IP packet up to 64 KiB whatever its MTU, and its TCP any segment length.
// Toward such a peer, one packet of 16 KiB costs what one of 1500 bytes
// does: one SSH message, one pass round its event loop and one tun write.
//
// Its Coalesce merges runs into packets of at most size bytes (frames, on
// a link Ethernet: header included) with
// complete IPv4 header and TCP checksums, and leaves the HdrLen bytes in
// front of every frame unwritten: they stay the caller's headroom. Only
// packets that accept accepts merge, given the packet as it came (the
// frame, on a tap) and its IP destination address (4 or 16 bytes): a
// packet that the peer forwards on instead of taking itself would leave
// through an interface with a smaller MTU, with DF set, and be dropped
// there (a bridge drops it without a word), so merging is only for the
// peer's own addresses.
func NewPlainCoalescer(link Link, maxBatch, size int, accept func(pkt, dst []byte) bool) *Coalescer {
	c := newCoalescer(link, maxBatch, min(max(size, 0), linkHdr(link)+maxIP))
	c.plain, c.accept = true, accept
	return c
}

// Coalesce takes the packets bufs[i][offset:] and returns the frames to
// write to the tun, appended to out[:0]: each a virtio header and a packet.
// offset must be at least HdrLen (it panics otherwise); out needs capacity
// len(bufs) for the call not to allocate.
//
// A packet that merged with nothing is returned in place, as
// bufs[i][offset-HdrLen:] with a zero header written in its headroom; the
// packet itself is not touched. A run is copied into the Coalescer's own
// memory, valid until the next call, and described with GSOTCPv4 or
// GSOTCPv6 (plus GSOECN if it starts with CWR), GSOSize the first segment's
// payload, and FlagNeedsCsum with the TCP checksum field seeded with the
// pseudo-header sum over the whole packet's length. That is the state the
// kernel's own GRO leaves (tcp4_gro_complete), what its GSO code adjusts
// per segment if the packet is forwarded, and what local delivery accepts
// without a pass over 64 KiB. FlagDataValid is no alternative: the tun
// ignores it on write, so the packet would need a complete checksum.
//
// A plain Coalescer (NewPlainCoalescer) returns the same frames with no
// header written: merged packets complete, unmerged ones untouched.
//
// Frames come out in the order of each one's first packet. Within a flow
// nothing is reordered: any packet of the flow that does not join its run
// closes it, so later segments cannot jump ahead of it.
func (c *Coalescer) Coalesce(bufs [][]byte, offset int, out [][]byte) [][]byte {
	if offset < HdrLen {
		panic("offload: Coalesce needs an offset of at least HdrLen")
	}
	c.gen++
	if c.gen == 0 {
		clear(c.slots)
		c.gen = 1
	}
	c.runs = c.runs[:0]
	lim := min(len(bufs), c.max)
	for i := range lim {
		c.pkts[i] = member{-1, -1}
		p := bufs[i][offset:]
		s := inspect(p, c.l2)
		if !s.keyed {
			continue
		}
		if c.accept != nil && s.cand && !c.accept(p, dst(p[c.l2:])) {
			s.cand = false
		}
		sl := c.lookup(&s.key)
		checked := false
		if sl.run >= 0 {
			r := &c.runs[sl.run]
			if r.open && s.cand && c.fits(r, bufs, offset, p, &s) {
				if !tcpValid(p, c.l2, s.l3) {
					r.open = false
					continue
				}
				checked = true
				if r.checked || tcpValid(bufs[r.head][offset:], c.l2, r.l3) {
					r.checked = true
					c.pkts[r.tail].next = int32(i)
					c.pkts[i].run = sl.run
					r.tail = int32(i)
					r.count++
					r.size += s.payload
					r.nextSeq += uint32(s.payload)
					if s.payload < r.gso || p[s.l3+13]&tcpPSH != 0 {
						r.open = false
					}
					continue
				}
			}
			r.open = false
		}
		if !s.cand {
			continue
		}
		sl.run = int32(len(c.runs))
		c.pkts[i].run = sl.run
		c.runs = append(c.runs, run{
			head: int32(i), tail: int32(i), count: 1,
			l3: s.l3, hdr: s.hdr, gso: s.payload, size: len(p),
			nextSeq: s.seq + uint32(s.payload),
			open:    p[s.l3+13]&tcpPSH == 0,
			checked: checked,
		})
	}

	out = out[:0]
	used := 0
	for i, b := range bufs {
		if i < lim {
			if ri := c.pkts[i].run; ri >= 0 && c.runs[ri].count > 1 {
				r := &c.runs[ri]
				if int(r.head) != i {
					continue // sent with its head
				}
				if f := c.merge(r, bufs, offset, used); f != nil {
					out = append(out, f)
					used += len(f)
					continue
				}
				// Out of room (only if the caller outgrew maxBatch): send
				// the run as it came, still ahead of its flow's later packets.
				for j := r.head; j >= 0; j = c.pkts[j].next {
					out = append(out, c.unmerged(bufs[j], offset))
				}
				continue
			}
		}
		out = append(out, c.unmerged(b, offset))
	}
	return out
}

// unmerged is packet b as a frame: in place, behind a zero header unless
// the Coalescer is plain.
func (c *Coalescer) unmerged(b []byte, offset int) []byte {
	f := b[offset-HdrLen:]
	if !c.plain {
		Hdr{}.Encode(f)
	}
	return f
}

// dst is the destination address of the IPv4 or IPv6 packet p, which
// inspect found long enough.
func dst(p []byte) []byte {
	if p[0]>>4 == 6 {
		return p[24:40]
	}
	return p[16:20]
}

// segInfo is what Coalesce needs of one packet. Its offsets count from
// the packet's first byte.
type segInfo struct {
	key     flowKey
	keyed   bool // TCP, with ports we can read: it has a flow
	cand    bool // and may be merged
	l3, hdr int  // where the TCP header starts; where the payload does
	seq     uint32
	payload int
}

// inspect reads p, whose IP header starts at l2: 0, or 14 behind an
// Ethernet header, which must then be untagged and name the packet's IP
// version.
func inspect(p []byte, l2 int) (s segInfo) {
	if len(p) < l2+20 {
		return s
	}
	ip := p[l2:]
	if l2 > 0 {
		switch binary.BigEndian.Uint16(p[12:]) {
		case etherIPv4:
			if ip[0]>>4 != 4 {
				return s
			}
		case etherIPv6:
			if ip[0]>>4 != 6 {
				return s
			}
		default:
			return s // ARP, a VLAN tag, anything but IP: in place
		}
	}
	switch ip[0] >> 4 {
	case 4:
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != protoTCP || ihl < 20 || len(ip) < ihl+20 || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			return s // not TCP, or a fragment without the TCP header
		}
		copy(s.key.addrs[:8], ip[12:20])
		s.l3 = l2 + ihl
		s.cand = ihl == 20 && int(binary.BigEndian.Uint16(ip[2:])) == len(ip) && ip[6]&0xe0 == 0x40
	case 6:
		if len(ip) < 60 || ip[6] != protoTCP {
			return s
		}
		copy(s.key.addrs[:], ip[8:40])
		s.key.v6 = true
		s.l3 = l2 + 40
		s.cand = int(binary.BigEndian.Uint16(ip[4:])) == len(ip)-40
	default:
		return s
	}
	t := p[s.l3:]
	s.keyed = true
	s.key.ports = binary.BigEndian.Uint32(t)
	thl := int(t[12]>>4) * 4
	if thl < 20 || s.l3+thl > len(p) {
		s.cand = false
		return s
	}
	s.hdr = s.l3 + thl
	s.payload = len(p) - s.hdr
	s.seq = binary.BigEndian.Uint32(t[4:])
	if s.payload == 0 || len(ip) > maxIP || t[13]&(tcpSYN|tcpFIN|tcpRST|tcpURG) != 0 {
		s.cand = false
	}
	return s
}

// fits says whether p, described by s, may extend r, checksums aside.
func (c *Coalescer) fits(r *run, bufs [][]byte, offset int, p []byte, s *segInfo) bool {
	if s.l3 != r.l3 || s.hdr != r.hdr || s.seq != r.nextSeq || s.payload > r.gso ||
		r.size+s.payload > c.limit {
		return false
	}
	h := bufs[r.head][offset:]
	if !bytes.Equal(h[:c.l2], p[:c.l2]) { // the Ethernet header, on a tap
		return false
	}
	hi, pi := h[c.l2:], p[c.l2:]
	if s.key.v6 {
		if binary.BigEndian.Uint32(hi) != binary.BigEndian.Uint32(pi) || hi[7] != pi[7] {
			return false
		}
	} else if hi[1] != pi[1] || hi[8] != pi[8] {
		return false
	}
	th, tp := h[r.l3:r.hdr], p[r.l3:r.hdr]
	return bytes.Equal(th[8:13], tp[8:13]) && // ack, data offset and AE bit
		tp[13]&tcpCWR == 0 && (tp[13]^th[13])&^(tcpPSH|tcpCWR) == 0 &&
		bytes.Equal(th[14:16], tp[14:16]) && // window
		bytes.Equal(th[20:], tp[20:]) // options
}

// tcpValid checks an IPv4 header checksum and the TCP checksum of p, whose
// IP header starts at l2 and TCP header at l3. A correct checksum makes
// the sum over pseudo header and segment 0xffff, the one's complement -0;
// it cannot come out +0 since the protocol is not 0.
func tcpValid(p []byte, l2, l3 int) bool {
	ip := p[l2:]
	v6 := ip[0]>>4 == 6
	if !v6 && sum(ip[:l3-l2]) != 0xffff {
		return false
	}
	return add(withLen(addrSum(ip, v6, protoTCP), len(p)-l3), sum(p[l3:])) == 0xffff
}

// merge builds r's super-packet at arena[used:], or returns nil if it does
// not fit.
func (c *Coalescer) merge(r *run, bufs [][]byte, offset, used int) []byte {
	need := HdrLen + r.size
	if used+need > len(c.arena) {
		return nil
	}
	f := c.arena[used : used+need : used+need]
	pkt := f[HdrLen:]
	copy(pkt, bufs[r.head][offset:offset+r.hdr])
	pos := r.hdr
	var last []byte
	for j := r.head; j >= 0; j = c.pkts[j].next {
		last = bufs[j][offset:]
		pos += copy(pkt[pos:], last[r.hdr:])
	}
	ip := pkt[c.l2:]
	v6 := ip[0]>>4 == 6
	if v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^sum(ip[:r.l3-c.l2]))
	}
	t := pkt[r.l3:]
	t[13] |= last[r.l3+13] & tcpPSH
	pseudo := withLen(addrSum(ip, v6, protoTCP), r.size-r.l3)
	if c.plain {
		t[csumTCP], t[csumTCP+1] = 0, 0
		binary.BigEndian.PutUint16(t[csumTCP:], finish(add(pseudo, sum(t))))
		return f
	}
	binary.BigEndian.PutUint16(t[csumTCP:], pseudo)
	typ := uint8(GSOTCPv4)
	if v6 {
		typ = GSOTCPv6
	}
	if t[13]&tcpCWR != 0 {
		typ |= GSOECN
	}
	Hdr{
		Flags:      FlagNeedsCsum,
		GSOType:    typ,
		HdrLen:     uint16(r.hdr),
		GSOSize:    uint16(r.gso),
		CsumStart:  uint16(r.l3),
		CsumOffset: csumTCP,
	}.Encode(f)
	return f
}

// lookup returns k's slot, claiming an empty one for this call if k is new.
// The table has twice as many slots as a batch has packets, so probing
// always ends.
func (c *Coalescer) lookup(k *flowKey) *slot {
	h := uint64(k.ports)
	if k.v6 {
		h |= 1 << 32
	}
	for i := 0; i < 32; i += 8 {
		h ^= binary.LittleEndian.Uint64(k.addrs[i:])
		h *= 0x9e3779b97f4a7c15
		h ^= h >> 29
	}
	for i := h & c.mask; ; i = (i + 1) & c.mask {
		sl := &c.slots[i]
		if sl.gen != c.gen {
			*sl = slot{gen: c.gen, run: -1, key: *k}
			return sl
		}
		if sl.key == *k {
			return sl
		}
	}
}

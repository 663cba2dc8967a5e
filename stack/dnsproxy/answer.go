package dnsproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// answer is an upstream answer as the cache keeps it: packed once, with
// where each record lies, so that a client's reply is one copy of the bytes
// with its ID, flags, question name and counted-down TTLs written in, rather
// than a deep copy of a parsed message per hit. It never changes once
// built, so a reply is written from it outside the cache's lock.
type answer struct {
	wire     []byte   // compressed, ID 0, no OPT
	qnameEnd int      // the question's name is wire[headerLen:qnameEnd]
	qEnd     int      // where the question section ends
	rrs      []rrSpan // every record, in order
	sections [3]int   // records in the answer, authority and additional sections
	stored   time.Time
}

// rrSpan places one record in answer.wire.
type rrSpan struct {
	ttl uint16 // offset of its TTL
	end uint16 // offset just past it
}

const (
	headerLen = 12 // RFC 1035 §4.1.1
	optLen    = 11 // an OPT record without options (RFC 6891 §6.1.2)
)

var errBadWire = errors.New("packed answer does not parse")

// newAnswer packs m, an upstream answer without its OPT whose TTLs are
// already capped to its time in the cache, and indexes its records. It
// fails when miekg/dns cannot read back what it packed: it accepts some
// records it cannot write back (an SOA with empty rdata, as in dynamic
// updates), and a client must get a message it can parse.
func newAnswer(m *dns.Msg, stored time.Time) (*answer, error) {
	m.Id = 0
	m.Compress = true
	b, err := m.Pack()
	if err == nil && len(b) > dns.MaxMsgSize {
		err = fmt.Errorf("%d bytes", len(b))
	}
	if err == nil {
		err = new(dns.Msg).Unpack(b)
	}
	if err != nil {
		return nil, fmt.Errorf("upstream answer does not repack: %w", err)
	}
	// Pack sizes its buffer for the uncompressed message: keep only the
	// bytes the cache accounts for.
	a := &answer{wire: append(make([]byte, 0, len(b)), b...), stored: stored}
	if err := a.index(); err != nil {
		return nil, fmt.Errorf("upstream answer: %w", err)
	}
	return a, nil
}

// index finds the question and each record in a.wire.
func (a *answer) index() error {
	b := a.wire
	if len(b) < headerLen || binary.BigEndian.Uint16(b[4:]) != 1 {
		return errBadWire
	}
	off, err := skipName(b, headerLen)
	if err != nil {
		return err
	}
	a.qnameEnd, a.qEnd = off, off+4
	off = a.qEnd
	total := 0
	for i := range a.sections {
		a.sections[i] = int(binary.BigEndian.Uint16(b[6+2*i:]))
		total += a.sections[i]
	}
	a.rrs = make([]rrSpan, 0, total)
	for range total {
		if off, err = skipName(b, off); err != nil {
			return err
		}
		if off+10 > len(b) {
			return errBadWire
		}
		end := off + 10 + int(binary.BigEndian.Uint16(b[off+8:]))
		if end > len(b) {
			return errBadWire
		}
		a.rrs = append(a.rrs, rrSpan{ttl: uint16(off + 4), end: uint16(end)})
		off = end
	}
	if off != len(b) {
		return errBadWire
	}
	return nil
}

// skipName returns the offset just past the domain name at off.
func skipName(b []byte, off int) (int, error) {
	for off < len(b) {
		switch l := int(b[off]); {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0: // a compression pointer ends the name
			if off+2 > len(b) {
				return 0, errBadWire
			}
			return off + 2, nil
		case l&0xC0 != 0:
			return 0, errBadWire
		default:
			off += 1 + l
		}
	}
	return 0, errBadWire
}

// size is what the cache charges for a: its bytes and its index.
func (a *answer) size() int64 {
	return int64(cap(a.wire)) + 4*int64(cap(a.rrs))
}

// end is where the first n records end.
func (a *answer) end(n int) int {
	if n == 0 {
		return a.qEnd
	}
	return int(a.rrs[n-1].end)
}

// reply writes a as the answer to q at now, after headroom free bytes (the
// caller's TCP length field): the client's ID, RD and CD, and its question
// name as it wrote it; AD only when the client asked for it (RFC 6840
// §5.8); TTLs counted down by the time a has been held, rounded up so that
// a client never holds a record past its upstream TTL; and an OPT when the
// client sent one, echoing DO. Records past limit bytes are left out, last
// first, with TC set, as Msg.Truncate does.
func (a *answer) reply(q *dns.Msg, now time.Time, limit, headroom int) []byte {
	opt := q.IsEdns0()
	extra := 0
	if opt != nil {
		extra = optLen
	}
	keep := len(a.rrs)
	for keep > 0 && a.end(keep)+extra > limit {
		keep--
	}
	n := a.end(keep)
	out := make([]byte, headroom+n+extra)
	m := out[headroom:]
	copy(m, a.wire[:n])
	a.header(m, q, opt, keep)
	a.question(m, q.Question[0].Name)
	elapsed := uint32((now.Sub(a.stored) + time.Second - 1) / time.Second)
	for _, rr := range a.rrs[:keep] {
		ttl := binary.BigEndian.Uint32(m[rr.ttl:])
		binary.BigEndian.PutUint32(m[rr.ttl:], max(ttl, elapsed)-elapsed)
	}
	if opt != nil {
		o := m[n:]
		o[0] = 0 // the root name
		binary.BigEndian.PutUint16(o[1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(o[3:], upstreamUDPSize)
		o[5], o[6] = 0, 0 // extended rcode and version
		binary.BigEndian.PutUint16(o[7:], 0)
		if opt.Do() {
			o[7] = 0x80
		}
		binary.BigEndian.PutUint16(o[9:], 0) // no options
	}
	return out
}

// header writes the client's ID and flags and the section counts of the
// first keep records into m.
func (a *answer) header(m []byte, q *dns.Msg, opt *dns.OPT, keep int) {
	binary.BigEndian.PutUint16(m, q.Id)
	f := 0x80 | byte(q.Opcode&0xF)<<3 | m[2]&0x04 // QR, the opcode, AA
	if keep < len(a.rrs) {
		f |= 0x02 // TC
	}
	if q.RecursionDesired {
		f |= 0x01
	}
	m[2] = f
	g := m[3] & 0x8F // RA and the rcode; Z cleared
	if m[3]&0x20 != 0 && (q.AuthenticatedData || opt != nil && opt.Do()) {
		g |= 0x20 // AD
	}
	if q.CheckingDisabled {
		g |= 0x10
	}
	m[3] = g
	an := min(a.sections[0], keep)
	ns := min(a.sections[1], keep-an)
	ar := keep - an - ns
	if opt != nil {
		ar++
	}
	binary.BigEndian.PutUint16(m[6:], uint16(an))
	binary.BigEndian.PutUint16(m[8:], uint16(ns))
	binary.BigEndian.PutUint16(m[10:], uint16(ar))
}

// question writes the client's spelling of the question's name over the
// cached one: the same name in the same number of bytes, letters' case
// aside (the cache key ignores case, RFC 4343), which a client that
// randomises case (draft-vixie-dnsext-dns0x20) checks. Record names
// compressed into pointers to it take the client's spelling too, as they
// do from public resolvers that echo the question's case.
func (a *answer) question(m []byte, name string) {
	var buf [256]byte
	n, err := dns.PackDomainName(name, buf[:], 0, nil, false)
	if err == nil && n == a.qnameEnd-headerLen {
		copy(m[headerLen:], buf[:n])
	}
}

package dnsproxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// lengthField is the room handle leaves in front of an answer, for the
// two-byte length that precedes it over TCP (RFC 1035 §4.2.2), so that a
// TCP answer is not copied once more to be framed.
const lengthField = 2

// handle answers one client message: raw is what the client sent, udp says
// which transport the answer goes back on, refuse that the client may not
// ask (Admit). It returns the answer's bytes after lengthField free bytes,
// or nil when the message gets none (it is counted).
func (p *Proxy) handle(ctx context.Context, raw []byte, udp, refuse bool) []byte {
	p.stats.queries.Add(1)
	q, early := p.parse(raw)
	switch {
	case q != nil && refuse:
		p.stats.refused.Add(1)
		return p.pack(q, new(dns.Msg).SetRcode(q, dns.RcodeRefused), udp)
	case early != nil:
		return p.pack(q, early, udp)
	case q == nil:
		return nil
	}
	a, m := p.resolve(ctx, q)
	if a == nil {
		return p.pack(q, m, udp)
	}
	limit := dns.MaxMsgSize
	if udp {
		limit = clientUDPSize(q.IsEdns0())
	}
	return a.reply(q, p.cache.now(), limit, lengthField)
}

// parse unpacks and checks a client's query. It returns the query and, when
// the query gets an answer without asking upstream (FORMERR, NOTIMP,
// BADVERS, REFUSED), that answer too; (nil, nil) means drop it.
func (p *Proxy) parse(raw []byte) (q, early *dns.Msg) {
	q = new(dns.Msg)
	if err := q.Unpack(raw); err != nil {
		p.stats.malformed.Add(1)
		p.log.Debug("dns: malformed query", "len", len(raw), "err", err)
		return nil, formErrHeader(raw)
	}
	if q.Response {
		// Never answer an answer: two forwarders would ping-pong.
		p.stats.malformed.Add(1)
		return nil, nil
	}
	if q.Opcode != dns.OpcodeQuery {
		return q, new(dns.Msg).SetRcode(q, dns.RcodeNotImplemented)
	}
	opts := 0
	for _, rr := range q.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			opts++
		}
	}
	if len(q.Question) != 1 || opts > 1 {
		// RFC 6891 §6.1.1: more than one OPT is a FORMERR.
		p.stats.malformed.Add(1)
		return q, new(dns.Msg).SetRcode(q, dns.RcodeFormatError)
	}
	if opt := q.IsEdns0(); opt != nil && opt.Version() != 0 {
		return q, new(dns.Msg).SetRcode(q, dns.RcodeBadVers) // RFC 6891 §6.1.3
	}
	switch q.Question[0].Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		// Zone transfers are multi-message streams a stub forwarder does not relay.
		return q, new(dns.Msg).SetRcode(q, dns.RcodeRefused)
	}
	return q, nil
}

// formErrHeader answers a query that did not unpack with a bare FORMERR
// (RFC 1035 §4.1.1) when its header at least says it is a query; anything
// less gets no answer, so garbage cannot draw traffic at a spoofed source.
func formErrHeader(raw []byte) *dns.Msg {
	if len(raw) < 12 || raw[2]&0x80 != 0 {
		return nil
	}
	m := new(dns.Msg)
	m.Id = binary.BigEndian.Uint16(raw)
	m.Response = true
	m.Opcode = int(raw[2]>>3) & 0xF
	m.Rcode = dns.RcodeFormatError
	return m
}

// resolve answers q from the cache, or upstream: a packed answer (a),
// cached or cacheable, or a message the caller owns (m). When no upstream
// answers, m is SERVFAIL.
func (p *Proxy) resolve(ctx context.Context, q *dns.Msg) (a *answer, m *dns.Msg) {
	question := q.Question[0]
	do := false
	if opt := q.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	key := keyOf(question, do, q.CheckingDisabled)
	// A query without RD asks only for what the resolver already holds; its
	// answer must not stand in for a recursive one.
	cacheable := q.RecursionDesired
	if cacheable {
		if a := p.cache.get(key, p.cache.now()); a != nil {
			p.stats.cacheHits.Add(1)
			return a, nil
		}
	}

	up := new(dns.Msg)
	up.Id = dns.Id()
	up.Question = []dns.Question{question}
	up.RecursionDesired = q.RecursionDesired
	up.CheckingDisabled = q.CheckingDisabled
	up.AuthenticatedData = q.AuthenticatedData // RFC 6840 §5.7: the client understands AD
	up.SetEdns0(upstreamUDPSize, do)

	ans, err := p.ex.exchange(ctx, up)
	if err == nil && !sameQuestion(ans, question) {
		err = errMismatch
	}
	if err == nil {
		ans.Extra = withoutOPT(ans.Extra)
		a, err = p.store(key, ans, cacheable)
	}
	if err != nil {
		p.stats.upstreamFailures.Add(1)
		p.log.Debug("dns: no upstream answered", "name", question.Name, "type", dns.Type(question.Qtype), "err", err)
		return nil, new(dns.Msg).SetRcode(q, dns.RcodeServerFailure)
	}
	if a == nil {
		return nil, ans
	}
	return a, nil
}

// store packs ans, an upstream answer without its OPT, and caches it under
// key when it may be. It returns nil and no error when ans may not be
// cached: the caller packs it for the client instead.
func (p *Proxy) store(key cacheKey, ans *dns.Msg, cacheable bool) (*answer, error) {
	ttl, ok := cacheTTL(ans)
	if !cacheable || !ok || p.cache.budget <= 0 {
		return nil, repacks(ans)
	}
	capTTLs(ans, ttl)
	now := p.cache.now()
	a, err := newAnswer(ans, now)
	if err != nil {
		return nil, err
	}
	p.cache.put(p.acct, key, a, now.Add(ttl))
	return a, nil
}

// sameQuestion says whether an upstream answer is to the question asked;
// names compare case-insensitively (RFC 4343).
func sameQuestion(m *dns.Msg, q dns.Question) bool {
	if m == nil || len(m.Question) != 1 {
		return false
	}
	a := m.Question[0]
	return a.Qtype == q.Qtype && a.Qclass == q.Qclass && strings.EqualFold(a.Name, q.Name)
}

// repacks checks that m, unpacked from an upstream's bytes, packs into bytes
// that unpack again. miekg/dns accepts some records it cannot write back
// (an SOA with empty rdata, as in dynamic updates), and the client must get
// a message it can parse, or SERVFAIL.
func repacks(m *dns.Msg) error {
	b, err := m.Pack()
	if err == nil {
		err = new(dns.Msg).Unpack(b)
	}
	if err != nil {
		return fmt.Errorf("upstream answer does not repack: %w", err)
	}
	return nil
}

// withoutOPT drops the OPT records: EDNS0 is hop by hop (RFC 6891 §6.1.1),
// so the upstream's OPT, with its options, never reaches the client.
func withoutOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

// pack makes ans the reply to q, as the client expects it, and packs it
// after lengthField free bytes: the client's ID and question, an OPT only
// when the client sent one (echoing DO), and for UDP no more than the
// client's buffer, with TC set when records had to go. q is nil for a bare
// FORMERR.
func (p *Proxy) pack(q, ans *dns.Msg, udp bool) []byte {
	var opt *dns.OPT
	if q != nil {
		opt = q.IsEdns0()
		ans.Id = q.Id
		ans.Response = true
		ans.Opcode = q.Opcode
		ans.Question = append([]dns.Question(nil), q.Question...)
		ans.RecursionDesired = q.RecursionDesired
		ans.CheckingDisabled = q.CheckingDisabled
	}
	if opt != nil {
		ans.SetEdns0(upstreamUDPSize, opt.Do())
	} else if ans.Rcode > 0xF {
		ans.Rcode = dns.RcodeServerFailure // an extended rcode needs an OPT to carry it
	}
	size := dns.MaxMsgSize
	if udp {
		size = clientUDPSize(opt)
		ans.Truncate(size)
	} else {
		ans.Compress = true
	}
	b, err := ans.Pack()
	if err == nil && len(b) <= size {
		return withLengthField(b)
	}
	// Whatever the records were, the client still gets an answer it can act on.
	p.log.Debug("dns: answer did not pack", "err", err, "len", len(b), "limit", size)
	ans.Answer, ans.Ns, ans.Extra = nil, nil, nil
	if udp {
		ans.Truncated = true
	} else {
		ans.Rcode = dns.RcodeServerFailure
	}
	if opt != nil {
		ans.SetEdns0(upstreamUDPSize, opt.Do())
	}
	if b, err = ans.Pack(); err != nil {
		return nil
	}
	return withLengthField(b)
}

// withLengthField copies b after lengthField free bytes.
func withLengthField(b []byte) []byte {
	out := make([]byte, lengthField+len(b))
	copy(out[lengthField:], b)
	return out
}

// clientUDPSize is the largest UDP answer a client takes: its EDNS0 buffer
// (at least 512, RFC 6891 §6.2.3), or 512 without EDNS0 (RFC 1035 §4.2.1).
func clientUDPSize(opt *dns.OPT) int {
	if opt == nil {
		return dns.MinMsgSize
	}
	return min(max(int(opt.UDPSize()), dns.MinMsgSize), maxClientUDPSize)
}

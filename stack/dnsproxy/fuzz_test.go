package dnsproxy

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/miekg/dns"
)

// bytesExchanger answers every query with the message in b, given the
// query's ID, as an upstream that says anything at all would.
type bytesExchanger struct{ b []byte }

func (e bytesExchanger) exchange(_ context.Context, m *dns.Msg) (*dns.Msg, error) {
	r := new(dns.Msg)
	if err := r.Unpack(e.b); err != nil {
		return nil, errors.New("upstream bytes do not unpack")
	}
	r.Id = m.Id
	return r, nil
}

// FuzzHandle feeds the query path client bytes and upstream bytes, twice
// (a miss, then perhaps a cache hit) and once refused, and checks that it
// never panics, and that whatever it answers unpacks, keeps the client's
// ID and, over UDP, fits the client's buffer.
func FuzzHandle(f *testing.F) {
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	q := query("a.test.", dns.TypeA)
	qEDNS := query("big.test.", dns.TypeTXT)
	qEDNS.SetEdns0(1232, true)
	ans := new(dns.Msg).SetReply(q)
	rr, _ := dns.NewRR("a.test. 300 IN A 192.0.2.1")
	ans.Answer = append(ans.Answer, rr)
	nx := new(dns.Msg).SetRcode(q, dns.RcodeNameError)
	soa, _ := dns.NewRR("test. 300 IN SOA ns.test. a.test. 1 2 3 4 60")
	nx.Ns = append(nx.Ns, soa)
	big := new(dns.Msg).SetReply(qEDNS)
	for _, s := range bigTXT {
		big.Answer = append(big.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "big.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: []string{s}})
	}
	big.SetEdns0(4096, true)

	f.Add(pack(q), pack(ans), true)
	f.Add(pack(q), pack(nx), false)
	f.Add(pack(qEDNS), pack(big), true)
	f.Add(pack(qEDNS), pack(ans), true) // an answer to another question
	f.Add([]byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff}, pack(ans), true)
	f.Add([]byte{}, []byte{}, false)
	f.Fuzz(func(t *testing.T, client, upstream []byte, udp bool) {
		p := newProxy(bytesExchanger{upstream}, newCache(64<<10, 64<<10), slog.New(slog.DiscardHandler))
		defer p.Close()
		// The second time the answer may come from the cache.
		for range 2 {
			checkAnswer(t, client, p.handle(context.Background(), client, udp, false), udp)
		}
		checkAnswer(t, client, p.handle(context.Background(), client, udp, true), udp)
	})
}

// checkAnswer fails unless out, handle's answer to client, unpacks, keeps
// the client's ID and, over UDP, fits the client's buffer.
func checkAnswer(t *testing.T, client, out []byte, udp bool) {
	t.Helper()
	if out == nil {
		return
	}
	out = out[lengthField:]
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("answer does not unpack: %v", err)
	}
	if len(client) >= 2 && r.Id != uint16(client[0])<<8|uint16(client[1]) {
		t.Fatalf("answer ID %#x, want the client's %x", r.Id, client[:2])
	}
	if !udp {
		return
	}
	limit := dns.MinMsgSize
	cq := new(dns.Msg)
	if cq.Unpack(client) == nil {
		limit = clientUDPSize(cq.IsEdns0())
	}
	if len(out) > limit {
		t.Fatalf("UDP answer is %d bytes, over the client's %d", len(out), limit)
	}
}

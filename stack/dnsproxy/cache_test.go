package dnsproxy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func msgWith(rcode int, truncated bool, answer, ns []string) *dns.Msg {
	m := new(dns.Msg).SetQuestion("x.test.", dns.TypeA)
	m.Response, m.Rcode, m.Truncated = true, rcode, truncated
	for _, s := range answer {
		rr, _ := dns.NewRR(s)
		m.Answer = append(m.Answer, rr)
	}
	for _, s := range ns {
		rr, _ := dns.NewRR(s)
		m.Ns = append(m.Ns, rr)
	}
	return m
}

func TestCacheTTL(t *testing.T) {
	const soa = "test. 300 IN SOA ns.test. a.test. 1 2 3 4 60"
	for _, tc := range []struct {
		name string
		m    *dns.Msg
		want time.Duration // 0: not cached
	}{
		{"answer: the smallest TTL", msgWith(0, false, []string{"x.test. 30 IN A 192.0.2.1", "x.test. 20 IN A 192.0.2.2"}, []string{"test. 100 IN NS ns.test."}), 20 * time.Second},
		{"TTL 0", msgWith(0, false, []string{"x.test. 0 IN A 192.0.2.1"}, nil), 0},
		{"capped", msgWith(0, false, []string{"x.test. 604800 IN A 192.0.2.1"}, nil), maxCacheTTL},
		{"NXDOMAIN: SOA minimum", msgWith(dns.RcodeNameError, false, nil, []string{soa}), 60 * time.Second},
		{"NODATA: SOA TTL when smaller", msgWith(0, false, nil, []string{"test. 10 IN SOA ns.test. a.test. 1 2 3 4 60"}), 10 * time.Second},
		{"NXDOMAIN without SOA", msgWith(dns.RcodeNameError, false, nil, nil), 0},
		{"SERVFAIL", msgWith(dns.RcodeServerFailure, false, nil, []string{soa}), 0},
		{"REFUSED", msgWith(dns.RcodeRefused, false, nil, nil), 0},
		{"truncated", msgWith(0, true, []string{"x.test. 30 IN A 192.0.2.1"}, nil), 0},
	} {
		got, ok := cacheTTL(tc.m)
		if ok != (tc.want != 0) || got != tc.want {
			t.Errorf("%s: cacheTTL = %v, %v; want %v", tc.name, got, ok, tc.want)
		}
	}
}

// txtAnswer is an answer to name TXT of about size bytes, in TXT records
// of 255-byte strings, as the large answers a flood asks for.
func txtAnswer(t testing.TB, name string, size int) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, dns.TypeTXT)
	m.Response, m.RecursionAvailable = true, true
	for n := 0; n < size-300; n += 268 {
		m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
			Txt: []string{strings.Repeat("x", 255)}})
	}
	return m
}

func packedAnswer(t testing.TB, m *dns.Msg, now time.Time) *answer {
	t.Helper()
	a, err := newAnswer(m, now)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// checkHeld fails unless the cache's books add up: what it says it holds
// is the sum of its entries, by account and in all, within the budget,
// and every account within its share.
func checkHeld(t *testing.T, c *cache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum int64
	byOwner := map[*account]int64{}
	for _, e := range c.byKey {
		sum += e.size
		byOwner[e.owner] += e.size
	}
	if sum != c.used || len(c.byExpiry) != len(c.byKey) {
		t.Fatalf("cache says it holds %d bytes in %d entries (%d by expiry); its entries add up to %d", c.used, len(c.byKey), len(c.byExpiry), sum)
	}
	if c.used > c.budget {
		t.Fatalf("cache holds %d bytes, over its budget of %d", c.used, c.budget)
	}
	for o, n := range byOwner {
		if o.bytes != n || n > c.share {
			t.Fatalf("an account is charged %d bytes for entries of %d (share %d)", o.bytes, n, c.share)
		}
	}
}

// The cache never holds more than its budget, whoever stores; large
// answers push out the oldest ones; an answer larger than a share is not
// cached at all.
func TestCacheBudget(t *testing.T) {
	const budget = 1 << 20
	c := newCache(budget, budget)
	now := time.Now()
	small := packedAnswer(t, msgWith(0, false, []string{"x.test. 300 IN A 192.0.2.1"}, nil), now)
	first := new(account)
	for i := range 100 {
		c.put(first, cacheKey{name: fmt.Sprintf("small%d.", i)}, small, now.Add(time.Minute))
	}
	checkHeld(t, c)
	if _, n := c.held(); n != 100 {
		t.Fatalf("%d small answers held, want 100", n)
	}
	big := packedAnswer(t, txtAnswer(t, "big.test.", 64<<10), now)
	others := []*account{new(account), new(account), new(account)}
	for i := range 40 {
		c.put(others[i%len(others)], cacheKey{name: fmt.Sprintf("big%d.", i)}, big, now.Add(time.Minute))
		checkHeld(t, c)
	}
	used, n := c.held()
	if used < budget-(80<<10) {
		t.Errorf("cache holds %d bytes of its %d: eviction freed more than it had to", used, budget)
	}
	if c.get(cacheKey{name: "big39."}, now) == nil {
		t.Error("the newest large answer is not held")
	}
	t.Logf("after 100 small and 40 answers of 64 KiB: %d entries, %d bytes of %d", n, used, budget)

	tiny := newCache(32<<10, 32<<10)
	tiny.put(first, cacheKey{name: "big."}, big, now.Add(time.Minute))
	if _, n := tiny.held(); n != 0 {
		t.Error("an answer larger than the budget was cached")
	}
}

// One client filling the cache pushes out its own answers, not another's:
// each account keeps to its share, and a full cache frees the largest
// holder's oldest entries first.
func TestCacheShare(t *testing.T) {
	const budget, share = 1 << 20, 768 << 10
	c := newCache(budget, share)
	now := time.Now()
	big := packedAnswer(t, txtAnswer(t, "big.test.", 64<<10), now)
	small := packedAnswer(t, msgWith(0, false, []string{"x.test. 300 IN A 192.0.2.1"}, nil), now)
	quiet, flood, third := new(account), new(account), new(account)
	for i := range 50 {
		c.put(quiet, cacheKey{name: fmt.Sprintf("quiet%d.", i)}, small, now.Add(time.Minute))
	}
	for i := range 2 {
		c.put(third, cacheKey{name: fmt.Sprintf("third%d.", i)}, big, now.Add(time.Minute))
	}
	for i := range 1000 {
		c.put(flood, cacheKey{name: fmt.Sprintf("flood%d.", i)}, big, now.Add(time.Minute))
		checkHeld(t, c)
	}
	if flood.bytes > share || flood.bytes < share-(80<<10) {
		t.Errorf("the flooding client holds %d bytes, want its share of %d", flood.bytes, share)
	}
	for i := range 50 {
		if c.get(cacheKey{name: fmt.Sprintf("quiet%d.", i)}, now) == nil {
			t.Fatalf("the flood pushed out another client's answer quiet%d", i)
		}
	}
	for i := range 2 {
		if c.get(cacheKey{name: fmt.Sprintf("third%d.", i)}, now) == nil {
			t.Fatalf("the flood pushed out another client's answer third%d", i)
		}
	}
	// A second flooder in a full cache: the two end up with as much each,
	// and the small holders still keep theirs.
	other := new(account)
	for i := range 1000 {
		c.put(other, cacheKey{name: fmt.Sprintf("other%d.", i)}, big, now.Add(time.Minute))
		checkHeld(t, c)
	}
	if d := flood.bytes - other.bytes; d > 80<<10 || d < -80<<10 {
		t.Errorf("two flooders of a full cache hold %d and %d bytes, want about as much each", flood.bytes, other.bytes)
	}
	if c.get(cacheKey{name: "quiet0."}, now) == nil || c.get(cacheKey{name: "third0."}, now) == nil {
		t.Error("two flooders pushed out answers of clients holding less than either")
	}
}

// Expired answers are freed by the cache's own timer, with no lookup to
// find them.
func TestCacheFreesExpired(t *testing.T) {
	c := newCache(1<<20, 1<<20)
	defer c.close()
	now := time.Now()
	a := packedAnswer(t, txtAnswer(t, "big.test.", 16<<10), now)
	owner := new(account)
	c.put(owner, cacheKey{name: "short."}, a, now.Add(100*time.Millisecond))
	c.put(owner, cacheKey{name: "long."}, a, now.Add(time.Hour))
	if _, n := c.held(); n != 2 {
		t.Fatalf("%d entries held, want 2", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		used, n := c.held()
		if n == 1 && used == owner.bytes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an expired answer is still held %v after it expired: %d entries, %d bytes", time.Since(now), n, used)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkHeld(t, c)
	if c.get(cacheKey{name: "long."}, time.Now()) == nil {
		t.Error("the sweep freed an answer that had not expired")
	}
}

// A reply from the cache is the client's: its ID, its spelling of the name,
// TTLs counted down, and bytes of its own.
func TestAnswerReply(t *testing.T) {
	now := time.Now()
	a := packedAnswer(t, msgWith(0, false, []string{"x.test. 30 IN A 192.0.2.1"}, nil), now)
	q := query("X.Test.", dns.TypeA)
	b := a.reply(q, now.Add(1500*time.Millisecond), dns.MaxMsgSize, lengthField)
	m := new(dns.Msg)
	if err := m.Unpack(b[lengthField:]); err != nil {
		t.Fatal(err)
	}
	if m.Id != q.Id || m.Question[0].Name != "X.Test." || !m.Response || !m.RecursionDesired {
		t.Errorf("reply header %+v, question %v: want the client's ID, RD and name", m.MsgHdr, m.Question)
	}
	if ttl := m.Answer[0].Header().Ttl; ttl != 28 {
		t.Errorf("TTL after 1.5 s: %d, want 28 (elapsed rounds up)", ttl)
	}
	for i := range b {
		b[i] = 0xff
	}
	again := new(dns.Msg)
	if err := again.Unpack(a.reply(q, now, dns.MaxMsgSize, 0)); err != nil || again.Answer[0].Header().Ttl != 30 {
		t.Errorf("changing a reply changed the cache: %v %v", again, err)
	}
}

// A reply from the cache says what the packed reply of the same message
// says: header, question, each section and the OPT, truncated or not.
func TestAnswerReplyMatchesPack(t *testing.T) {
	p := newProxy(nil, newCache(-1, 0), slog.New(slog.DiscardHandler))
	big := txtAnswer(t, "big.test.", 3000)
	big.Ns = append(big.Ns, msgWith(0, false, nil, []string{"test. 300 IN NS ns.test."}).Ns...)
	big.Extra = append(big.Extra, msgWith(0, false, []string{"ns.test. 300 IN A 192.0.2.53"}, nil).Answer...)
	msgs := map[string]*dns.Msg{
		"A":        msgWith(0, false, []string{"x.test. 30 IN A 192.0.2.1", "x.test. 30 IN A 192.0.2.2"}, nil),
		"NXDOMAIN": msgWith(dns.RcodeNameError, false, nil, []string{"test. 300 IN SOA ns.test. a.test. 1 2 3 4 60"}),
		"big":      big,
	}
	queries := map[string]func(q *dns.Msg){
		"plain":    func(*dns.Msg) {},
		"EDNS":     func(q *dns.Msg) { q.SetEdns0(1232, false) },
		"EDNS DO":  func(q *dns.Msg) { q.SetEdns0(4096, true) },
		"CD, case": func(q *dns.Msg) { q.CheckingDisabled = true; q.Question[0].Name = strings.ToUpper(q.Question[0].Name) },
	}
	for mname, m := range msgs {
		for qname, edit := range queries {
			for _, udp := range []bool{true, false} {
				q := query(m.Question[0].Name, m.Question[0].Qtype)
				edit(q)
				a := packedAnswer(t, m.Copy(), time.Now())
				limit := dns.MaxMsgSize
				if udp {
					limit = clientUDPSize(q.IsEdns0())
				}
				got, want := new(dns.Msg), new(dns.Msg)
				gb := a.reply(q, a.stored, limit, lengthField)[lengthField:]
				if err := got.Unpack(gb); err != nil {
					t.Fatalf("%s, %s, udp %v: reply does not unpack: %v", mname, qname, udp, err)
				}
				if err := want.Unpack(p.pack(q, m.Copy(), udp)[lengthField:]); err != nil {
					t.Fatal(err)
				}
				if len(gb) > limit {
					t.Errorf("%s, %s, udp %v: %d bytes, over the client's %d", mname, qname, udp, len(gb), limit)
				}
				if got.Question[0].Name != q.Question[0].Name {
					t.Errorf("%s, %s, udp %v: question %q, want the client's %q", mname, qname, udp, got.Question[0].Name, q.Question[0].Name)
				}
				// Names that point at the question follow the client's
				// spelling; names compare without case (RFC 4343).
				if g, w := strings.ToLower(got.String()), strings.ToLower(want.String()); g != w {
					t.Errorf("%s, %s, udp %v: from the cache\n%s\nwant, as packed\n%s", mname, qname, udp, g, w)
				}
			}
		}
	}
}

// constExchanger answers every query with a copy of m.
type constExchanger struct{ m *dns.Msg }

func (e constExchanger) exchange(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
	r := e.m.Copy()
	r.Id = q.Id
	return r, nil
}

// A cache hit costs the same few allocations whatever the answer's size:
// the packed answer is copied once, never parsed or deep-copied per hit.
func TestCacheHitAllocs(t *testing.T) {
	hitAllocs := func(m *dns.Msg, udp bool) float64 {
		p := newProxy(constExchanger{m}, newCache(1<<20, 1<<20), slog.New(slog.DiscardHandler))
		defer p.Close()
		q := query(m.Question[0].Name, m.Question[0].Qtype)
		q.SetEdns0(4096, false)
		raw, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if p.handle(context.Background(), raw, udp, false) == nil {
			t.Fatal("no answer")
		}
		allocs := testing.AllocsPerRun(100, func() { p.handle(context.Background(), raw, udp, false) })
		if p.Stats().CacheHits < 100 {
			t.Fatalf("%d cache hits, want every run to be one", p.Stats().CacheHits)
		}
		return allocs
	}
	small := msgWith(0, false, []string{"x.test. 300 IN A 192.0.2.1"}, nil)
	for _, udp := range []bool{true, false} {
		one := hitAllocs(small, udp)
		many := hitAllocs(txtAnswer(t, "x.test.", 60<<10), udp)
		t.Logf("udp %v: a hit allocates %.0f times for one record, %.0f for 64 KiB", udp, one, many)
		if many != one {
			t.Errorf("udp %v: a hit on 64 KiB of records allocates %.0f times, on one record %.0f: a hit copies per record", udp, many, one)
		}
	}
}

// BenchmarkCacheHit is one cache hit on a 64 KiB answer over TCP, from the
// client's bytes to the reply's.
func BenchmarkCacheHit(b *testing.B) {
	p := newProxy(constExchanger{txtAnswer(b, "x.test.", 60<<10)}, newCache(1<<20, 1<<20), slog.New(slog.DiscardHandler))
	defer p.Close()
	raw, _ := query("x.test.", dns.TypeTXT).Pack()
	p.handle(context.Background(), raw, false, false)
	b.ReportAllocs()
	for b.Loop() {
		p.handle(context.Background(), raw, false, false)
	}
}

package dnsproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testProxy struct {
	*Proxy
	udp, tcp string
	clock    *fakeClock
}

// startProxy serves cfg on 127.0.0.1 over UDP and TCP with a fake clock,
// and checks at cleanup that both Serve calls return nil on Close.
func startProxy(t *testing.T, cfg Config, setup ...func(*Proxy)) *testProxy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p.cache.now = clk.now
	for _, f := range setup {
		f(p)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { errs <- p.ServePacket(context.Background(), pc) }()
	go func() { errs <- p.ServeStream(context.Background(), l) }()
	t.Cleanup(func() {
		p.Close()
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("serve after Close: %v", err)
			}
		}
	})
	return &testProxy{Proxy: p, udp: pc.LocalAddr().String(), tcp: l.Addr().String(), clock: clk}
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg).SetQuestion(name, qtype)
	m.Id = 0xbeef
	return m
}

// exchangeRaw sends b to addr over network as a client with a 64 KiB buffer
// would, and returns the raw answer.
func exchangeRaw(t *testing.T, network, addr string, b []byte) []byte {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if network == "tcp" {
		b = frame(b)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if network == "tcp" {
		out, err := readFrame(c)
		if err != nil {
			t.Fatalf("read answer over tcp: %v", err)
		}
		return out
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read answer over udp: %v", err)
	}
	return buf[:n]
}

func exchange(t *testing.T, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := new(dns.Msg)
	if err := out.Unpack(exchangeRaw(t, network, addr, b)); err != nil {
		t.Fatalf("unpack answer: %v", err)
	}
	return out
}

func TestAnswersOverUDPAndTCP(t *testing.T) {
	z := startZone(t, false)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}, CacheBytes: -1})
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range []struct {
			qtype uint16
			want  string
		}{{dns.TypeA, "192.0.2.1"}, {dns.TypeAAAA, "2001:db8::1"}} {
			addr := map[string]string{"udp": p.udp, "tcp": p.tcp}[network]
			r := exchange(t, network, addr, query("a.test.", tc.qtype))
			if r.Id != 0xbeef || !r.Response || r.Rcode != dns.RcodeSuccess {
				t.Fatalf("%s %s: header %+v", network, dns.TypeToString[tc.qtype], r.MsgHdr)
			}
			if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), tc.want) {
				t.Fatalf("%s %s: answer %v, want %s", network, dns.TypeToString[tc.qtype], r.Answer, tc.want)
			}
			if r.IsEdns0() != nil {
				t.Errorf("%s: client sent no OPT but got one: %v", network, r.Extra)
			}
		}
	}
	if got := z.count("a.test.", dns.TypeA, "udp"); got != 2 {
		t.Errorf("upstream asked %d times over UDP for a.test A, want 2 (cache off)", got)
	}
}

func TestFailover(t *testing.T) {
	// A socket that reads and never answers: the first upstream times out.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	bad := startZone(t, true)
	good := startZone(t, false)
	ups := []netip.AddrPort{netip.MustParseAddrPort(silent.LocalAddr().String()), bad.addr, good.addr}
	p := startProxy(t, Config{Upstreams: ups, Timeout: 200 * time.Millisecond})
	r := exchange(t, "udp", p.udp, query("a.test.", dns.TypeA))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("answer %v", r)
	}
	if bad.count("a.test.", dns.TypeA, "udp") != 1 || good.count("a.test.", dns.TypeA, "udp") != 1 {
		t.Errorf("SERVFAIL upstream asked %d, good one %d, want 1 each",
			bad.count("a.test.", dns.TypeA, "udp"), good.count("a.test.", dns.TypeA, "udp"))
	}
}

func TestEveryUpstreamFails(t *testing.T) {
	bad := startZone(t, true)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{bad.addr}})
	for range 2 {
		if r := exchange(t, "udp", p.udp, query("a.test.", dns.TypeA)); r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
	}
	if n := bad.count("a.test.", dns.TypeA, "udp"); n != 2 {
		t.Errorf("upstream asked %d times, want 2: SERVFAIL must not be cached", n)
	}
}

func TestTruncation(t *testing.T) {
	z := startZone(t, false)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}})

	q, _ := query("big.test.", dns.TypeTXT).Pack()
	raw := exchangeRaw(t, "udp", p.udp, q)
	if len(raw) > dns.MinMsgSize {
		t.Fatalf("UDP answer to a client without EDNS0 is %d bytes, want <= 512", len(raw))
	}
	small := new(dns.Msg)
	if err := small.Unpack(raw); err != nil {
		t.Fatal(err)
	}
	if !small.Truncated || small.Id != 0xbeef || small.IsEdns0() != nil || len(small.Answer) == 0 {
		t.Fatalf("UDP answer: TC=%v id=%#x opt=%v and %d records, want TC, the client's ID, no OPT and the records that fit",
			small.Truncated, small.Id, small.IsEdns0(), len(small.Answer))
	}
	if z.count("big.test.", dns.TypeTXT, "udp") != 1 || z.count("big.test.", dns.TypeTXT, "tcp") != 1 {
		t.Errorf("upstream: %d UDP and %d TCP queries, want 1 each (retry over TCP on TC)",
			z.count("big.test.", dns.TypeTXT, "udp"), z.count("big.test.", dns.TypeTXT, "tcp"))
	}

	full := exchange(t, "tcp", p.tcp, query("big.test.", dns.TypeTXT))
	if full.Truncated || len(full.Answer) != len(bigTXT) {
		t.Fatalf("TCP answer: TC=%v and %d records, want all %d", full.Truncated, len(full.Answer), len(bigTXT))
	}

	m := query("big.test.", dns.TypeTXT)
	m.SetEdns0(8192, true)
	q, _ = m.Pack()
	raw = exchangeRaw(t, "udp", p.udp, q)
	edns := new(dns.Msg)
	if err := edns.Unpack(raw); err != nil {
		t.Fatal(err)
	}
	if edns.Truncated || len(edns.Answer) != len(bigTXT) || len(raw) > maxClientUDPSize {
		t.Fatalf("EDNS0 client: TC=%v, %d records, %d bytes; want all %d within %d bytes",
			edns.Truncated, len(edns.Answer), len(raw), len(bigTXT), maxClientUDPSize)
	}
	if opt := edns.IsEdns0(); opt == nil || !opt.Do() {
		t.Fatalf("EDNS0 client with DO: OPT %v, want one with DO echoed", opt)
	}
	m = query("big.test.", dns.TypeTXT)
	m.SetEdns0(1232, false)
	if r := exchange(t, "udp", p.udp, m); !r.Truncated || r.IsEdns0() == nil || r.IsEdns0().Do() {
		t.Fatalf("1232-byte EDNS0 client: TC=%v OPT=%v, want TC and an OPT without DO", r.Truncated, r.IsEdns0())
	}
}

func TestCache(t *testing.T) {
	z := startZone(t, false)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}})

	first := exchange(t, "udp", p.udp, query("a.test.", dns.TypeA))
	p.clock.advance(10 * time.Second)
	m := query("A.Test.", dns.TypeA)
	m.Id = 7
	second := exchange(t, "tcp", p.tcp, m)
	if n := z.count("a.test.", dns.TypeA, "udp"); n != 1 {
		t.Fatalf("upstream asked %d times, want 1 (second from the cache)", n)
	}
	if second.Id != 7 || second.Question[0].Name != "A.Test." {
		t.Errorf("cached answer has id %d and question %q, want the client's", second.Id, second.Question[0].Name)
	}
	if got, want := second.Answer[0].Header().Ttl, first.Answer[0].Header().Ttl-10; got != want {
		t.Errorf("cached TTL %d after 10 s, want %d", got, want)
	}
	if p.Stats().CacheHits != 1 {
		t.Errorf("stats %+v, want one cache hit", p.Stats())
	}

	// The DO bit is part of the key.
	m = query("a.test.", dns.TypeA)
	m.SetEdns0(1232, true)
	exchange(t, "udp", p.udp, m)
	if n := z.count("a.test.", dns.TypeA, "udp"); n != 2 {
		t.Errorf("upstream asked %d times, want 2: a DO query is not the plain one", n)
	}

	// A 1 s TTL expires after 1 s.
	exchange(t, "udp", p.udp, query("short.test.", dns.TypeA))
	exchange(t, "udp", p.udp, query("short.test.", dns.TypeA))
	if n := z.count("short.test.", dns.TypeA, "udp"); n != 1 {
		t.Fatalf("upstream asked %d times within the TTL, want 1", n)
	}
	p.clock.advance(time.Second)
	exchange(t, "udp", p.udp, query("short.test.", dns.TypeA))
	if n := z.count("short.test.", dns.TypeA, "udp"); n != 2 {
		t.Fatalf("upstream asked %d times after the TTL, want 2", n)
	}
}

func TestNegativeCache(t *testing.T) {
	z := startZone(t, false)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}})
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
	}{{"nx.test.", dns.TypeA, dns.RcodeNameError}, {"a.test.", dns.TypeMX, dns.RcodeSuccess}} {
		for range 2 {
			r := exchange(t, "udp", p.udp, query(tc.name, tc.qtype))
			if r.Rcode != tc.rcode || len(r.Answer) != 0 || len(r.Ns) != 1 {
				t.Fatalf("%s: %v", tc.name, r)
			}
		}
		if n := z.count(tc.name, tc.qtype, "udp"); n != 1 {
			t.Fatalf("%s: upstream asked %d times, want 1", tc.name, n)
		}
	}
	// The SOA's minimum is 5 s: negative answers live that long, not 300 s.
	p.clock.advance(4 * time.Second)
	if r := exchange(t, "udp", p.udp, query("nx.test.", dns.TypeA)); r.Ns[0].Header().Ttl != 1 {
		t.Errorf("negative answer's SOA TTL %d after 4 s, want 1", r.Ns[0].Header().Ttl)
	}
	p.clock.advance(time.Second)
	exchange(t, "udp", p.udp, query("nx.test.", dns.TypeA))
	if n := z.count("nx.test.", dns.TypeA, "udp"); n != 2 {
		t.Errorf("upstream asked %d times after the SOA minimum, want 2", n)
	}
}

func TestMalformed(t *testing.T) {
	z := startZone(t, false)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}})

	c, err := net.Dial("udp", p.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0xde, 0xad}) // too short for a header: no answer
	// A query header claiming one question, then garbage: FORMERR.
	bad := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff}
	c.Write(bad)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil || r.Id != 0x1234 || r.Rcode != dns.RcodeFormatError {
		t.Fatalf("answer to garbage: %v (err %v), want FORMERR with id 0x1234", r, err)
	}
	if got := exchange(t, "udp", p.udp, query("a.test.", dns.TypeA)); len(got.Answer) != 1 {
		t.Fatalf("after garbage: %v", got)
	}

	// Over TCP, garbage in one frame and a good query in the next.
	tc, err := net.Dial("tcp", p.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	good, _ := query("a.test.", dns.TypeAAAA).Pack()
	tc.Write(append(frame([]byte{1, 2, 3}), frame(good)...))
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, err := readFrame(tc)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Unpack(out); err != nil || len(r.Answer) != 1 {
		t.Fatalf("TCP answer after garbage: %v (err %v)", r, err)
	}
	// The garbage frame gets no answer to wait for, so wait for its count.
	for deadline := time.Now().Add(5 * time.Second); p.Stats().Malformed < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := p.Stats().Malformed; got != 3 {
		t.Errorf("malformed count %d, want 3", got)
	}
}

func TestRejects(t *testing.T) {
	z := startZone(t, false)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}})
	answer := func(m *dns.Msg) *dns.Msg { return exchange(t, "udp", p.udp, m) }

	notify := query("a.test.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	if r := answer(notify); r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("NOTIFY: %s, want NOTIMP", dns.RcodeToString[r.Rcode])
	}
	v1 := query("a.test.", dns.TypeA)
	v1.SetEdns0(1232, false)
	v1.IsEdns0().SetVersion(1)
	if r := answer(v1); r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil {
		t.Errorf("EDNS version 1: %s with OPT %v, want BADVERS with an OPT", dns.RcodeToString[r.Rcode], r.IsEdns0())
	}
	if r := answer(query("test.", dns.TypeAXFR)); r.Rcode != dns.RcodeRefused {
		t.Errorf("AXFR: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	two := query("a.test.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	if r := answer(two); r.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
	twoOPT := query("a.test.", dns.TypeA)
	twoOPT.SetEdns0(1232, false)
	twoOPT.SetEdns0(1232, false)
	if r := answer(twoOPT); r.Rcode != dns.RcodeFormatError {
		t.Errorf("two OPT records: %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	z := startZone(t, false)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}}, func(p *Proxy) { p.idle = 100 * time.Millisecond })
	c, err := net.Dial("tcp", p.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF when the proxy closes it", err)
	}
}

func TestCloseStopsServing(t *testing.T) {
	p, err := New(Config{Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.ServePacket(ctx, pc) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServePacket after cancel: %v", err)
	}
	if _, err := pc.WriteTo([]byte{0}, pc.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("conn after ServePacket returned: write %v, want net.ErrClosed", err)
	}
	p.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ServeStream(context.Background(), l); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServeStream after Close: %v, want net.ErrClosed", err)
	}
}

func TestNewRejectsNoUpstreams(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without upstreams succeeded")
	}
}

// frame prefixes b with its length, as a TCP client sends it.
func frame(b []byte) []byte {
	out := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	copy(out[2:], b)
	return out
}

func TestUDPDroppedAtInFlightLimit(t *testing.T) {
	z := startZone(t, false)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}})
	for range cap(p.sem) {
		p.sem <- struct{}{}
	}
	c, err := net.Dial("udp", p.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := query("a.test.", dns.TypeA).Pack()
	c.Write(b)
	for deadline := time.Now().Add(5 * time.Second); p.Stats().Dropped == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if p.Stats().Dropped != 1 || z.count("a.test.", dns.TypeA, "udp") != 0 {
		t.Fatalf("at the limit: stats %+v, upstream asked %d times; want one drop and no upstream query",
			p.Stats(), z.count("a.test.", dns.TypeA, "udp"))
	}
	for range cap(p.sem) {
		<-p.sem
	}
	if r := exchange(t, "udp", p.udp, query("a.test.", dns.TypeA)); len(r.Answer) != 1 {
		t.Fatalf("below the limit again: %v", r)
	}
}

func TestTCPPipelined(t *testing.T) {
	z := startZone(t, false)
	p := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}})
	c, err := net.Dial("tcp", p.tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []byte
	for i, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT} {
		m := query("a.test.", qtype)
		if qtype == dns.TypeTXT {
			m = query("big.test.", qtype)
		}
		m.Id = uint16(100 + i)
		b, _ := m.Pack()
		out = append(out, frame(b)...)
	}
	c.Write(out)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	seen := map[uint16]int{}
	for range 3 {
		b, err := readFrame(c)
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatal(err)
		}
		seen[r.Id] = len(r.Answer)
	}
	if seen[100] != 1 || seen[101] != 1 || seen[102] != len(bigTXT) {
		t.Fatalf("answers by ID: %v, want 100:1 101:1 102:%d", seen, len(bigTXT))
	}
}

func TestServesIPv6(t *testing.T) {
	pc, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no IPv6 loopback: %v", err)
		}
		t.Skipf("no IPv6 loopback: %v", err)
	}
	z := startZone(t, false)
	p, err := New(Config{Upstreams: []netip.AddrPort{z.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go p.ServePacket(context.Background(), pc)
	r := exchange(t, "udp", pc.LocalAddr().String(), query("a.test.", dns.TypeAAAA))
	if len(r.Answer) != 1 {
		t.Fatalf("over [::1]: %v", r)
	}
}

// A share's Admit is asked once per Serve call, with the address served;
// the queries of a call it refuses get REFUSED, with the question and the
// client's OPT, and reach neither the cache nor the upstream.
func TestShareAdmit(t *testing.T) {
	z := startZone(t, false)
	root := startProxy(t, Config{Upstreams: []netip.AddrPort{z.addr}})
	exchange(t, "udp", root.udp, query("a.test.", dns.TypeA)) // cached: a refused share must not hit it either
	var mu sync.Mutex
	asked := map[string]netip.AddrPort{}
	share := root.Share(func(local netip.AddrPort, network string) bool {
		mu.Lock()
		defer mu.Unlock()
		asked[network] = local
		return network == "tcp"
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go share.ServePacket(context.Background(), pc)
	go share.ServeStream(context.Background(), l)
	defer share.Close()

	for _, name := range []string{"a.test.", "b.test."} {
		m := query(name, dns.TypeA)
		m.SetEdns0(1232, true)
		r := exchange(t, "udp", pc.LocalAddr().String(), m)
		if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 || r.Question[0].Name != name || r.IsEdns0() == nil || !r.IsEdns0().Do() {
			t.Errorf("refused share over udp, %s: %v; want REFUSED to the question, no records, an OPT with DO", name, r)
		}
	}
	if n := z.count("b.test.", dns.TypeA, "udp") + z.count("b.test.", dns.TypeA, "tcp"); n != 0 {
		t.Errorf("a refused query reached the upstream %d times", n)
	}
	if r := exchange(t, "tcp", l.Addr().String(), query("b.test.", dns.TypeA)); r.Rcode != dns.RcodeNameError {
		t.Errorf("admitted share over tcp: %v", r)
	}
	st := root.Stats()
	if st.Refused != 2 || st.CacheHits != 0 {
		t.Errorf("stats %+v: want 2 refused and no cache hit", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked["udp"].String() != pc.LocalAddr().String() || asked["tcp"].String() != l.Addr().String() {
		t.Errorf("Admit was asked about %v, want the addresses served (%s, %s)", asked, pc.LocalAddr(), l.Addr())
	}
}

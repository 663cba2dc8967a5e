package dnsproxy

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// zone is a small authoritative server for test., a real miekg/dns server on
// 127.0.0.1 over UDP and TCP on one port, used as the proxy's upstream. It
// truncates UDP answers to the asker's buffer as real servers do.
type zone struct {
	addr     netip.AddrPort
	servfail bool // answer everything with SERVFAIL

	mu    sync.Mutex
	asked map[string]int // "name type net" -> count
}

// bigTXT needs TCP at a 1232-byte buffer and fits in 4096 bytes.
var bigTXT = func() []string {
	var s []string
	for i := range 15 {
		s = append(s, strings.Repeat(string(rune('a'+i)), 200))
	}
	return s
}()

func startZone(t *testing.T, servfail bool) *zone {
	t.Helper()
	z := &zone{servfail: servfail, asked: map[string]int{}}
	pc, l := listenPair(t)
	z.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: l, Handler: z}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return z
}

// listenPair opens UDP and TCP on the same 127.0.0.1 port.
func listenPair(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close()
	}
	t.Fatal("no port free for both UDP and TCP on 127.0.0.1")
	return nil, nil
}

func (z *zone) count(name string, qtype uint16, network string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.asked[name+" "+dns.TypeToString[qtype]+" "+network]
}

func (z *zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	network := "tcp"
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		network = "udp"
	}
	q := r.Question[0]
	z.mu.Lock()
	z.asked[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]+" "+network]++
	z.mu.Unlock()

	m := new(dns.Msg).SetReply(r)
	m.Authoritative = true
	if z.servfail {
		m.Rcode = dns.RcodeServerFailure
	} else {
		z.answer(m, q)
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(4096, opt.Do())
	}
	if network == "udp" {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

func (z *zone) answer(m *dns.Msg, q dns.Question) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		return r
	}
	soa := rr("test. 300 IN SOA ns.test. admin.test. 1 3600 600 86400 5")
	switch name := strings.ToLower(q.Name); {
	case name == "a.test." && q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, rr("a.test. 300 IN A 192.0.2.1"))
	case name == "a.test." && q.Qtype == dns.TypeAAAA:
		m.Answer = append(m.Answer, rr("a.test. 300 IN AAAA 2001:db8::1"))
	case name == "a.test.":
		m.Ns = append(m.Ns, soa) // NODATA
	case name == "short.test." && q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, rr("short.test. 1 IN A 192.0.2.2"))
	case name == "big.test." && q.Qtype == dns.TypeTXT:
		for _, s := range bigTXT {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "big.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: []string{s}})
		}
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, soa)
	}
}

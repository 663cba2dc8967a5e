//go:build integration

package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// gatewayDNS is the rootless gateway's DNS address in these tests: its
// first address in rootlessSubnet.
var gatewayDNS = netip.AddrPortFrom(netip.MustParseAddr("198.18.3.1"), 53)

// bigRecords is how many 255-byte TXT strings make a big.test. answer:
// 240 records of 268 bytes packed, about 63 KiB, within DNS's 64 KiB.
const bigRecords = 240

// lanDNS is a DNS server on the LAN host's port 53 over UDP and TCP, the
// upstream of the rootless gateway's DNS (startRootless points it there).
// Every name under lan.test. has the LAN host's address for 300 s; every
// name under big.test. has about 64 KiB of TXT records living ttl, which a
// UDP asker gets truncated to its buffer (with TC) as real servers do;
// other names are NXDOMAIN. It counts the names it is asked, so a test can
// tell whose queries reached it: the gateway asks for every client from
// one address. It takes the place of lanServices' DNS, whose port it uses.
type lanDNS struct {
	ttl   uint32
	mu    sync.Mutex
	asked map[string]int
}

func startLANDNS(t *testing.T, tp *topo, ttl uint32) *lanDNS {
	t.Helper()
	s := &lanDNS{ttl: ttl, asked: map[string]int{}}
	addr := lanHost.Addr().String() + ":53"
	pc := tp.lan.ListenPacket(t, "udp", addr)
	l := tp.lan.Listen(t, "tcp", addr)
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: l, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return s
}

func (s *lanDNS) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	if len(q.Question) != 1 {
		return
	}
	name := strings.ToLower(q.Question[0].Name)
	s.mu.Lock()
	s.asked[name]++
	s.mu.Unlock()
	m := new(dns.Msg).SetReply(q)
	m.Compress = true
	switch {
	case (name == "lan.test." || strings.HasSuffix(name, ".lan.test.")) && q.Question[0].Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A: lanHost.Addr().AsSlice()})
	case strings.HasSuffix(name, ".big.test.") && q.Question[0].Qtype == dns.TypeTXT:
		txt := strings.Repeat("x", 255)
		for range bigRecords {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: s.ttl},
				Txt: []string{txt}})
		}
	default:
		m.Rcode = dns.RcodeNameError
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := q.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
			m.SetEdns0(opt.UDPSize(), false)
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// count is how often name was asked.
func (s *lanDNS) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[strings.ToLower(name)]
}

// countSuffix is how many queries were for names ending in suffix.
func (s *lanDNS) countSuffix(suffix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for name, c := range s.asked {
		if strings.HasSuffix(name, strings.ToLower(suffix)) {
			n += c
		}
	}
	return n
}

// askDNS puts name (type qtype) to server from src in ns over network, as
// a stub with a 1232-byte EDNS0 buffer would, and returns the answer.
func askDNS(t *testing.T, ns *nstest.NS, src netip.Addr, server netip.AddrPort, network, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	var r *dns.Msg
	var err error
	ns.Do(t, func() {
		q := new(dns.Msg).SetQuestion(name, qtype)
		q.SetEdns0(1232, false)
		d := &net.Dialer{LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
		if network == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		c := &dns.Client{Net: network, Dialer: d, Timeout: 5 * time.Second}
		r, _, err = c.Exchange(q, server.String())
	})
	return r, err
}

// rootlessClients connects one stock ssh -w per key to a rootless gateway,
// client i on tun<i> (topo.rootlessClient), and returns their addresses.
func rootlessClients(t *testing.T, tp *topo, o nstest.OpenSSH, privs ...string) []netip.Addr {
	t.Helper()
	addrs := make([]netip.Addr, len(privs))
	for i, priv := range privs {
		_, addrs[i] = tp.rootlessClient(t, o, priv, i)
	}
	return addrs
}

// dnsFlood is the DNS phase's load: from src in the client namespace, distinct names under big.test.,
// each answered with about 64 KiB by lanDNS, asked of the gateway's DNS by
// several workers at once as a stub asks: over UDP with a 1232-byte EDNS0
// buffer, then over TCP when the answer comes back truncated.
type dnsFlood struct {
	names  int
	whole  atomic.Int64 // answered in full over TCP
	failed atomic.Int64
	done   chan struct{}

	mu      sync.Mutex
	lastErr error
}

// startDNSFlood opens each worker's UDP socket and TCP connection in the
// client namespace, then asks names names, prefix.N.big.test., in the
// background.
func startDNSFlood(t *testing.T, ns *nstest.NS, src netip.Addr, server netip.AddrPort, prefix string, names, workers int) *dnsFlood {
	t.Helper()
	f := &dnsFlood{names: names, done: make(chan struct{})}
	udps := make([]net.Conn, workers)
	tcps := make([]net.Conn, workers)
	ns.Do(t, func() {
		for i := range workers {
			var err error
			if udps[i], err = net.DialUDP("udp", &net.UDPAddr{IP: src.AsSlice()}, net.UDPAddrFromAddrPort(server)); err != nil {
				t.Fatalf("flood worker %d: udp: %v", i, err)
			}
			if tcps[i], err = net.DialTCP("tcp", &net.TCPAddr{IP: src.AsSlice()}, net.TCPAddrFromAddrPort(server)); err != nil {
				t.Fatalf("flood worker %d: tcp: %v", i, err)
			}
		}
	})
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			defer udps[i].Close()
			defer tcps[i].Close()
			u, c := &dns.Conn{Conn: udps[i], UDPSize: 1232}, &dns.Conn{Conn: tcps[i]}
			for n := next.Add(1); n <= int64(names); n = next.Add(1) {
				if err := f.ask(u, c, fmt.Sprintf("%s.%d.big.test.", prefix, n)); err != nil {
					// Its TCP stream may hold a late answer: this
					// worker stops, the others take its names.
					f.failed.Add(1)
					f.mu.Lock()
					f.lastErr = err
					f.mu.Unlock()
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(f.done) }()
	t.Cleanup(func() {
		for i := range workers {
			udps[i].Close()
			tcps[i].Close()
		}
		<-f.done
	})
	return f
}

// ask puts one name as a stub does and wants all bigRecords records.
func (f *dnsFlood) ask(u, c *dns.Conn, name string) error {
	q := new(dns.Msg).SetQuestion(name, dns.TypeTXT)
	q.SetEdns0(1232, false)
	r, err := askDNSOverUDP(u, q)
	if err != nil {
		return fmt.Errorf("%s over udp: %w", name, err)
	}
	if !r.Truncated {
		return fmt.Errorf("%s over udp: want a truncated answer, got %v", name, r)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := c.WriteMsg(q); err != nil {
		return fmt.Errorf("%s over tcp: %w", name, err)
	}
	if r, err = c.ReadMsg(); err != nil {
		return fmt.Errorf("%s over tcp: %w", name, err)
	}
	if r.Id != q.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != bigRecords {
		return fmt.Errorf("%s over tcp: id %d (want %d), %s, %d records (want %d)", name, r.Id, q.Id, dns.RcodeToString[r.Rcode], len(r.Answer), bigRecords)
	}
	f.whole.Add(1)
	return nil
}

// askDNSOverUDP puts q over u as a stub does: three tries, 2 s each (glibc's
// resolver waits 5 s, twice), and the answer to this query's ID.
func askDNSOverUDP(u *dns.Conn, q *dns.Msg) (*dns.Msg, error) {
	var err error
	for range 3 {
		u.SetDeadline(time.Now().Add(2 * time.Second))
		if err = u.WriteMsg(q); err != nil {
			return nil, err
		}
		for {
			var r *dns.Msg
			r, err = u.ReadMsg()
			if r != nil && r.Id == q.Id && (err == nil || r.Truncated) {
				return r, nil
			}
			if err != nil {
				break // a timeout: ask again
			}
			// an answer to an earlier try of another name: read on
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err
		}
	}
	return nil, err
}

// Wait waits for the flood to end and returns how many names were
// answered in full, and the last error of those that were not.
func (f *dnsFlood) Wait() (whole int, err error) {
	<-f.done
	if failed := f.failed.Load(); failed > 0 {
		f.mu.Lock()
		err = fmt.Errorf("%d of %d names not answered in full, the last: %w", failed, f.names, f.lastErr)
		f.mu.Unlock()
	}
	return int(f.whole.Load()), err
}

// readRSS reads a process's resident memory in KiB.
func readRSS(pid int) (int, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return strconv.Atoi(string(m[1]))
}

// rssPeak samples a process's resident memory every 50 ms until stop is
// called, which returns the largest sample in KiB.
func rssPeak(t *testing.T, pid int) (stop func() int) {
	var peak atomic.Int64
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			if kib, err := readRSS(pid); err == nil && int64(kib) > peak.Load() {
				peak.Store(int64(kib))
			}
			select {
			case <-quit:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	stop = func() int {
		once.Do(func() { close(quit); <-done })
		return int(peak.Load())
	}
	t.Cleanup(func() { stop() })
	return stop
}

// The DNS phase's figures. Its answers live dnsFloodTTL, so that they
// expire soon after it. During it the cache holds at most the flooder's
// share (4 MiB) and the queries in flight their answers, and the Go
// runtime lets the heap grow to twice what was live before it collects:
// the gateway's resident memory stays within dnsFloodPeakMargin of its
// baseline. Before the cache was bounded in bytes, the same flood kept
// 600 MiB resident long after the answers' TTL.
const (
	dnsFloodTTL        = 5 // s
	dnsFloodNames      = 4000
	dnsFloodWorkers    = 32
	dnsFloodPeakMargin = 128 << 10 // KiB
)

// floodDNS: the flooder asks dnsFloodNames distinct names whose answers
// are 64 KiB each, dnsFloodWorkers at a time, as a stub asks them (UDP,
// then TCP on TC). The gateway's DNS cache keeps to its byte budget: its
// resident memory stays within dnsFloodPeakMargin of the baseline, the
// victim's cached name from before is still cached after (the flooder
// pushed out its own answers), and the phase ends once the flood's
// answers have expired, so that the gateway must have freed them.
func floodDNS(t *testing.T, n *neighbours) (stop func()) {
	tp := n.tp
	checkResolves(t, tp, n.victim, "warm.lan.test.")
	peak := rssPeak(t, n.gw.PID())
	start := time.Now()
	flood := startDNSFlood(t, tp.client, n.flooder, gatewayDNS, "flood", dnsFloodNames, dnsFloodWorkers)
	nstest.WaitFor(t, 30*time.Second, "the DNS flood under way", func() bool { return flood.whole.Load() >= 100 || flood.failed.Load() > 0 })
	return func() {
		select {
		case <-flood.done:
			t.Logf("the DNS flood ended before the victim's checks did: they overlapped it only in part")
		default:
		}
		whole, err := flood.Wait()
		ended := time.Now()
		if err != nil {
			t.Errorf("the DNS flood: %v", err)
		}
		if asked := n.lanDNS.countSuffix(".big.test."); whole != dnsFloodNames || asked < dnsFloodNames {
			t.Errorf("%d of %d names answered in full; the LAN's server was asked %d times", whole, dnsFloodNames, asked)
		}
		high := peak()
		t.Logf("DNS flood: %d names of %d KiB in %v; gateway RSS peaked at %d KiB, %d over its baseline",
			whole, bigRecords*268>>10, ended.Sub(start).Round(time.Millisecond), high, high-n.baseline.rssKiB)
		if high > n.baseline.rssKiB+dnsFloodPeakMargin {
			t.Errorf("the gateway's RSS peaked at %d KiB during the DNS flood, %d KiB over its baseline of %d (margin %d)",
				high, high-n.baseline.rssKiB, n.baseline.rssKiB, dnsFloodPeakMargin)
		}
		checkResolves(t, tp, n.victim, "warm.lan.test.")
		if c := n.lanDNS.count("warm.lan.test."); c != 1 {
			t.Errorf("the victim's name from before the flood was asked upstream %d times, want once: the flood pushed it out of the cache", c)
		}
		time.Sleep(time.Until(ended.Add((dnsFloodTTL + 1) * time.Second)))
	}
}

// checkResolves wants name resolved to the LAN host's address through the
// gateway's DNS from src, over UDP and over TCP.
func checkResolves(t *testing.T, tp *topo, src netip.Addr, name string) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		r, err := askDNS(t, tp.client, src, gatewayDNS, network, name, dns.TypeA)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), lanHost.Addr().String()) {
			t.Fatalf("%s from %s over %s through the gateway's DNS: %v %v", name, src, network, r, err)
		}
	}
}

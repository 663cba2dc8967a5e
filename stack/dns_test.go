package stack

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/stack/dnsproxy"
	"github.com/sshvpn/sshvpn/stack/egress"
)

// countingResolver answers every A question on 127.0.0.1, over UDP and
// TCP on one port, and counts the names it was asked.
type countingResolver struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen map[string]int
}

func startResolver(t *testing.T) *countingResolver {
	t.Helper()
	r := &countingResolver{seen: map[string]int{}}
	var pc net.PacketConn
	var l net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp4", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		l = nil
	}
	if l == nil {
		t.Fatal("no port free for both UDP and TCP on 127.0.0.1")
	}
	r.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: r}, {Listener: l, Handler: r}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return r
}

func (r *countingResolver) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	r.mu.Lock()
	r.seen[strings.ToLower(q.Question[0].Name)]++
	r.mu.Unlock()
	m := new(dns.Msg).SetReply(q)
	rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 198.18.0.1")
	m.Answer = append(m.Answer, rr)
	w.WriteMsg(m)
}

func (r *countingResolver) asked(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[name]
}

// askDNS puts name to the gateway's DNS at server from the peer over
// network and returns the answer, or nil when none came.
func askDNS(t *testing.T, p *peer, network string, server netip.AddrPort, name string) *dns.Msg {
	t.Helper()
	b, err := new(dns.Msg).SetQuestion(name, dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	var c net.Conn
	if network == "udp" {
		c = p.dialUDP(t, server)
	} else {
		tc, err := p.dialTCP(t, server)
		if err != nil {
			t.Logf("dns over tcp to %s: %v", server, err)
			return nil
		}
		defer tc.Close()
		c = tc
		b = append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatalf("dns over %s to %s: %v", network, server, err)
	}
	buf := make([]byte, 65536)
	var n int
	if network == "udp" {
		n, err = c.Read(buf)
	} else if _, err = io.ReadFull(c, buf[:2]); err == nil {
		n = int(binary.BigEndian.Uint16(buf))
		_, err = io.ReadFull(c, buf[:n])
	}
	if err != nil {
		t.Logf("dns over %s to %s: no answer: %v", network, server, err)
		return nil
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("dns over %s to %s: answer does not unpack: %v", network, server, err)
	}
	return m
}

// TestDNSJudgedByPolicy: a client asks the gateway's DNS as any other
// destination, under its egress policy. A key that denies everything, or
// an operator's --deny of the DNS address, gets REFUSED and its queries
// never reach the upstream resolver; the default policy gets answers.
func TestDNSJudgedByPolicy(t *testing.T) {
	up := startResolver(t)
	proxy, err := dnsproxy.New(dnsproxy.Config{Upstreams: []netip.AddrPort{up.addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	denyUDP, err := egress.ParseRule(gw4.String()+":53/udp", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		rules    []egress.Rule   // --allow and --deny
		keyRules []relay.KeyRule // SSHVPN_ALLOW and SSHVPN_DENY
		answered map[string]bool // by "network server"
	}{
		{name: "default", answered: map[string]bool{"udp 100.77.0.1:53": true, "tcp 100.77.0.1:53": true, "udp [fd73:7368:7670::1]:53": true, "tcp [fd73:7368:7670::1]:53": true}},
		{name: "key denies any", keyRules: []relay.KeyRule{{Rule: "any"}}},
		{name: "key denies v4 DNS over tcp", keyRules: []relay.KeyRule{{Rule: "100.77.0.1:53/tcp"}},
			answered: map[string]bool{"udp 100.77.0.1:53": true, "udp [fd73:7368:7670::1]:53": true, "tcp [fd73:7368:7670::1]:53": true}},
		{name: "--deny v4 DNS over udp", rules: []egress.Rule{denyUDP},
			answered: map[string]bool{"tcp 100.77.0.1:53": true, "udp [fd73:7368:7670::1]:53": true, "tcp [fd73:7368:7670::1]:53": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(Config{DNSProxy: proxy, Rules: tc.rules, Limits: Limits{DNSIdle: 100 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			tun, err := g.Open(context.Background(), relay.TunnelRequest{Mode: relay.PointToPoint, Key: "SHA256:" + tc.name,
				KeyRules: tc.keyRules, KeySource: "authorized_keys:1"})
			if err != nil {
				t.Fatal(err)
			}
			p := newPeer(t, tun)
			refusedBefore := proxy.Stats().Refused
			refused := 0
			for _, server := range []netip.AddrPort{netip.AddrPortFrom(gw4, 53), netip.AddrPortFrom(gw6, 53)} {
				for _, network := range []string{"udp", "tcp"} {
					where := network + " " + server.String()
					name := strings.ToLower(strings.NewReplacer(" ", "-", ":", "-", "[", "", "]", "").Replace(tc.name+" "+where)) + ".test."
					m := askDNS(t, p, network, server, name)
					switch {
					case tc.answered[where]:
						if m == nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || up.asked(name) != 1 {
							t.Errorf("%s: answer %v, upstream asked %d times; want an answer, asked once", where, m, up.asked(name))
						}
					default:
						refused++
						if m == nil || m.Rcode != dns.RcodeRefused || len(m.Answer) != 0 || m.Question[0].Name != name {
							t.Errorf("%s: answer %v; want REFUSED to the question, with no records", where, m)
						}
						if n := up.asked(name); n != 0 {
							t.Errorf("%s: refused, yet the upstream was asked %d times", where, n)
						}
					}
				}
			}
			if n := proxy.Stats().Refused - refusedBefore; n != uint64(refused) {
				t.Errorf("Stats.Refused counted %d, want %d", n, refused)
			}
		})
	}
}

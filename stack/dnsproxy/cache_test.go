package dnsproxy

import (
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

func TestCacheEvictsOldest(t *testing.T) {
	c := newCache(2)
	now := time.Now()
	keys := []cacheKey{{name: "a."}, {name: "b."}, {name: "c."}}
	for _, k := range keys {
		c.put(k, msgWith(0, false, []string{"x.test. 30 IN A 192.0.2.1"}, nil), now)
	}
	if c.len() != 2 || c.get(keys[0], now) != nil || c.get(keys[1], now) == nil || c.get(keys[2], now) == nil {
		t.Fatalf("after 3 puts into 2 slots: len %d, want the oldest gone", c.len())
	}
	if c.get(keys[1], now.Add(30*time.Second)) != nil {
		t.Error("entry served at its expiry")
	}
	if c.len() != 1 {
		t.Errorf("expired entry still held: len %d", c.len())
	}
}

func TestCacheGetIsACopy(t *testing.T) {
	c := newCache(1)
	now := time.Now()
	k := cacheKey{name: "a."}
	c.put(k, msgWith(0, false, []string{"x.test. 30 IN A 192.0.2.1"}, nil), now)
	m := c.get(k, now.Add(1500*time.Millisecond))
	if ttl := m.Answer[0].Header().Ttl; ttl != 28 {
		t.Errorf("TTL after 1.5 s: %d, want 28 (elapsed rounds up)", ttl)
	}
	m.Answer[0].Header().Ttl = 99
	if ttl := c.get(k, now).Answer[0].Header().Ttl; ttl != 30 {
		t.Errorf("changing a returned answer changed the cache: TTL %d", ttl)
	}
}

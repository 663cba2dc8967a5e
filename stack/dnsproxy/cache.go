package dnsproxy

import (
	"container/list"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxCacheTTL bounds how long any answer stays cached, whatever its TTL says,
// so a mistaken week-long TTL upstream does not pin a stale answer here.
const maxCacheTTL = time.Hour

// cacheKey names one cacheable question. DO and CD change what the resolver
// returns (signatures; unvalidated data), so they are part of the key.
type cacheKey struct {
	name          string // lowercased
	qtype, qclass uint16
	do, cd        bool
}

func keyOf(q dns.Question, do, cd bool) cacheKey {
	return cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, do: do, cd: cd}
}

type cacheEntry struct {
	key     cacheKey
	msg     *dns.Msg // the upstream answer without its OPT; never handed out
	stored  time.Time
	expires time.Time
}

// cache holds at most size answers and evicts the oldest stored first.
type cache struct {
	mu    sync.Mutex
	size  int
	order *list.List // of *cacheEntry, oldest at the front
	byKey map[cacheKey]*list.Element
}

func newCache(size int) *cache {
	return &cache{size: size, order: list.New(), byKey: map[cacheKey]*list.Element{}}
}

// get returns a copy of the cached answer with its TTLs counted down to now,
// or nil. Elapsed time rounds up, so a client never holds an answer past the
// moment the upstream's TTL ran out.
func (c *cache) get(k cacheKey, now time.Time) *dns.Msg {
	if c.size <= 0 {
		return nil
	}
	c.mu.Lock()
	el, ok := c.byKey[k]
	if !ok {
		c.mu.Unlock()
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.remove(el)
		c.mu.Unlock()
		return nil
	}
	m := e.msg.Copy()
	stored := e.stored
	c.mu.Unlock()

	elapsed := uint32((now.Sub(stored) + time.Second - 1) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			h.Ttl = max(h.Ttl, elapsed) - elapsed
		}
	}
	return m
}

// put stores m (which it keeps: the caller must not change it afterwards)
// when it may be cached.
func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(m)
	if !ok || c.size <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		c.remove(el)
	}
	for c.order.Len() >= c.size {
		c.remove(c.order.Front())
	}
	// No record outlives the entry: a negative answer's SOA says the
	// negative TTL, not its own (RFC 2308 §5), and so on for every record.
	secs := uint32(ttl / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			rr.Header().Ttl = min(rr.Header().Ttl, secs)
		}
	}
	e := &cacheEntry{key: k, msg: m, stored: now, expires: now.Add(ttl)}
	c.byKey[k] = c.order.PushBack(e)
}

func (c *cache) remove(el *list.Element) {
	delete(c.byKey, el.Value.(*cacheEntry).key)
	c.order.Remove(el)
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// cacheTTL says how long m may be cached: the smallest TTL of its records
// for an answer; for NXDOMAIN and NODATA the smaller of the SOA's TTL and
// its minimum field (RFC 2308 §5), and not at all without a SOA (RFC 2308
// §5: "SHOULD NOT be cached"). SERVFAIL, truncated answers and every other
// rcode are never cached.
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated || (m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError) {
		return 0, false
	}
	negative := m.Rcode == dns.RcodeNameError || len(m.Answer) == 0
	var soaTTL uint32
	haveSOA := false
	minTTL := uint32(maxCacheTTL / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			minTTL = min(minTTL, rr.Header().Ttl)
			if soa, ok := rr.(*dns.SOA); ok && negative {
				haveSOA = true
				soaTTL = min(soa.Hdr.Ttl, soa.Minttl)
			}
		}
	}
	if negative {
		if !haveSOA {
			return 0, false
		}
		minTTL = min(minTTL, soaTTL)
	}
	if minTTL == 0 {
		return 0, false
	}
	return time.Duration(minTTL) * time.Second, true
}

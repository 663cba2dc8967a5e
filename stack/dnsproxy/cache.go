package dnsproxy

import (
	"container/heap"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxCacheTTL bounds how long any answer stays cached, whatever its TTL says,
// so a mistaken week-long TTL upstream does not pin a stale answer here.
const maxCacheTTL = time.Hour

// entryOverhead is what the cache charges for one entry besides its
// answer's bytes: the entry, the answer's header, the map slot and the key.
// It keeps a flood of tiny answers from holding far more than the budget
// says.
const entryOverhead = 320

// sweepGap is the least time between two sweeps of expired entries, so
// that answers expiring a moment apart are freed together.
const sweepGap = time.Second

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

// account is what the queries of one client (one Proxy share) hold in the
// cache: the bytes charged to it and its entries, oldest first.
type account struct {
	bytes          int64
	oldest, newest *entry
}

type entry struct {
	key        cacheKey
	ans        *answer
	expires    time.Time
	size       int64
	owner      *account
	prev, next *entry // in owner's list
	index      int    // in cache.byExpiry
}

// cache holds packed answers within a byte budget. Each entry is charged
// to the account whose query stored it, and no account may hold more than
// share bytes. To make room it frees, in order: the expired entries, the
// storing account's oldest (past its share), then the oldest entry of
// whichever account holds the most. So a client filling the cache pushes
// out its own answers, never those of a client holding less than it. A
// timer frees expired entries without waiting for a lookup.
type cache struct {
	budget, share int64
	now           func() time.Time // tests replace it

	mu       sync.Mutex
	used     int64
	byKey    map[cacheKey]*entry
	byExpiry expiryHeap
	holders  map[*account]struct{} // accounts with entries
	timer    *time.Timer           // the next sweep
	timerAt  time.Time             // when it fires; zero when it is not set
	closed   bool
}

// newCache makes a cache of budget bytes, at most share of them per
// account; a budget of zero or less caches nothing.
func newCache(budget, share int64) *cache {
	return &cache{
		budget: budget, share: min(share, budget), now: time.Now,
		byKey: map[cacheKey]*entry{}, holders: map[*account]struct{}{},
	}
}

// get returns the answer cached for k, or nil when there is none or it
// expired (then it is freed).
func (c *cache) get(k cacheKey, now time.Time) *answer {
	if c.budget <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byKey[k]
	if e == nil {
		return nil
	}
	if !now.Before(e.expires) {
		c.remove(e)
		return nil
	}
	return e.ans
}

// put stores a for k until expires, charged to owner, unless it is larger
// than one account's share.
func (c *cache) put(owner *account, k cacheKey, a *answer, expires time.Time) {
	size := a.size() + int64(len(k.name)) + entryOverhead
	if c.budget <= 0 || size > c.share {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if old := c.byKey[k]; old != nil {
		c.remove(old)
	}
	c.sweepLocked(now)
	for owner.bytes+size > c.share {
		c.remove(owner.oldest)
	}
	for c.used+size > c.budget {
		c.remove(c.largest().oldest)
	}
	e := &entry{key: k, ans: a, expires: expires, size: size, owner: owner, prev: owner.newest}
	if owner.newest != nil {
		owner.newest.next = e
	} else {
		owner.oldest = e
	}
	owner.newest = e
	owner.bytes += size
	c.holders[owner] = struct{}{}
	c.used += size
	c.byKey[k] = e
	heap.Push(&c.byExpiry, e)
	c.arm(now)
}

// largest is the account holding the most bytes; the cache must hold some.
func (c *cache) largest() *account {
	var top *account
	for a := range c.holders {
		if top == nil || a.bytes > top.bytes {
			top = a
		}
	}
	return top
}

func (c *cache) remove(e *entry) {
	o := e.owner
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		o.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		o.newest = e.prev
	}
	e.prev, e.next = nil, nil
	o.bytes -= e.size
	if o.oldest == nil {
		delete(c.holders, o)
	}
	c.used -= e.size
	delete(c.byKey, e.key)
	heap.Remove(&c.byExpiry, e.index)
}

// sweepLocked frees every entry expired at now.
func (c *cache) sweepLocked(now time.Time) {
	for len(c.byExpiry) > 0 && !now.Before(c.byExpiry[0].expires) {
		c.remove(c.byExpiry[0])
	}
}

// arm sets the timer for the next expiry, no sooner than sweepGap from
// now, unless it is set for sooner already.
func (c *cache) arm(now time.Time) {
	if len(c.byExpiry) == 0 {
		return
	}
	at := c.byExpiry[0].expires
	if !c.timerAt.IsZero() && !c.timerAt.After(at) {
		return
	}
	at = maxTime(at, now.Add(sweepGap))
	if c.timer == nil {
		c.timer = time.AfterFunc(at.Sub(now), c.sweep)
	} else {
		c.timer.Reset(at.Sub(now))
	}
	c.timerAt = at
}

// sweep is the timer's: it frees what expired and sets the next sweep.
func (c *cache) sweep() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.sweepLocked(now)
	c.timerAt = time.Time{}
	c.arm(now)
}

// close stops the timer and frees every entry.
func (c *cache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	for _, e := range c.byKey {
		e.owner.oldest, e.owner.newest, e.owner.bytes = nil, nil, 0
	}
	c.byKey, c.byExpiry, c.holders, c.used = map[cacheKey]*entry{}, nil, map[*account]struct{}{}, 0
}

// held returns the bytes and entries the cache holds.
func (c *cache) held() (bytes int64, entries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, len(c.byKey)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// expiryHeap orders entries by expiry, soonest first (container/heap).
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// capTTLs lowers every record's TTL to ttl, the time m is cached: a
// negative answer's SOA says the negative TTL, not its own (RFC 2308 §5),
// and no record outlives the entry.
func capTTLs(m *dns.Msg, ttl time.Duration) {
	secs := uint32(ttl / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			rr.Header().Ttl = min(rr.Header().Ttl, secs)
		}
	}
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

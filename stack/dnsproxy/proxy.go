package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Defaults and limits. They are constants rather than Config fields because
// nothing yet needs to tune them; each says why it is what it is.
const (
	// DefaultTimeout is how long one upstream gets (UDP and, when truncated,
	// TCP) before the next is asked. glibc waits 5 s; a gateway's resolvers
	// are usually near, and a client retries anyway.
	DefaultTimeout = 2 * time.Second
	// DefaultCacheBytes bounds what the cache holds when Config.CacheBytes
	// is 0: a small fixed cost of the gateway whatever its clients ask,
	// and room for tens of thousands of typical answers of a few hundred
	// bytes.
	DefaultCacheBytes = 32 << 20
	// DefaultShareBytes bounds what the queries of one client (one Share)
	// hold of the cache when Config.ShareBytes is 0: thousands of answers,
	// many times a host's working set of names, and an eighth of the
	// default budget, so that eight clients at their full share fit and a
	// client flooding the cache with large answers keeps to its own.
	DefaultShareBytes = 4 << 20

	// upstreamUDPSize is the EDNS0 buffer advertised upstream and to clients:
	// the DNS flag day 2020 figure, which avoids IP fragmentation.
	upstreamUDPSize = 1232
	// maxClientUDPSize caps what a UDP client may ask for, so one small query
	// cannot draw a large reply (amplification) or a fragmented one.
	maxClientUDPSize = 4096
	// maxInFlight bounds the queries one Proxy (or one Share of it) is
	// answering at once, across transports; UDP queries past it are
	// dropped, TCP ones wait.
	maxInFlight = 256
	// maxConnInFlight bounds the pipelined queries of one TCP connection, so
	// one connection cannot take every slot.
	maxConnInFlight = 16
	// maxConns bounds open TCP connections; more are closed at once.
	maxConns = 128
	// tcpIdleTimeout closes a TCP connection that sent no query for this
	// long (RFC 7766 §6.2.3 suggests seconds, not minutes).
	tcpIdleTimeout = 10 * time.Second
)

// Config configures a Proxy.
type Config struct {
	// Upstreams are the resolvers asked, in order (see Upstreams). At least one.
	Upstreams []netip.AddrPort
	// Timeout is the time one upstream gets; 0 means DefaultTimeout.
	Timeout time.Duration
	// CacheBytes bounds the bytes the cache holds: each answer's packed
	// bytes and index, and a fixed estimate of its bookkeeping. 0 means
	// DefaultCacheBytes and a negative value turns the cache off.
	CacheBytes int64
	// ShareBytes bounds what one Share's queries hold of the cache (see
	// Share), at most CacheBytes; 0 means DefaultShareBytes. An answer
	// larger than that is not cached.
	ShareBytes int64
	// Log receives per-query events at debug level; nil discards them.
	Log *slog.Logger
}

// exchanger asks one question of the resolvers. The forwarder is the real
// one; the fuzz target uses one that answers from bytes it is given.
type exchanger interface {
	exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error)
}

// Proxy is a caching DNS forwarder. Its methods are safe for concurrent use.
type Proxy struct {
	log   *slog.Logger
	ex    exchanger
	cache *cache
	acct  *account      // what this Proxy's queries hold in the cache
	admit Admit         // nil: every query is taken
	root  bool          // the Proxy New made, which owns the cache
	idle  time.Duration // TCP idle timeout; tests shorten it
	sem   chan struct{} // queries in flight
	stats *stats        // shared with the Proxy's shares

	mu      sync.Mutex
	closed  bool
	serving map[*serving]struct{}
	wg      sync.WaitGroup // one per running Serve call
}

// Stats counts what a Proxy did since New.
type Stats struct {
	Queries          uint64 // messages received from clients
	CacheHits        uint64 // answered from the cache
	Refused          uint64 // refused because Admit said no (see Share)
	Malformed        uint64 // unparseable or invalid queries (dropped, or FORMERR)
	Dropped          uint64 // queries or connections refused at a limit
	UpstreamFailures uint64 // queries no upstream answered (the client got SERVFAIL)
	// CacheBytes and CacheEntries are what the cache holds now.
	CacheBytes   uint64
	CacheEntries uint64
}

type stats struct {
	queries, cacheHits, refused, malformed, dropped, upstreamFailures atomic.Uint64
}

// New returns a Proxy for cfg. It opens nothing until a Serve method runs.
func New(cfg Config) (*Proxy, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("dns proxy: no upstream resolvers configured")
	}
	for _, up := range cfg.Upstreams {
		if !up.IsValid() || up.Port() == 0 {
			return nil, fmt.Errorf("dns proxy: invalid upstream %q", up)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.ShareBytes <= 0 {
		cfg.ShareBytes = DefaultShareBytes
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fwd := &forwarder{upstreams: append([]netip.AddrPort(nil), cfg.Upstreams...), timeout: cfg.Timeout, log: log}
	return newProxy(fwd, newCache(cfg.CacheBytes, cfg.ShareBytes), log), nil
}

func newProxy(ex exchanger, c *cache, log *slog.Logger) *Proxy {
	return &Proxy{
		log:     log,
		ex:      ex,
		cache:   c,
		acct:    new(account),
		root:    true,
		idle:    tcpIdleTimeout,
		sem:     make(chan struct{}, maxInFlight),
		stats:   new(stats),
		serving: map[*serving]struct{}{},
	}
}

// Admit says whether a client may put queries to the proxy at local, the
// address and port it sends them to, over network ("udp" or "tcp"). Each
// Serve call asks once, for the address it serves. The queries of a client
// it turns away are answered REFUSED (RFC 1035 §4.1.1: refused "for policy
// reasons") from the query alone: nothing is looked up in the cache or
// asked upstream.
type Admit func(local netip.AddrPort, network string) bool

// Share returns a Proxy that asks the same resolvers through the same
// cache and counts into the same Stats, with limits of its own: the
// rootless gateway gives each client one, so that a client flooding
// queries fills its own in-flight slots and its own share of the cache
// (Config.ShareBytes), never another's. admit, when not nil, decides which
// of the share's Serve calls answer. Close on the share stops its Serve
// calls only; what it cached stays, for the others.
func (p *Proxy) Share(admit Admit) *Proxy {
	return &Proxy{
		log: p.log, ex: p.ex, cache: p.cache, idle: p.idle, stats: p.stats,
		acct:    new(account),
		admit:   admit,
		sem:     make(chan struct{}, maxInFlight),
		serving: map[*serving]struct{}{},
	}
}

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	bytes, entries := p.cache.held()
	return Stats{
		CacheBytes:       uint64(bytes),
		CacheEntries:     uint64(entries),
		Queries:          p.stats.queries.Load(),
		CacheHits:        p.stats.cacheHits.Load(),
		Refused:          p.stats.refused.Load(),
		Malformed:        p.stats.malformed.Load(),
		Dropped:          p.stats.dropped.Load(),
		UpstreamFailures: p.stats.upstreamFailures.Load(),
	}
}

// Close stops every running Serve call, closing its conn or listener, and
// waits until they have returned. Later Serve calls return net.ErrClosed.
// On the Proxy New made it also empties the cache, which its shares use.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for s := range p.serving {
		s.cancel()
	}
	p.mu.Unlock()
	p.wg.Wait()
	if p.root {
		p.cache.close()
	}
	return nil
}

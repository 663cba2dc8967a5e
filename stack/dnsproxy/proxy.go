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
	// DefaultCacheSize is the number of answers kept when Config.CacheSize is 0.
	DefaultCacheSize = 4096

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
	// CacheSize is the number of answers cached; 0 means DefaultCacheSize
	// and a negative value turns the cache off.
	CacheSize int
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
	now   func() time.Time // the cache's clock; tests replace it
	idle  time.Duration    // TCP idle timeout; tests shorten it
	sem   chan struct{}    // queries in flight
	stats *stats           // shared with the Proxy's shares

	mu      sync.Mutex
	closed  bool
	serving map[*serving]struct{}
	wg      sync.WaitGroup // one per running Serve call
}

// Stats counts what a Proxy did since New.
type Stats struct {
	Queries          uint64 // messages received from clients
	CacheHits        uint64 // answered from the cache
	Malformed        uint64 // unparseable or invalid queries (dropped, or FORMERR)
	Dropped          uint64 // queries or connections refused at a limit
	UpstreamFailures uint64 // queries no upstream answered (the client got SERVFAIL)
}

type stats struct {
	queries, cacheHits, malformed, dropped, upstreamFailures atomic.Uint64
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
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fwd := &forwarder{upstreams: append([]netip.AddrPort(nil), cfg.Upstreams...), timeout: cfg.Timeout, log: log}
	return newProxy(fwd, cfg.CacheSize, log), nil
}

func newProxy(ex exchanger, cacheSize int, log *slog.Logger) *Proxy {
	return &Proxy{
		log:     log,
		ex:      ex,
		cache:   newCache(cacheSize),
		now:     time.Now,
		idle:    tcpIdleTimeout,
		sem:     make(chan struct{}, maxInFlight),
		stats:   new(stats),
		serving: map[*serving]struct{}{},
	}
}

// Share returns a Proxy that asks the same resolvers through the same
// cache and counts into the same Stats, with limits of its own: the
// rootless gateway gives each client one, so that a client flooding
// queries fills its own in-flight slots, never another's. Close on the
// share stops its Serve calls only.
func (p *Proxy) Share() *Proxy {
	return &Proxy{
		log: p.log, ex: p.ex, cache: p.cache, now: p.now, idle: p.idle, stats: p.stats,
		sem:     make(chan struct{}, maxInFlight),
		serving: map[*serving]struct{}{},
	}
}

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	return Stats{
		Queries:          p.stats.queries.Load(),
		CacheHits:        p.stats.cacheHits.Load(),
		Malformed:        p.stats.malformed.Load(),
		Dropped:          p.stats.dropped.Load(),
		UpstreamFailures: p.stats.upstreamFailures.Load(),
	}
}

// Close stops every running Serve call, closing its conn or listener, and
// waits until they have returned. Later Serve calls return net.ErrClosed.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for s := range p.serving {
		s.cancel()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

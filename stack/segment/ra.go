package segment

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/ndp"
)

// RAConfig is a router advertisement schedule (RFC 4861 6.2.1).
type RAConfig struct {
	// MinInterval and MaxInterval bound the time between unsolicited
	// advertisements (MinRtrAdvInterval, MaxRtrAdvInterval).
	MinInterval, MaxInterval time.Duration
	// RouterLifetime is how long a client keeps the gateway as its
	// default router (AdvDefaultLifetime), and its DNS options.
	RouterLifetime time.Duration
}

// DefaultRA is RFC 4861's defaults: MaxRtrAdvInterval 600 s,
// MinRtrAdvInterval a third of it, AdvDefaultLifetime three times it. A
// client that joins between two advertisements solicits one and has it at
// once, so nothing is gained by advertising more often.
var DefaultRA = RAConfig{MinInterval: 200 * time.Second, MaxInterval: 600 * time.Second, RouterLifetime: 1800 * time.Second}

// solicitBurst is how many solicitations in a row are answered at once,
// one more each second: Linux sends 3 at most (router_solicitations)
// and a tool asks once more.
const solicitBurst = 3

// RFC 4861 10, router constants.
const (
	maxInitialInterval = 16 * time.Second // MAX_INITIAL_RTR_ADVERT_INTERVAL
	maxInitialAdverts  = 3                // MAX_INITIAL_RTR_ADVERTISEMENTS
	minDelayBetweenRAs = 3 * time.Second  // MIN_DELAY_BETWEEN_RAS
)

// Prefix lifetimes: RFC 4861's AdvValidLifetime and AdvPreferredLifetime
// defaults. The prefix is the gateway's configured subnet, which does not
// change while it runs.
const (
	validLifetime     = 30 * 24 * time.Hour
	preferredLifetime = 7 * 24 * time.Hour
)

// advertiser sends one segment's router advertisements: unsolicited ones
// on RFC 4861's schedule, the first few MAX_INITIAL_RTR_ADVERT_INTERVAL
// apart, and an answer to each router solicitation. An answer goes to the
// soliciting address (6.2.6 allows it) at once: 6.2.6's limit of one per
// MIN_DELAY_BETWEEN_RAS binds multicast advertisements, which every node
// on a link hears, not one to the only client. A client that floods
// solicitations spends a small bucket (solicitBurst, one more a second)
// and is then answered as one from the unspecified address is: to all
// nodes, at most once per MIN_DELAY_BETWEEN_RAS after the last multicast
// one, a burst of solicitations within it answered by one advertisement
// at its end. The very first solicitation is answered at once in any
// case. One timer serves the schedule and the deferred answer.
//
// (A per-client rate limit on unicast answers too would delay a host
// that asks twice: Linux's own solicitation at link-up is followed, a
// moment later, by rdisc6's or NetworkManager's, which then waited 3 s.)
type advertiser struct {
	s   *Segment
	msg *ndp.RouterAdvertisement
	cfg RAConfig

	mu            sync.Mutex
	timer         Timer
	sent          int       // unsolicited advertisements so far
	nextPeriodic  time.Time // when the next unsolicited one is due
	lastMulticast time.Time // the last advertisement to all nodes
	answered      bool      // a solicitation was answered already
	tokens        float64   // unicast answers left in the bucket
	refilled      time.Time // when tokens was last topped up
	pending       bool      // a solicitation waits for pendingAt
	pendingAt     time.Time
	stopped       bool
}

func newAdvertiser(s *Segment, cfg Config) (*advertiser, error) {
	a := &advertiser{s: s, cfg: cfg.RA}
	if a.cfg == (RAConfig{}) {
		a.cfg = DefaultRA
	}
	if a.cfg.MinInterval <= 0 || a.cfg.MaxInterval < a.cfg.MinInterval || a.cfg.RouterLifetime > 9000*time.Second {
		return nil, fmt.Errorf("segment: router advertisement intervals %v to %v, lifetime %v: want 0 < min <= max, lifetime at most 9000 s",
			a.cfg.MinInterval, a.cfg.MaxInterval, a.cfg.RouterLifetime)
	}
	// Without IPv6 on the segment the gateway is nobody's IPv6 router: a
	// router lifetime of 0 says so (RFC 4861 4.2, 6.3.4), and removes a
	// default route a client kept from an earlier advertisement. The
	// advertisements still go out, rather than none: a client soliciting
	// gets its answer (the MTU) at once instead of retrying, and one that
	// kept this segment's default route from a gateway with IPv6 drops it.
	lifetime := a.cfg.RouterLifetime
	if !s.addr6.IsValid() {
		lifetime = 0
	}
	a.msg = &ndp.RouterAdvertisement{
		CurrentHopLimit: 64,
		RouterLifetime:  lifetime,
		Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: s.gwMAC[:]},
			ndp.NewMTU(uint32(s.inner.MTU())),
		},
	}
	if s.prefix6.IsValid() {
		a.msg.Options = append(a.msg.Options, &ndp.PrefixInformation{
			PrefixLength: 64, OnLink: true, AutonomousAddressConfiguration: true,
			ValidLifetime: validLifetime, PreferredLifetime: preferredLifetime, Prefix: s.prefix6.Addr(),
		})
	}
	var dns6 []netip.Addr
	for _, d := range cfg.DNS {
		if d.Is6() {
			dns6 = append(dns6, d)
		}
	}
	// RFC 8106 5.1: a lifetime of at least 3 x MaxRtrAdvInterval.
	life := max(a.cfg.RouterLifetime, 3*a.cfg.MaxInterval)
	if len(dns6) > 0 {
		a.msg.Options = append(a.msg.Options, &ndp.RecursiveDNSServer{Lifetime: life, Servers: dns6})
	}
	if len(cfg.Domains) > 0 {
		a.msg.Options = append(a.msg.Options, &ndp.DNSSearchList{Lifetime: life, DomainNames: cfg.Domains})
	}
	if _, err := ndp.MarshalMessageChecksum(a.msg, s.linkLoc, allNodes); err != nil {
		return nil, fmt.Errorf("segment: router advertisement: %w", err)
	}
	return a, nil
}

// start sends the first advertisement and arms the timer.
func (a *advertiser) start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.s.clock.Now()
	a.send(allNodes)
	a.sent, a.lastMulticast = 1, now
	a.tokens, a.refilled = solicitBurst, now
	a.nextPeriodic = now.Add(a.interval())
	a.timer = a.s.clock.AfterFunc(a.nextPeriodic.Sub(now), a.fire)
}

// interval is the time to the next unsolicited advertisement: random in
// [MinInterval, MaxInterval], at most MAX_INITIAL_RTR_ADVERT_INTERVAL for
// the first few (RFC 4861 6.2.4).
func (a *advertiser) interval() time.Duration {
	d := a.cfg.MinInterval + rand.N(a.cfg.MaxInterval-a.cfg.MinInterval+1)
	if a.sent < maxInitialAdverts {
		d = min(d, maxInitialInterval)
	}
	return d
}

// fire sends what is due, an unsolicited advertisement or a deferred
// answer (one advertisement when both are), and re-arms the timer.
func (a *advertiser) fire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	now := a.s.clock.Now()
	due := false
	if !now.Before(a.nextPeriodic) {
		due = true
		a.sent++
		a.nextPeriodic = now.Add(a.interval())
	}
	if a.pending && !now.Before(a.pendingAt) {
		due = true
		a.pending = false
	}
	if due {
		a.send(allNodes)
		a.lastMulticast = now
	}
	a.arm(now)
}

// arm sets the timer for the earlier of the next unsolicited
// advertisement and a deferred answer.
func (a *advertiser) arm(now time.Time) {
	next := a.nextPeriodic
	if a.pending && a.pendingAt.Before(next) {
		next = a.pendingAt
	}
	a.timer.Reset(max(next.Sub(now), 0))
}

// solicited answers a router solicitation from src.
func (a *advertiser) solicited(now time.Time, src netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	a.tokens = min(solicitBurst, a.tokens+now.Sub(a.refilled).Seconds())
	a.refilled = now
	first := !a.answered
	a.answered = true
	switch {
	case !src.IsUnspecified() && (a.tokens >= 1 || first):
		a.tokens = max(a.tokens-1, 0)
		a.send(src)
		return
	case first || now.Sub(a.lastMulticast) >= minDelayBetweenRAs:
		a.send(allNodes)
		a.lastMulticast = now
		return
	}
	a.s.stats.RSDeferred.Add(1)
	if !a.pending {
		a.pending = true
		a.pendingAt = a.lastMulticast.Add(minDelayBetweenRAs)
		a.arm(now)
	}
}

// send builds one advertisement to dst and queues it.
func (a *advertiser) send(dst netip.Addr) {
	if a.s.sendND(a.msg, a.s.linkLoc, dst) {
		a.s.stats.RouterAdverts.Add(1)
	}
}

// stop ends the schedule: the timer may not fire again.
func (a *advertiser) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	if a.timer != nil {
		a.timer.Stop()
	}
}

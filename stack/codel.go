package stack

import (
	"math"
	"time"
)

// The outbound queue is where a download through the stack waits when the
// SSH channel is the bottleneck, and a queue sized for throughput (5,000
// packets, 16 MiB) is seconds of delay at tunnel rates. CoDel (RFC 8289)
// keeps the bound
// for bursts but drops at the head once packets have waited longer than
// target for a whole interval, spacing drops by interval/√count, so the
// stack's TCP backs off before the queue grows into a standing delay.
//
// The interval should be about the longest round trip of the flows the
// queue holds (RFC 8289 §4.3), and the flows through the stack are the
// client's: they cross the tunnel, so their round trip is the SSH path's
// and the client's own delays. RFC 8289's 100 ms, made for the Internet,
// is too slow for a LAN: there the queue of a download between two sshvpn
// endpoints dips below 5 ms more often than every 100 ms, so CoDel never
// drops while the queue holds 10 ms. The interval is five times the path's
// round trip, within minInterval and maxInterval, and target 5% of it but
// at least minTarget: a LAN path gets 10 ms and 1 ms (what it did to the
// loaded ping: bench/README.md). A path of
// 20 ms or more keeps RFC 8289's values: the stack's TCP (reno) needs a
// time that grows with the square of the round trip to win back a drop,
// so a long path is where an early drop costs most.
const (
	maxInterval = 100 * time.Millisecond // RFC 8289's, and ours until the path is measured
	minInterval = 10 * time.Millisecond  // the scheduling jitter of a busy 2-core host
	minTarget   = time.Millisecond
)

// codelParams are one queue's target and interval.
type codelParams struct {
	target, interval time.Duration
}

// paramsFor sizes CoDel for a path of this round trip; 0 means unknown.
func paramsFor(rtt time.Duration) codelParams {
	iv := maxInterval
	if rtt > 0 {
		iv = min(max(5*rtt, minInterval), maxInterval)
	}
	return codelParams{target: max(iv/20, minTarget), interval: iv}
}

// codel is the drop state of one queue. Only the queue's reader touches
// it.
type codel struct {
	codelParams
	dropping   bool
	count      uint32
	lastCount  uint32
	firstAbove time.Duration // when the delay may first have been above target for an interval; 0: not above
	dropNext   time.Duration
}

// epoch makes monotonic times small integers.
var epoch = time.Now()

func now() time.Duration { return time.Since(epoch) }

// okToDrop notes a packet's wait and says whether the delay has stayed
// above target for an interval. backlog is what remains queued after it:
// a queue of less than one packet is never the problem.
func (c *codel) okToDrop(waited, t time.Duration, backlog int64, mtu int) bool {
	if waited < c.target || backlog <= int64(mtu) {
		c.firstAbove = 0
		return false
	}
	if c.firstAbove == 0 {
		c.firstAbove = t + c.interval
		return false
	}
	return t >= c.firstAbove
}

// controlLaw is the next drop time: interval/√count after t.
func (c *codel) controlLaw(t time.Duration, count uint32) time.Duration {
	return t + time.Duration(float64(c.interval)/math.Sqrt(float64(count)))
}

// drop decides the fate of the packet at the head of the queue, which
// waited waited, at time t: true drops it.
func (c *codel) drop(waited, t time.Duration, backlog int64, mtu int) bool {
	ok := c.okToDrop(waited, t, backlog, mtu)
	switch {
	case c.dropping && !ok:
		c.dropping = false
		return false
	case c.dropping:
		if t < c.dropNext {
			return false
		}
		c.count++
		c.dropNext = c.controlLaw(c.dropNext, c.count)
		return true
	case ok:
		c.dropping = true
		// Resume near the last drop rate when the last dropping state
		// ended recently: the queue is still the same queue.
		delta := c.count - c.lastCount
		c.count = 1
		if delta > 1 && t-c.dropNext < 16*c.interval {
			c.count = delta
		}
		c.lastCount = c.count
		c.dropNext = c.controlLaw(t, c.count)
		return true
	}
	return false
}

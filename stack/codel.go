package stack

import (
	"math"
	"time"
)

// The outbound queue is where a download through the stack waits when the
// SSH channel is the bottleneck, and a queue sized for throughput (5,000
// packets, 16 MiB) is seconds of delay at tunnel rates: a ping under a
// saturating download took 264 ms at the 99th percentile through a stock
// client (bench, ssh→sshvpn-netstack). CoDel (RFC 8289) keeps the bound
// for bursts but drops at the head once packets have waited longer than
// target for a whole interval, spacing drops by interval/√count, so the
// stack's TCP backs off before the queue grows into a standing delay.
const (
	codelTarget   = 5 * time.Millisecond
	codelInterval = 100 * time.Millisecond
)

// codel is the drop state of one queue. Only the queue's reader touches
// it.
type codel struct {
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
	if waited < codelTarget || backlog <= int64(mtu) {
		c.firstAbove = 0
		return false
	}
	if c.firstAbove == 0 {
		c.firstAbove = t + codelInterval
		return false
	}
	return t >= c.firstAbove
}

// controlLaw is the next drop time: interval/√count after t.
func controlLaw(t time.Duration, count uint32) time.Duration {
	return t + time.Duration(float64(codelInterval)/math.Sqrt(float64(count)))
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
		c.dropNext = controlLaw(c.dropNext, c.count)
		return true
	case ok:
		c.dropping = true
		// Resume near the last drop rate when the last dropping state
		// ended recently: the queue is still the same queue.
		delta := c.count - c.lastCount
		c.count = 1
		if delta > 1 && t-c.dropNext < 16*codelInterval {
			c.count = delta
		}
		c.lastCount = c.count
		c.dropNext = controlLaw(t, c.count)
		return true
	}
	return false
}

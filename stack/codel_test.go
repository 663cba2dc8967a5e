package stack

import (
	"testing"
	"time"
)

// CoDel drops nothing while packets wait less than target, starts only
// after the delay stayed above target for a whole interval, then drops
// faster and faster (interval/√count) while it stays, and stops as soon as
// the delay falls below target: for the Internet's parameters and for a
// LAN path's.
func TestCoDel(t *testing.T) {
	for _, rtt := range []time.Duration{0, 300 * time.Microsecond} {
		p := paramsFor(rtt)
		t.Run(p.interval.String(), func(t *testing.T) { testCoDel(t, p) })
	}
}

func testCoDel(t *testing.T, p codelParams) {
	c := codel{codelParams: p}
	const mtu, backlog = 1500, 1 << 20
	ms := time.Millisecond
	below, above := p.target-p.target/5, 4*p.target
	// One packet per millisecond for a second, each having waited a little
	// less than target.
	for i := range 1000 {
		if c.drop(below, time.Duration(i+1)*ms, backlog, mtu) {
			t.Fatalf("dropped at %d ms a packet that waited less than target", i+1)
		}
	}
	// Now each waits four times target.
	var drops []time.Duration
	for i := range 1000 {
		at := time.Second + time.Duration(i+1)*ms
		if c.drop(above, at, backlog, mtu) {
			drops = append(drops, at-time.Second)
		}
	}
	if len(drops) < 5 || drops[0] < p.interval || drops[0] > p.interval+2*ms {
		t.Fatalf("drops at %v; want the first an interval (%v) after the delay rose", drops, p.interval)
	}
	for i := 2; i < len(drops); i++ {
		if gap, prev := drops[i]-drops[i-1], drops[i-1]-drops[i-2]; gap > prev+ms {
			t.Fatalf("drop gaps grew (%v then %v): the control law must shorten them", prev, gap)
		}
	}
	// The delay falls: no more drops.
	for i := range 100 {
		if c.drop(below, 2*time.Second+time.Duration(i+1)*ms, backlog, mtu) {
			t.Fatal("dropped after the delay fell below target")
		}
	}
	// A backlog of less than one packet is never dropped from.
	d := codel{codelParams: p}
	for i := range 1000 {
		if d.drop(10*above, time.Duration(i+1)*ms, mtu, mtu) {
			t.Fatal("dropped from a queue holding less than one packet")
		}
	}
}

// CoDel's interval follows the path: five times its round trip, within 10
// and 100 ms, with target at 5% of it and at least 1 ms.
func TestCoDelParams(t *testing.T) {
	ms, us := time.Millisecond, time.Microsecond
	for _, c := range []struct {
		rtt              time.Duration
		target, interval time.Duration
	}{
		{0, 5 * ms, 100 * ms}, // unmeasured: RFC 8289's
		{300 * us, ms, 10 * ms},
		{4 * ms, ms, 20 * ms},
		{10 * ms, 2500 * us, 50 * ms},
		{40 * ms, 5 * ms, 100 * ms},
		{time.Second, 5 * ms, 100 * ms},
	} {
		if got := paramsFor(c.rtt); got.target != c.target || got.interval != c.interval {
			t.Errorf("paramsFor(%v) = target %v, interval %v; want %v, %v", c.rtt, got.target, got.interval, c.target, c.interval)
		}
	}
}

// The endpoint's reader takes the path's round trip the gateway set
// (SetPathRTT) at its next batch.
func TestEndpointCoDelFollowsPathRTT(t *testing.T) {
	o := newOutBench(t)
	o.cycle(t)
	if got := o.e.codel.interval; got != maxInterval {
		t.Fatalf("interval %v before the path is measured, want %v", got, maxInterval)
	}
	tun := &tunnel{client: &client{ep: o.e}}
	tun.SetPathRTT(300 * time.Microsecond)
	o.cycle(t)
	if got := o.e.codel.interval; got != minInterval {
		t.Fatalf("interval %v on a 300 µs path, want %v", got, minInterval)
	}
}

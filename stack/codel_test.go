package stack

import (
	"testing"
	"time"
)

// CoDel drops nothing while packets wait less than target, starts only
// after the delay stayed above target for a whole interval, then drops
// faster and faster (interval/√count) while it stays, and stops as soon as
// the delay falls below target.
func TestCoDel(t *testing.T) {
	var c codel
	const mtu, backlog = 1500, 1 << 20
	ms := time.Millisecond
	// One packet per millisecond for a second, each having waited 4 ms.
	for i := range 1000 {
		if c.drop(4*ms, time.Duration(i+1)*ms, backlog, mtu) {
			t.Fatalf("dropped at %d ms a packet that waited less than target", i+1)
		}
	}
	// Now each waits 20 ms.
	var drops []time.Duration
	for i := range 1000 {
		at := time.Second + time.Duration(i+1)*ms
		if c.drop(20*ms, at, backlog, mtu) {
			drops = append(drops, at-time.Second)
		}
	}
	if len(drops) < 5 || drops[0] < 100*ms || drops[0] > 102*ms {
		t.Fatalf("drops at %v; want the first an interval (100 ms) after the delay rose", drops)
	}
	for i := 2; i < len(drops); i++ {
		if gap, prev := drops[i]-drops[i-1], drops[i-1]-drops[i-2]; gap > prev+ms {
			t.Fatalf("drop gaps grew (%v then %v): the control law must shorten them", prev, gap)
		}
	}
	// The delay falls: no more drops.
	for i := range 100 {
		if c.drop(1*ms, 2*time.Second+time.Duration(i+1)*ms, backlog, mtu) {
			t.Fatal("dropped after the delay fell below target")
		}
	}
	// A backlog of less than one packet is never dropped from.
	var d codel
	for i := range 1000 {
		if d.drop(50*ms, time.Duration(i+1)*ms, mtu, mtu) {
			t.Fatal("dropped from a queue holding less than one packet")
		}
	}
}

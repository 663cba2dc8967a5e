package sshchan

import (
	"math/rand/v2"
	"testing"
)

// simReceiver returns window the way a receiver of some implementation
// does, for datagrams it consumes in order.
type simReceiver struct {
	charge   int64 // beyond len, per datagram
	window   int64 // granted at open
	early    bool  // also after 3 max packets consumed, as OpenSSH and x/crypto
	bytes    bool  // credits byte ranges that end inside a datagram (Channel.Read)
	debited  int64
	consumed int64 // debited, not yet returned
}

// consume takes a datagram of n bytes and returns what it returns then.
func (r *simReceiver) consume(n int, rng *rand.Rand) uint32 {
	cost := int64(n) + r.charge
	r.debited += cost
	r.consumed += cost
	left := r.window - r.debited
	if !(left < r.window/2 || (r.early && r.consumed > 3*32<<10)) {
		return 0
	}
	c := r.consumed
	if r.bytes {
		// A read that ended inside the datagram: the rest comes with
		// the next adjust.
		c -= int64(rng.IntN(n-1) + 1)
	}
	r.consumed -= c
	r.debited -= c
	return uint32(c)
}

// The charge the sender learns is the receiver's, from its adjusts alone,
// and the window the sender keeps for it is never more than the receiver's
// own, and the same once learnt. Once it is sure, learning stops and lets
// go of the lengths it kept.
func TestPeerWindowLearnsTheCharge(t *testing.T) {
	for _, c := range []struct {
		name  string
		rx    simReceiver
		prior int32
		want  int32
	}{
		{"openssh", simReceiver{charge: 4, early: true}, 4, 4},
		{"openssh/without its version", simReceiver{charge: 4, early: true}, 0, 4},
		{"xcrypto/whole messages", simReceiver{early: true}, 4, 0},
		{"half window", simReceiver{}, 0, 0},
		{"asyncssh", simReceiver{charge: -4}, 0, -4},
		{"byte ranges", simReceiver{early: true, bytes: true}, 0, 0},
		{"byte ranges/openssh version", simReceiver{early: true, bytes: true}, 4, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			rx := c.rx
			rx.window = 2 << 20
			p := newPeerWindow(c.prior)
			view := rx.window // the sender's count of the receiver's window
			var queue []int   // sent, not yet consumed
			var queued int64  // what they will cost the receiver
			for p.sent < 100_000 {
				// Send what the window takes, then consume some.
				for {
					n := 24 + rng.IntN(1500-24)
					if view < int64(p.need(uint32(n))) {
						break
					}
					view -= int64(n) + int64(p.record(uint32(n)))
					queue = append(queue, n)
					queued += int64(n) + rx.charge
				}
				if len(queue) == 0 {
					t.Fatalf("stalled after %d datagrams: the sender counts %d bytes of window, the receiver %d",
						p.sent, view, rx.window-rx.debited)
				}
				for range 1 + rng.IntN(len(queue)) {
					queued -= int64(queue[0]) + rx.charge
					if got := rx.consume(queue[0], rng); got > 0 {
						fix, _ := p.credit(got)
						view += int64(got) + fix
					}
					queue = queue[1:]
				}
				if real := rx.window - rx.debited - queued; view > real {
					t.Fatalf("after %d datagrams the sender counts %d bytes of window, the receiver %d", p.sent, view, real)
				}
			}
			if p.charge != c.want {
				t.Fatalf("charge %d after %d adjusts, want %d", p.charge, p.adjusts, c.want)
			}
			if !p.settled() {
				t.Errorf("charge %d still not settled after %d adjusts", p.charge, p.adjusts)
			}
			if p.learning || p.lens.buf != nil {
				t.Errorf("still learning after %d adjusts, holding %d lengths", p.adjusts, len(p.lens.buf))
			}
			if real := rx.window - rx.debited - queued; view != real && int64(p.charge) == c.rx.charge {
				t.Errorf("the sender counts %d bytes of window, the receiver %d", view, real)
			}
			t.Logf("%d datagrams, %d adjusts, charge len%+d", p.sent, p.adjusts, p.charge)
		})
	}
}

// Datagrams of one size leave the charge ambiguous for a while: 351 of
// 1404 bytes charged len+4 return what 352 charged len do. The sender keeps
// charging the larger until an adjust rules it out.
func TestPeerWindowWaitsOutAmbiguity(t *testing.T) {
	p := newPeerWindow(0)
	for range 1000 {
		p.record(1404)
	}
	if _, changed := p.credit(352 * 1404); changed || p.charge != 4 || p.settled() {
		t.Fatalf("after an adjust both len+4 and len fit: charge %d, settled %v", p.charge, p.settled())
	}
	fix, changed := p.credit(1404)
	if !changed || p.charge != 0 || !p.settled() {
		t.Fatalf("after an adjust only len fits: charge %d, settled %v", p.charge, p.settled())
	}
	if fix != 4*1000 {
		t.Fatalf("gave back %d, want the 4 bytes charged too much on each of 1000 datagrams", fix)
	}
}

// A peer whose adjusts fit len-4 until one fits nothing takes back what
// was given back: its window is then counted in bytes.
func TestPeerWindowTakesBack(t *testing.T) {
	p := newPeerWindow(0)
	for range 10 {
		p.record(100)
	}
	if fix, _ := p.credit(5 * 96); p.charge != -4 || fix != 10*8 {
		t.Fatalf("charge %d, fix %d; want len-4 and 80 given back", p.charge, fix)
	}
	if fix, _ := p.credit(7); p.charge != 0 || fix != -10*4 || !p.settled() {
		t.Fatalf("charge %d, fix %d; want len and 40 taken back", p.charge, fix)
	}
}

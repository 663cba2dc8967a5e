package sshchan

import "math"

// What a receiver charges its window for a tun datagram of len bytes is
// its own business: RFC 4254 counts the bytes of "data", and OpenSSH
// debits and credits len+4 (it counts the string's length word), x/crypto
// len, asyncssh len-4 in point-to-point mode (it strips the address family
// word first). A sender that counts otherwise drifts 4 bytes a datagram
// from its receiver: it overruns an OpenSSH receiver, or loses a len-4
// receiver's window for good and stalls, some 262,000 datagrams into a
// 2 MiB window that is returned at half.
//
// So the sender learns the charge from the receiver's own adjusts. A
// receiver that returns window per datagram has returned, all told,
// S_k + k·d once it has consumed k datagrams whose lengths sum to S_k, d
// being its charge: every candidate d that no total fits is ruled out.
// Until one is left the sender charges the largest still possible, so it
// never sends more than any of them would take. A receiver whose totals
// fit none (x/crypto's Channel.Read credits what one read took, which may
// end inside a message) counts bytes, not datagrams: it gets the charge
// its version string says.

// charges are the per-datagram charges beyond len of the receivers known,
// largest first: OpenSSH, x/crypto, asyncssh.
var charges = [...]int32{4, 0, -4}

// confirmAfter is how many adjusts in a row the one charge left must fit
// before learning stops and its lengths are let go: a receiver that
// credits byte ranges fits one by chance once in hundreds of adjusts, not
// this many times running.
const confirmAfter = 16

// maxLearn bounds the lengths kept while learning: datagrams sent and not
// yet matched to an adjust. A 2 MiB window (OpenSSH's, x/crypto's,
// asyncssh's) holds at most 87,000 of the smallest datagrams. A peer that
// holds more without returning any grants a far larger window; learning
// stops there (said once in the log), with the largest charge still
// possible, which never overruns the peer. If the peer charges less, the
// drift costs it 4 bytes of window a datagram, a stall after a quarter of
// its window's worth of datagrams.
const maxLearn = 1 << 17

// peerWindow is the peer's window as the peer counts it: what it charges
// per datagram, learnt from what it returns.
type peerWindow struct {
	prior    int32 // the charge when no candidate fits: what the version string says
	charge   int32 // what each datagram costs beyond its length now
	learning bool  // some candidate still fits every total

	alive [len(charges)]bool
	k     [len(charges)]uint64 // datagrams candidate i says the peer returned
	v     [len(charges)]uint64 // what returning them credits under candidate i

	lens     lengths // of datagrams base, base+1, … sent-1
	base     uint64
	sent     uint64 // datagrams sent
	returned uint64 // bytes the peer returned
	charged  int64  // what the datagrams sent were charged beyond their lengths

	confirmed int  // adjusts fitted since one candidate was left
	gaveUp    bool // learning stopped at maxLearn with more than one candidate left

	adjusts uint64 // window increases seen (adjusts that came together count once)
	largest uint32 // the largest of them
}

func newPeerWindow(prior int32) peerWindow {
	p := peerWindow{prior: prior, charge: charges[0], learning: true}
	for i := range p.alive {
		p.alive[i] = true
	}
	return p
}

// need is the window the peer must hold for a datagram of n bytes: OpenSSH
// checks len+4, asyncssh len (it strips the family word only after its
// check), so what it then debits is no guide below len.
func (p *peerWindow) need(n uint32) uint32 { return n + uint32(max(p.charge, 0)) }

// record notes a datagram of n bytes about to be sent and returns what it
// costs beyond n.
func (p *peerWindow) record(n uint32) int32 {
	if p.learning {
		if p.lens.len() == maxLearn {
			p.learning, p.gaveUp = false, true // keep the charge: the largest still possible
			p.lens = lengths{}
		} else {
			p.lens.push(n)
		}
	}
	p.sent++
	p.charged += int64(p.charge)
	return p.charge
}

// credit takes c bytes the peer returned. It returns what the window, as
// sendWindow held it, must gain (or, below zero, lose) for the peer's
// count, and whether the charge changed.
func (p *peerWindow) credit(c uint32) (fix int64, changed bool) {
	p.adjusts++
	p.largest = max(p.largest, c)
	p.returned += uint64(c)
	if !p.learning {
		return 0, false
	}
	first := uint64(math.MaxUint64)
	for i, d := range charges {
		if !p.alive[i] {
			continue
		}
		for p.v[i] < p.returned && p.k[i] < p.sent {
			p.v[i] += uint64(max(int64(p.lens.at(p.k[i]-p.base))+int64(d), 0))
			p.k[i]++
		}
		if p.alive[i] = p.v[i] == p.returned; p.alive[i] {
			first = min(first, p.k[i])
		}
	}
	charge, any := p.prior, false
	for i, d := range charges {
		if p.alive[i] && !any {
			charge, any = d, true
		}
	}
	if any {
		p.lens.drop(first - p.base)
		p.base = first
	} else {
		p.learning = false
		p.lens = lengths{}
	}
	if p.settled() {
		if p.confirmed++; p.confirmed >= confirmAfter {
			p.learning = false
			p.lens = lengths{}
		}
	}
	if charge == p.charge {
		return 0, false
	}
	// What the datagrams sent were charged, less what the peer charged.
	fix = p.charged - int64(p.sent)*int64(charge)
	p.charge, p.charged = charge, int64(p.sent)*int64(charge)
	return fix, true
}

// settled reports whether the charge is final: one candidate left, or none.
func (p *peerWindow) settled() bool {
	n := 0
	for _, a := range p.alive {
		if a {
			n++
		}
	}
	return !p.learning || n == 1
}

// fits reports whether some candidate fits every adjust so far: the charge
// is the peer's, not its version's.
func (p *peerWindow) fits() bool {
	for _, a := range p.alive {
		if a {
			return true
		}
	}
	return false
}

// lengths is a queue of datagram lengths in a ring that grows by doubling.
type lengths struct {
	buf        []uint32
	head, size int
}

func (l *lengths) len() int { return l.size }

func (l *lengths) push(n uint32) {
	if l.size == len(l.buf) {
		grown := make([]uint32, max(2*len(l.buf), 1024))
		for i := range l.size {
			grown[i] = l.buf[(l.head+i)&(len(l.buf)-1)]
		}
		l.buf, l.head = grown, 0
	}
	l.buf[(l.head+l.size)&(len(l.buf)-1)] = n
	l.size++
}

func (l *lengths) at(i uint64) uint32 { return l.buf[(l.head+int(i))&(len(l.buf)-1)] }

func (l *lengths) drop(n uint64) {
	l.head = (l.head + int(n)) & (len(l.buf) - 1)
	l.size -= int(n)
}

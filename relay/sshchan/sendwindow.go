package sshchan

import (
	"math"
	"time"
)

// capPatience is how long a write may wait on the in-flight cap, with no
// adjust from the peer, before the cap is lifted for the channel: RFC 4254
// leaves when to return window to the receiver, and one that returns it
// only once half its window is gone (asyncssh) never answers a sender that
// stops at 512 KiB. A few round trips, or this, whichever is longer: an
// OpenSSH receiver that still consumes returns window every 96 KiB.
const capPatience = 50 * time.Millisecond

// sendWindow is what writeDatagram knows beyond x/crypto's count of the
// peer's window: the peer's own count (peerWindow) and the in-flight cap.
// It is guarded by the window's lock. sshvpn is the channel's only writer,
// so between two of its writes x/crypto's count grows only by the peer's
// adjusts: observe sees each one, and what it answered.
type sendWindow struct {
	peerWindow
	initial uint32 // the window the peer granted at open
	expect  uint32 // x/crypto's count as our last write left it
	owed    uint64 // window taken back when the charge rose, not yet paid out of the count

	// early: the peer is known to return window long before its window
	// is half gone (OpenSSH: every 3 max packets; x/crypto, so sshvpn:
	// the same), so the cap stands without proof from its adjusts.
	early bool
	// lifted: the peer let a write wait on the cap, which is off until
	// restoreAfter adjusts in a row, each at most half the cap, show the
	// peer returning window early again (smallRun counts them): a
	// receiver that was only slow for a moment gets its cap back, one
	// that waits for half its window does not.
	lifted    bool
	liftLimit int64 // the cap when it was lifted
	smallRun  int
	patience  time.Duration // capPatience, or what a test sets
	capWaits  uint64        // writes that waited on the cap
	// The write waiting on the cap: since when the peer has been silent,
	// counted in adjusts, and until when it may stay so.
	capArmed   bool
	capAdjusts uint64
	capUntil   time.Time

	events event // to log once the lock is released
}

// event is something the channel logs about the peer's window.
type event uint8

const (
	chargeLearnt event = 1 << iota // settled, or changed since
	capLifted
	capRestored
	learnGaveUp
)

// restoreAfter is how many small adjusts in a row put a lifted cap back:
// OpenSSH returns window every 96 KiB, so four are under half a megabyte
// of traffic, and a receiver that returns it only at half its window sends
// none that small.
const restoreAfter = 4

// verdict is what a datagram must do now.
type verdict int

const (
	send       verdict = iota
	waitWindow         // for the peer's window
	waitCap            // for the cap, until the peer adjusts or capUntil
	armCap             // the same, first: capUntil is new
)

func newSendWindow(initial uint32, prior int32, early bool) sendWindow {
	return sendWindow{peerWindow: newPeerWindow(prior), initial: initial, expect: initial, early: early, patience: capPatience}
}

// observe takes win, x/crypto's count of the peer's window, and returns it
// as the peer counts it: what it gained since our last write is the peer's
// adjusts, which teach the charge; a charge learnt lower gives back what
// the datagrams sent were charged too much, a higher one takes it back.
func (s *sendWindow) observe(win uint32) uint32 {
	if win > s.expect {
		if s.lifted {
			s.judgeLifted(win - s.expect)
		}
		was := s.settled()
		fix, changed := s.credit(win - s.expect)
		if changed || !was && s.settled() {
			s.events |= chargeLearnt
		}
		switch {
		case fix > 0:
			win = uint32(min(int64(win)+fix, math.MaxUint32))
		case fix < 0:
			s.owed += uint64(-fix)
		}
	}
	if pay := min(uint64(win), s.owed); pay > 0 {
		win -= uint32(pay)
		s.owed -= pay
	}
	s.expect = win
	return win
}

// admit decides on a datagram of n bytes when the peer's window is win and
// the cap limit (0 for none), on a path of round trip rtt.
func (s *sendWindow) admit(n, win uint32, limit int64, rtt time.Duration) verdict {
	need := s.need(n)
	if s.owed > 0 || win < need {
		s.capArmed = false
		return waitWindow
	}
	// In flight after the datagram: initial - (win - need).
	if !s.capped(limit) || int64(s.initial)-int64(win)+int64(need) <= limit {
		s.capArmed = false
		return send
	}
	now := time.Now()
	if !s.capArmed || s.capAdjusts != s.adjusts {
		s.capArmed, s.capAdjusts, s.capUntil = true, s.adjusts, now.Add(max(s.patience, 4*rtt))
		s.capWaits++
		return armCap
	}
	if now.Before(s.capUntil) {
		return waitCap
	}
	s.lifted, s.liftLimit, s.capArmed, s.smallRun = true, limit, false, 0
	s.events |= capLifted
	return send
}

// judgeLifted takes one adjust of a peer whose cap is lifted, and puts the
// cap back once restoreAfter adjusts in a row were small.
func (s *sendWindow) judgeLifted(adjust uint32) {
	if 2*int64(adjust) <= s.liftLimit {
		s.smallRun++
	} else {
		s.smallRun = 0
	}
	if s.smallRun >= restoreAfter {
		s.lifted, s.smallRun = false, 0
		s.events |= capRestored
	}
}

// capped reports whether the cap holds writes back: it is set and smaller
// than the window, and the peer returns window early, known by its version
// or shown by its adjusts (the largest one at most half the cap: a peer
// that adjusts at half a 2 MiB window is never waited for).
func (s *sendWindow) capped(limit int64) bool {
	if limit <= 0 || limit >= int64(s.initial) || s.lifted {
		return false
	}
	return s.early || (s.adjusts > 0 && 2*int64(s.largest) <= limit)
}

// sent charges a datagram of n bytes, admitted, to win, the peer's window,
// and returns the count x/crypto must hold for its Write: n more than the
// peer's after that Write.
func (s *sendWindow) sent(n, win uint32) uint32 {
	learning := s.learning
	win = uint32(int64(win) - int64(s.record(n)))
	if learning && s.gaveUp {
		s.events |= learnGaveUp
	}
	s.expect = win - n
	return win
}

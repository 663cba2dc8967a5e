package sshchan

import "testing"

// xcryptoSend plays writeDatagram and x/crypto's Write for a datagram of n
// bytes: admit, charge, and x/crypto's own debit of n. It returns x/crypto's
// count after the write.
func xcryptoSend(t *testing.T, s *sendWindow, win, n uint32) uint32 {
	t.Helper()
	win = s.observe(win)
	if v := s.admit(n, win, 0, 0); v != send {
		t.Fatalf("a datagram of %d bytes with %d of window: verdict %d, want send", n, win, v)
	}
	return s.sent(n, win) - n
}

// Once the charge is learnt lower than the one charged, the window is the
// peer's to the byte: what each datagram was charged too much comes back.
func TestSendWindowGivesBack(t *testing.T) {
	const w = 2 << 20
	s := newSendWindow(w, 0, false)
	win := uint32(w)
	for range 100 {
		win = xcryptoSend(t, &s, win, 1000)
	}
	if want := uint32(w - 100*1004); win != want {
		t.Fatalf("before any adjust the sender counts %d, want %d: len+4 for each", win, want)
	}
	// A len-4 receiver returns what the 100 cost it.
	win += 100 * 996
	if got := s.observe(win); got != w || s.charge != -4 {
		t.Fatalf("after a len-4 receiver returned everything: window %d, charge %d; want all %d and -4", got, s.charge, w)
	}
}

// A peer whose adjusts stop fitting a lower charge takes back what was
// given back, out of the window it returns before anything more is sent.
func TestSendWindowTakesBack(t *testing.T) {
	const w = 1000
	s := newSendWindow(w, 0, false)
	win := uint32(w)
	for range 9 {
		win = xcryptoSend(t, &s, win, 100)
	}
	win += 5 * 96 // fits len-4 alone: 9 × 8 given back
	win = s.observe(win)
	if want := uint32(w - 9*96 + 5*96); win != want || s.charge != -4 {
		t.Fatalf("window %d, charge %d; want %d and -4", win, s.charge, want)
	}
	for range 6 {
		win = xcryptoSend(t, &s, win, 100)
	}
	// 15 datagrams sent, 5 returned: 7 more bytes fit no charge. The peer
	// counts bytes, so 15 × 4 are taken back: more than the window holds.
	win += 7
	win = s.observe(win)
	if win != 0 || s.owed != 15*4-(w-15*96+5*96+7) || s.charge != 0 {
		t.Fatalf("window %d, owed %d, charge %d; want 0, %d and len", win, s.owed, s.charge, 15*4-(w-15*96+5*96+7))
	}
	if v := s.admit(30, win, 0, 0); v != waitWindow {
		t.Fatalf("verdict %d with window owed, want waitWindow", v)
	}
	if got, want := s.observe(win+300), uint32(w-15*100+5*96+7+300); got != want || s.owed != 0 {
		t.Fatalf("window %d, owed %d after the next adjust; want the peer's %d and nothing owed", got, s.owed, want)
	}
}

// A write held by the cap waits as long as the peer keeps adjusting; only
// a patience without any adjust lifts the cap.
func TestSendWindowCapPatience(t *testing.T) {
	const w, limit = 2 << 20, 512 << 10
	s := newSendWindow(w, 4, true)
	s.patience = 0 // every wait outlasts it
	win := uint32(w)
	for {
		win = s.observe(win)
		v := s.admit(1400, win, limit, 0)
		if v != send {
			if v != armCap {
				t.Fatalf("verdict %d at the cap, want armCap", v)
			}
			break
		}
		win = s.sent(1400, win) - 1400
	}
	win = s.observe(win + 100) // an adjust, yet still at the cap
	if v := s.admit(1400, win, limit, 0); v != armCap {
		t.Fatalf("verdict %d after an adjust, want armCap: the patience starts again", v)
	}
	if v := s.admit(1400, win, limit, 0); v != send || !s.lifted {
		t.Fatalf("verdict %d, lifted %v after a patience without adjusts; want send and lifted", v, s.lifted)
	}
	win = s.sent(1400, win) - 1400
	// A receiver that returns window only at half its window stays uncapped;
	// one whose adjusts are small again, restoreAfter in a row, is capped.
	win = s.observe(win + limit)
	for i := range restoreAfter - 1 {
		win = s.observe(win + 96<<10)
		if !s.lifted {
			t.Fatalf("the cap came back after %d small adjusts, want %d", i+1, restoreAfter)
		}
	}
	win = s.observe(win + limit) // a large one: the run starts again
	for range restoreAfter - 1 {
		win = s.observe(win + 96<<10)
	}
	if !s.lifted {
		t.Fatal("the cap came back after a run broken by a large adjust")
	}
	s.observe(win + 96<<10)
	if s.lifted || s.events&capRestored == 0 {
		t.Fatalf("lifted %v, events %b after %d small adjusts in a row: want the cap back, and said", s.lifted, s.events, restoreAfter)
	}
	if !s.capped(limit) {
		t.Fatal("the cap does not hold writes back once it is back")
	}
}

// A peer that returns no window for more datagrams than learning keeps
// (maxLearn) leaves the charge at the most any peer takes, so that it is
// never overrun, and that is said once.
func TestSendWindowLearningGivesUp(t *testing.T) {
	s := newSendWindow(1<<31, 0, false)
	win := uint32(1 << 31)
	for range maxLearn {
		win = xcryptoSend(t, &s, win, 20)
	}
	if !s.learning || s.events&learnGaveUp != 0 {
		t.Fatalf("learning %v, events %b after %d datagrams: want learning on, nothing said", s.learning, s.events, maxLearn)
	}
	win = xcryptoSend(t, &s, win, 20)
	if s.learning || s.charge != 4 || s.events&learnGaveUp == 0 {
		t.Fatalf("learning %v, charge %d, events %b past maxLearn: want learning off at len+4, and said", s.learning, s.charge, s.events)
	}
	s.events = 0
	xcryptoSend(t, &s, win, 20)
	if s.events&learnGaveUp != 0 {
		t.Fatal("giving up was said twice")
	}
}

package reconnect

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Probe asks Run's goroutine, the one that owns the Client's state, to
// answer, and says whether it is stuck: a service watchdog's liveness
// check. Run answers wherever it waits (on a connection that is up, and
// between dials), so an answer proves that goroutine is not stuck and
// still hears about losses. Where it works instead (a dial, the tunnel's
// opening, the device's setup), it cannot answer; there each step has a
// bound, AttemptWithin for a connection attempt and none beyond Probe's
// own wait for a hook (OnState, Up, NoTunnel, SkipTunnel), and Probe
// fails only once the step has run past it. Between dials Probe also
// fails when the next dial is long overdue.
//
// Probe waits for the answer until ctx ends; give it less than the
// caller's own deadline. Before Run starts and after it returned there
// is nothing to ask, and Probe returns nil.
func (c *Client) Probe(ctx context.Context) error {
	l := &c.loop
	if s := l.snapshot(); !s.running || s.within() {
		return nil
	}
	select {
	case l.probes() <- struct{}{}:
		// Answered while waiting; between dials, that wait must end.
		if s := l.snapshot(); !s.due.IsZero() && time.Since(s.due) > overdue {
			return fmt.Errorf("reconnect: the next dial was due %v ago and has not begun", time.Since(s.due).Round(time.Millisecond))
		}
		return nil
	case <-ctx.Done():
	}
	s := l.snapshot()
	if !s.running || s.within() {
		return nil // it moved on to a step, or ended, while we asked
	}
	if s.step == "" {
		return fmt.Errorf("reconnect: Run did not answer within %v while waiting", s.age().Round(time.Millisecond))
	}
	return fmt.Errorf("reconnect: Run has been in %s for %v, longer than its bound of %v",
		s.step, s.age().Round(time.Millisecond), s.limit)
}

// AttemptWithin's default: dial, tunnel open and configuration, device
// setup.
const defaultAttemptWithin = 2 * time.Minute

// overdue is how late the next dial may begin before Probe calls the
// wait stuck: a timer that fires late on a loaded machine is not.
const overdue = 5 * time.Second

// loop is what Probe knows of Run's goroutine: the step it is in, since
// when and for how long it may be, and, while it waits, when the next
// dial is due.
type loop struct {
	once sync.Once
	ch   chan struct{} // unbuffered: a send is an answer from Run

	mu sync.Mutex
	s  stepState
}

type stepState struct {
	running bool
	step    string // "" while Run waits and answers probes
	since   time.Time
	limit   time.Duration
	due     time.Time // between dials: when the next is due
}

// within says the step is one Run cannot answer from and is still inside
// its bound.
func (s stepState) within() bool { return s.step != "" && s.age() < s.limit }

func (s stepState) age() time.Duration { return time.Since(s.since) }

func (l *loop) probes() chan struct{} {
	l.once.Do(func() { l.ch = make(chan struct{}) })
	return l.ch
}

func (l *loop) snapshot() stepState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s
}

func (l *loop) set(s stepState) (prev stepState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, l.s = l.s, s
	return prev
}

// begin notes Run starting a step it cannot answer from, for at most
// limit.
func (l *loop) begin(step string, limit time.Duration) {
	l.set(stepState{running: true, step: step, since: time.Now(), limit: limit})
}

// wait notes Run waiting, answering probes; due is when the wait ends
// on its own (zero: when something happens).
func (l *loop) wait(due time.Time) {
	l.set(stepState{running: true, since: time.Now(), due: due})
}

// end notes Run returned.
func (l *loop) end() { l.set(stepState{}) }

// hook runs one of the Client's hooks as a step of its own: a hook must
// return at once, so it gets no bound beyond Probe's wait. The step it
// interrupted resumes with its own start and bound.
func (l *loop) hook(name string, f func()) {
	prev := l.set(stepState{running: true, step: "the " + name + " hook", since: time.Now()})
	defer l.set(prev)
	f()
}

package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// undoLog makes changes to the host and records how to reverse each one, so that
// Revert puts the host back as it was: on exit, on error and on signal. With
// a Journal it also writes each change to disk before making it, so that a
// process killed outright is undone by the next start (Recover).
//
// Each method changes one thing and, only if it changed something, records
// the reversal before returning. A change that was already in place (a link
// already up, a sysctl already at the value) is not recorded, so Revert never
// undoes what sshvpn did not do.
//
// The zero value is ready and logs to slog.Default(); newUndo injects a
// logger. All methods are safe for concurrent use and run one at a time.
// Changes act on the network namespace of the calling thread, and so does
// Revert: call it from the namespace the changes were made in.
type undoLog struct {
	mu      sync.Mutex
	logger  *slog.Logger
	journal *Journal // nil: in memory only
	steps   []step
	nat     natState
}

// step is one recorded change.
type step struct {
	c   change
	seq uint64 // its journal entry, 0 without a journal
}

// newUndo returns an empty undoLog that logs to logger and keeps no journal.
func newUndo(logger *slog.Logger) *undoLog {
	return &undoLog{logger: logger}
}

func (u *undoLog) log() *slog.Logger {
	if u.logger == nil {
		return slog.Default()
	}
	return u.logger
}

// apply makes change c with do, journalling it first; the caller holds
// u.mu. A change that fails is struck from the journal again; one that was
// made is recorded for Revert.
func (u *undoLog) apply(c change, do func() error) error {
	var seq uint64
	if u.journal != nil {
		var err error
		if seq, err = u.journal.intend(c); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	if err := do(); err != nil {
		if u.journal != nil {
			u.journal.done(seq)
		}
		return err
	}
	u.steps = append(u.steps, step{c, seq})
	u.log().Debug("host change", "change", c.String())
	return nil
}

// Revert undoes every recorded change, newest first. It keeps going when one
// fails and returns all failures joined, each naming the change; those stay
// in the journal for Recover to try again. A change that is already gone,
// such as an address on a device that has since been deleted, counts as
// undone. Revert forgets what it ran, so a second call does nothing.
func (u *undoLog) Revert() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for i := len(u.steps) - 1; i >= 0; i-- {
		s := u.steps[i]
		if err := s.c.revert(u.log()); err != nil {
			u.log().Warn("undo host change failed", "change", s.c.String(), "err", err)
			errs = append(errs, fmt.Errorf("could not undo %s: %w", s.c, err))
			continue
		}
		if u.journal != nil {
			u.journal.done(s.seq)
		}
		u.log().Debug("undid host change", "change", s.c.String())
	}
	u.steps = nil
	u.nat = natState{}
	return errors.Join(errs...)
}

// Len is the number of changes Revert would undo.
func (u *undoLog) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.steps)
}

// natState is what Masquerade remembers between calls.
type natState struct {
	checked map[uint8]bool // nftables families whose stale table was looked for
	seq     int            // numbers the rules this undoLog adds, for their comments
}

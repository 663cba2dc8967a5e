package kernel

import (
	"errors"
	"log/slog"
	"sync"
)

// Undo makes changes to the host and records how to reverse each one, so that
// Revert puts the host back as it was: on exit, on error and on signal.
//
// Each method changes one thing and, only if it changed something, records
// the reversal before returning. A change that was already in place (a link
// already up, a sysctl already at the value) is not recorded, so Revert never
// undoes what sshvpn did not do.
//
// The zero value is ready and logs to slog.Default(); NewUndo injects a
// logger. All methods are safe for concurrent use and run one at a time.
// Changes act on the network namespace of the calling thread, and so does
// Revert: call it from the namespace the changes were made in.
type Undo struct {
	mu     sync.Mutex
	logger *slog.Logger
	steps  []step
	nat    natState
}

// step is one recorded change and its reversal.
type step struct {
	what string
	undo func() error
}

// NewUndo returns an empty Undo that logs to logger.
func NewUndo(logger *slog.Logger) *Undo {
	return &Undo{logger: logger}
}

func (u *Undo) log() *slog.Logger {
	if u.logger == nil {
		return slog.Default()
	}
	return u.logger
}

// record appends a reversal; the caller holds u.mu.
func (u *Undo) record(what string, undo func() error) {
	u.steps = append(u.steps, step{what, undo})
	u.log().Debug("host change", "change", what)
}

// Revert undoes every recorded change, newest first. It keeps going when one
// fails and returns all failures joined. A change that is already gone, such
// as an address on a device that has since been deleted, counts as undone.
// Revert forgets what it ran, so a second call does nothing.
func (u *Undo) Revert() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for i := len(u.steps) - 1; i >= 0; i-- {
		s := u.steps[i]
		if err := s.undo(); err != nil {
			u.log().Warn("undo host change failed", "change", s.what, "err", err)
			errs = append(errs, err)
			continue
		}
		u.log().Debug("undid host change", "change", s.what)
	}
	u.steps = nil
	u.nat = natState{}
	return errors.Join(errs...)
}

// Len is the number of changes Revert would undo.
func (u *Undo) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.steps)
}

// natState is what Masquerade remembers between calls.
type natState struct {
	checked map[uint8]bool // nftables families whose stale table was looked for
	seq     int            // numbers the rules this Undo adds, for their comments
}

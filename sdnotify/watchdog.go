package sdnotify

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// WatchdogPeriod is how often WATCHDOG=1 is due: half of the manager's
// WatchdogSec=, or 0 when it set none for this process.
func (n *Notifier) WatchdogPeriod() time.Duration {
	if n == nil {
		return 0
	}
	return time.Duration(n.watchdog) * time.Microsecond
}

// Watchdog sends WATCHDOG=1 every WatchdogPeriod until ctx ends or stop is
// called, but only while alive passes. It does nothing when the manager
// set no watchdog.
//
// A bare ticker would prove only that one goroutine of the process still
// runs, which is true of a process whose every other goroutine is stuck.
// So each keepalive is earned: alive is a check of the caller's main loop
// (take the lock its work takes, ask it to answer), run once per period
// with the period as its deadline. A check that fails sends nothing that
// round; a check that does not return stops the keepalives until it does,
// and after WatchdogSec the manager kills the process and, with
// Restart=on-failure, starts a fresh one. A WATCHDOG=1 thus proves what
// alive proves, within one period, plus that timers still fire.
func (n *Notifier) Watchdog(ctx context.Context, alive func(context.Context) error, log *slog.Logger) (stop func()) {
	period := n.WatchdogPeriod()
	if period == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.watch(ctx, period, alive, log)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (n *Notifier) watch(ctx context.Context, period time.Duration, alive func(context.Context) error, log *slog.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		err := check(ctx, period, alive, log)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = n.Send("WATCHDOG=1")
		}
		if err != nil {
			log.Warn("watchdog: no keepalive sent to the service manager this round", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check runs alive with a deadline of one period. When alive overruns
// it, check waits on for it (or for ctx): one stuck check at a time, and
// no keepalive while it is stuck.
func check(ctx context.Context, period time.Duration, alive func(context.Context) error, log *slog.Logger) error {
	cctx, cancel := context.WithTimeout(ctx, period)
	defer cancel()
	res := make(chan error, 1)
	start := time.Now()
	go func() { res <- alive(cctx) }()
	select {
	case err := <-res:
		if err != nil {
			return fmt.Errorf("liveness check: %w", err)
		}
		return nil
	case <-cctx.Done():
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	log.Error("watchdog: the liveness check has not returned; no keepalives until it does, and the service manager will restart the process",
		"waited", period)
	select {
	case <-res:
		return fmt.Errorf("liveness check took %v, longer than the %v period", time.Since(start).Round(time.Millisecond), period)
	case <-ctx.Done():
		return ctx.Err()
	}
}

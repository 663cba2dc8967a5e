package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/reconnect"
	"github.com/sshvpn/sshvpn/sdnotify"
)

// serviceNotifier is the line to systemd when sshvpn runs as a
// Type=notify service, nil otherwise (every call on nil does nothing).
func serviceNotifier(log *slog.Logger) *sdnotify.Notifier {
	n, err := sdnotify.New()
	if err != nil {
		log.Warn("not telling the service manager how sshvpn is doing", "err", err)
	}
	return n
}

// loadPoll is how often serve's STATUS= line is brought up to date: the
// line is for a person reading systemctl status, and Load takes the
// server's lock, so once a second is plenty.
const loadPoll = time.Second

// notifyGateway tells systemd that the gateway is ready (its port accepts
// and its backend is up: call it just before Serve), keeps STATUS= at its
// connections and tunnels, sends WATCHDOG=1 while the server's lock is
// free, and STOPPING=1 as soon as ctx ends, before the teardown. stop
// ends it all.
//
// The watchdog's check is gateway.Server.Load, which takes the lock that
// every accept, login and channel open takes. A WATCHDOG=1 thus proves,
// within one period, that no goroutine has held that lock for a period
// or more (a deadlock there would refuse every new login and tunnel while
// the old ones carried on) and that the process still runs goroutines
// and fires timers. It does not prove that the accept loop is calling
// Accept, nor that a tunnel moves packets, nor that the backend (the
// netstack or the kernel device) still answers: those fail on their own
// and are logged, and end the sessions they break, not the process.
func notifyGateway(ctx context.Context, n *sdnotify.Notifier, srv *gateway.Server, log *slog.Logger) (stop func()) {
	if n == nil {
		return func() {}
	}
	last := srv.Load()
	n.Send("READY=1", "STATUS="+loadText(last))
	stopWatchdog := n.Watchdog(ctx, func(context.Context) error {
		srv.Load()
		return nil
	}, log)
	stopStopping := afterDone(ctx, func() { n.Stopping() })
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(loadPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if l := srv.Load(); l != last {
				last = l
				n.Status(loadText(l))
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		stopWatchdog()
		stopStopping()
	}
}

// afterDone runs f once ctx ends, as context.AfterFunc does, but its stop
// waits for an f that has begun: a process that exits as soon as stop
// returns must not lose the message f sends.
func afterDone(ctx context.Context, f func()) (stop func()) {
	ran := make(chan struct{})
	cancel := context.AfterFunc(ctx, func() {
		defer close(ran)
		f()
	})
	return func() {
		if !cancel() {
			<-ran
		}
	}
}

// loadText is the gateway's STATUS= line: "2 connections, 3 tunnels".
func loadText(l gateway.Load) string {
	return plural(l.Connections, "connection") + ", " + plural(l.Tunnels, "tunnel")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// clientNotifier tells systemd how sshvpn connect is doing.
//
// READY=1 means the client is running on its own and wants nothing more
// at start-up: its first tunnel (with the proxies, its first connection)
// is up, or, with --persist, its first attempt failed and it keeps
// retrying, which STATUS= says with the reason and when the next try is.
// Without --persist a first failure ends the process, so READY waits for
// the tunnel. So a unit with --persist never holds up the boot, nor is it
// killed and restarted for a server that is down when it starts.
//
// WATCHDOG=1 (see watchdog) means, within one period, that the client's
// supervising goroutine answered and, while a connection is up, that the
// server answered a keepalive lately enough.
type clientNotifier struct {
	n       *sdnotify.Notifier
	server  string // host:port, as the status line names it
	persist bool   // READY=1 after the first failed attempt too

	// client is the supervisor the watchdog probes and the status line
	// asks when the next try is; set before either runs.
	client *reconnect.Client
	// keepAliveWithin is how long a connection that is up may go without
	// a keepalive's answer before keepalive.Watch must have given up on
	// it: ServerAliveCountMax+1 intervals (the last answer may come an
	// interval before the request that goes unanswered). 0: not watched.
	keepAliveWithin time.Duration

	ready    sync.Once
	answered atomic.Int64 // time.Now().UnixNano() of the last keepalive's answer
}

// up is Client.Up's part: the service is ready.
func (c *clientNotifier) up() { c.ready.Do(func() { c.n.Ready() }) }

// change is the client's state change: "connecting", "up" or
// "reconnecting", with why when a dial failed or a connection was lost.
func (c *clientNotifier) change(state string, why error) {
	line := state + " " + c.server
	if state == reconnect.Up {
		line = "tunnel up to " + c.server
	}
	if why != nil {
		line += ": " + why.Error()
		if next := c.nextTry(); next >= 0 {
			line += fmt.Sprintf(", next try in %v", next)
		}
	}
	if why == nil || !c.persist {
		c.n.Status(line)
		return
	}
	// Running and retrying on its own: ready, in the same message as the
	// reason, so systemctl never shows READY without it.
	sent := false
	c.ready.Do(func() {
		c.n.Send("READY=1", "STATUS="+strings.ReplaceAll(line, "\n", " "))
		sent = true
	})
	if !sent {
		c.n.Status(line)
	}
}

// nextTry is how long until the client's next dial, in whole seconds;
// -1 when none is due.
func (c *clientNotifier) nextTry() time.Duration {
	if c.client == nil {
		return -1
	}
	next := c.client.State().NextTry
	if next.IsZero() {
		return -1
	}
	return max(time.Until(next), 0).Round(time.Second)
}

// keptAlive is keepalive.Watch's part: the server answered.
func (c *clientNotifier) keptAlive(time.Duration) { c.answered.Store(time.Now().UnixNano()) }

// watchdog sends WATCHDOG=1 each period while alive passes. A bare ticker
// would prove only that one goroutine runs; this one is earned.
func (c *clientNotifier) watchdog(ctx context.Context, log *slog.Logger) (stop func()) {
	return c.n.Watchdog(ctx, c.alive, log)
}

// alive is the watchdog's check, which fails when:
//   - the client's supervising goroutine (reconnect.Client.Run) did not
//     answer within half the period while it waits on a connection or
//     between dials, or has spent longer than its bound in one step (a
//     connection attempt, a hook): it would no longer notice a lost
//     connection, nor reconnect;
//   - its next dial is long overdue;
//   - a connection is up but no keepalive was answered for longer than
//     keepalive.Watch takes to give up on a dead server, plus a period:
//     by then Watch should have closed it and the supervisor moved on to
//     reconnecting, so the keepalives or the supervisor are stuck.
//
// It does not find a tunnel that no longer carries packets over a live
// connection (the Pump's failures end the Run), nor a proxy's listener
// that stopped accepting.
func (c *clientNotifier) alive(ctx context.Context) error {
	period := c.n.WatchdogPeriod()
	if d, ok := ctx.Deadline(); ok {
		// Half for the answer: an answer at the deadline would be taken
		// for a check that never returned.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Until(d)/2)
		defer cancel()
	}
	if err := c.client.Probe(ctx); err != nil {
		return err
	}
	return c.keepAliveFresh(c.client.State(), time.Now(), period)
}

// keepAliveFresh fails when s is up and the server's last keepalive
// answer (or, before the first, the connection's start) is older than
// keepAliveWithin plus one period.
func (c *clientNotifier) keepAliveFresh(s reconnect.State, now time.Time, period time.Duration) error {
	if s.Phase != reconnect.Up || c.keepAliveWithin == 0 {
		return nil
	}
	last := s.Since
	if a := time.Unix(0, c.answered.Load()); a.After(last) {
		last = a
	}
	if silent := now.Sub(last); silent > c.keepAliveWithin+period {
		return fmt.Errorf("connection up but no keepalive answered for %v, and none given up on after %v", silent.Round(time.Second), c.keepAliveWithin)
	}
	return nil
}

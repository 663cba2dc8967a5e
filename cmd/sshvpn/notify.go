package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sshvpn/sshvpn/relay/gateway"
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
// free (gateway.Server.Load), and STOPPING=1 as soon as ctx ends, before
// the teardown. stop ends it all.
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

// clientNotifier tells systemd how sshvpn connect is doing: READY=1 once
// the first tunnel (or, for the proxies, the first connection) is up, and
// a STATUS= line for each change of state with its reason.
type clientNotifier struct {
	n      *sdnotify.Notifier
	server string // host:port, as the status line names it

	mu    sync.Mutex
	state string
}

// up is Client.Up's part: the service is ready.
func (c *clientNotifier) up() { c.n.Ready() }

// change is the client's state change: "connecting", "up" or
// "reconnecting", with why for the last.
func (c *clientNotifier) change(state string, why error) {
	c.mu.Lock()
	c.state = state
	c.mu.Unlock()
	line := state + " " + c.server
	if state == "up" {
		line = "tunnel up to " + c.server
	}
	if why != nil {
		line += ": " + why.Error()
	}
	c.n.Status(line)
}

// watchdog sends WATCHDOG=1 while the state lock is free: the client's
// own keepalives find a dead server, and reconnect; this finds a process
// that no longer runs its goroutines or is stuck holding that lock.
func (c *clientNotifier) watchdog(ctx context.Context, log *slog.Logger) (stop func()) {
	return c.n.Watchdog(ctx, func(context.Context) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		return nil
	}, log)
}

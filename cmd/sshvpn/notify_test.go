package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/reconnect"
	"github.com/sshvpn/sshvpn/sdnotify"
)

// manager is systemd's end of the notify socket.
type manager struct{ conn *net.UnixConn }

// newManager listens on a socket of the test's own and points a Notifier
// at it, with a watchdog of the given period (0: none), as systemd's
// environment would.
func newManager(t *testing.T, period time.Duration) (*manager, *sdnotify.Notifier) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", socket)
	if period > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(2*period.Microseconds(), 10))
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	}
	n, err := sdnotify.New()
	if err != nil {
		t.Fatal(err)
	}
	return &manager{conn}, n
}

// read returns the next message, or "" when none comes within wait.
func (m *manager) read(wait time.Duration) string {
	buf := make([]byte, 4096)
	m.conn.SetReadDeadline(time.Now().Add(wait))
	k, err := m.conn.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:k])
}

// next returns the next message, failing the test when none comes.
func (m *manager) next(t *testing.T) string {
	t.Helper()
	msg := m.read(2 * time.Second)
	if msg == "" {
		t.Fatal("no message from sshvpn")
	}
	return msg
}

// keepalives counts the WATCHDOG=1 messages that come within d.
func (m *manager) keepalives(d time.Duration) int {
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		if msg := m.read(time.Until(end)); msg == "WATCHDOG=1\n" {
			n++
		}
	}
	return n
}

var refused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

// retryingClient is connect's client toward a server that refuses every
// dial, with --persist; onState runs after the notifier heard the change.
func retryingClient(service *clientNotifier, onState func(string, error)) *reconnect.Client {
	c := &reconnect.Client{
		Dial:      func(context.Context) (*ssh.Client, error) { return nil, refused },
		Retryable: func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) },
		Persist:   true,
		Mode:      relay.PointToPoint, Unit: relay.AnyUnit,
		OnState: func(state string, why error) {
			service.change(state, why)
			if onState != nil {
				onState(state, why)
			}
		},
		Log: slog.New(slog.DiscardHandler),
	}
	service.client = c
	return c
}

func TestClientNotifierStatus(t *testing.T) {
	m, n := newManager(t, 0)
	c := &clientNotifier{n: n, server: "gw.example:22"}
	c.change("connecting", nil)
	if got := m.next(t); got != "STATUS=connecting gw.example:22\n" {
		t.Errorf("connecting: %q", got)
	}
	c.change("connecting", refused)
	if got := m.next(t); got != "STATUS=connecting gw.example:22: "+refused.Error()+"\n" {
		t.Errorf("a first failure without --persist: %q; want no READY (the process is about to exit)", got)
	}
	c.up()
	if got := m.next(t); got != "READY=1\n" {
		t.Errorf("up: %q", got)
	}
	c.change("up", nil)
	if got := m.next(t); got != "STATUS=tunnel up to gw.example:22\n" {
		t.Errorf("up: %q", got)
	}
	c.change("reconnecting", net.ErrClosed)
	if got := m.next(t); got != "STATUS=reconnecting gw.example:22: "+net.ErrClosed.Error()+"\n" {
		t.Errorf("reconnecting: %q", got)
	}
	c.up()
	if got := m.read(100 * time.Millisecond); got != "" {
		t.Errorf("a second tunnel up sent %q; READY=1 goes once", got)
	}
}

// With --persist, a client whose server is down when it starts is ready
// once its first attempt failed: it runs and retries, and STATUS= says
// why and when the next try is. It is not ready before that attempt.
func TestClientReadyAfterFirstFailureWithPersist(t *testing.T) {
	m, n := newManager(t, 0)
	service := &clientNotifier{n: n, server: "gw.example:22", persist: true}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- retryingClient(service, nil).Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	if got := m.next(t); got != "STATUS=connecting gw.example:22\n" {
		t.Errorf("before the first dial: %q, want connecting and no READY", got)
	}
	want := regexp.MustCompile(`^READY=1\nSTATUS=connecting gw\.example:22: ` + regexp.QuoteMeta(refused.Error()) + `, next try in [01]s\n$`)
	if got := m.next(t); !want.MatchString(got) {
		t.Errorf("after the first failure: %q, want %v", got, want)
	}
	got := m.next(t)
	if !strings.HasPrefix(got, "STATUS=connecting gw.example:22: ") || !strings.Contains(got, ", next try in ") {
		t.Errorf("after the second failure: %q, want STATUS= alone with the reason and the next try", got)
	}
}

// WATCHDOG=1 goes only while the client's supervisor answers: a hook that
// never returns stops it, and it comes back once the hook returns.
func TestClientWatchdogNeedsTheSupervisor(t *testing.T) {
	const period = 200 * time.Millisecond
	m, n := newManager(t, period)
	service := &clientNotifier{n: n, server: "gw.example:22", persist: true}
	stuck, release := make(chan struct{}), make(chan struct{})
	failures := 0
	client := retryingClient(service, func(_ string, why error) {
		if why == nil {
			return
		}
		if failures++; failures == 3 {
			close(stuck)
			<-release
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	stop := service.watchdog(ctx, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		stop()
	}()
	if k := m.keepalives(5 * period); k < 3 {
		t.Errorf("%d keepalives in 5 periods from a client retrying as it should, want 3 or more", k)
	}
	<-stuck
	m.keepalives(period) // one check may have passed as the hook began
	if k := m.keepalives(5 * period); k != 0 {
		t.Errorf("%d keepalives in 5 periods while the supervisor is stuck in a hook, want none", k)
	}
	close(release)
	if k := m.keepalives(5 * period); k == 0 {
		t.Error("no keepalive once the hook returned")
	}
}

// A connection that is up must hear the server answer keepalives; once
// keepalive.Watch should have given up on a silent one, the check fails.
func TestClientWatchdogWantsKeepalivesWhileUp(t *testing.T) {
	const period = 15 * time.Second
	c := &clientNotifier{keepAliveWithin: 4 * 15 * time.Second}
	now := time.Now()
	up := reconnect.State{Phase: reconnect.Up, Since: now.Add(-time.Hour)}
	if err := c.keepAliveFresh(up, now, period); err == nil {
		t.Error("an hour up without a keepalive answered passed")
	}
	c.answered.Store(now.Add(-70 * time.Second).UnixNano())
	if err := c.keepAliveFresh(up, now, period); err != nil {
		t.Errorf("an answer 70 s ago, within 4 intervals and a period: %v", err)
	}
	c.answered.Store(now.Add(-80 * time.Second).UnixNano())
	if err := c.keepAliveFresh(up, now, period); err == nil {
		t.Error("an answer 80 s ago, past 4 intervals and a period, passed")
	}
	if err := c.keepAliveFresh(reconnect.State{Phase: reconnect.Up, Since: now.Add(-time.Minute)}, now, period); err != nil {
		t.Errorf("a connection up for a minute, before its first answer is due to be missed: %v", err)
	}
	if err := c.keepAliveFresh(reconnect.State{Phase: reconnect.Reconnecting, Since: now.Add(-time.Hour)}, now, period); err != nil {
		t.Errorf("reconnecting, where no keepalive runs: %v", err)
	}
}

package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// manager is the service manager's end: a unixgram socket that collects
// what the notifier sends.
type manager struct {
	conn *net.UnixConn
	name string
}

func newManager(t *testing.T, name string) *manager {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &manager{conn, name}
}

// next returns the next message, failing the test when none comes within
// wait.
func (m *manager) next(t *testing.T, wait time.Duration) string {
	t.Helper()
	msg, ok := m.within(wait)
	if !ok {
		t.Fatalf("no message from the notifier within %v", wait)
	}
	return msg
}

// within returns the next message if one comes within wait.
func (m *manager) within(wait time.Duration) (string, bool) {
	buf := make([]byte, 4096)
	m.conn.SetReadDeadline(time.Now().Add(wait))
	n, err := m.conn.Read(buf)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

func TestUnsetIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := New()
	if n != nil || err != nil {
		t.Fatalf("New without NOTIFY_SOCKET = %v, %v; want nil, nil", n, err)
	}
	for _, err := range []error{n.Ready(), n.Status("x"), n.Reloading(), n.Stopping(), n.Close()} {
		if err != nil {
			t.Errorf("a nil Notifier's method returned %v", err)
		}
	}
	if p := n.WatchdogPeriod(); p != 0 {
		t.Errorf("WatchdogPeriod of nil = %v", p)
	}
	n.Watchdog(t.Context(), nil, slog.New(slog.DiscardHandler))()
}

func TestMessages(t *testing.T) {
	for _, socket := range []string{
		filepath.Join(t.TempDir(), "notify"),
		fmt.Sprintf("@sshvpn-sdnotify-test-%d", os.Getpid()),
	} {
		t.Run(socket[:1], func(t *testing.T) {
			m := newManager(t, socket)
			t.Setenv("NOTIFY_SOCKET", socket)
			n, err := New()
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
				t.Errorf("NOTIFY_SOCKET=%q still set: children would speak for the service", v)
			}
			n.Ready()
			if got := m.next(t, time.Second); got != "READY=1\n" {
				t.Errorf("Ready sent %q", got)
			}
			n.Status("2 connections,\n3 tunnels")
			if got := m.next(t, time.Second); got != "STATUS=2 connections, 3 tunnels\n" {
				t.Errorf("Status sent %q", got)
			}
			before, _ := monotonicUsec()
			n.Reloading()
			after, _ := monotonicUsec()
			got := m.next(t, time.Second)
			rest, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
			us, err := strconv.ParseUint(strings.TrimSuffix(rest, "\n"), 10, 64)
			if !ok || err != nil || us < before || us > after {
				t.Errorf("Reloading sent %q; want RELOADING=1 and a MONOTONIC_USEC from %d to %d", got, before, after)
			}
			n.Stopping()
			if got := m.next(t, time.Second); got != "STOPPING=1\n" {
				t.Errorf("Stopping sent %q", got)
			}
			n.Close()
			if err := n.Ready(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Ready after Close = %v, want net.ErrClosed", err)
			}
		})
	}
}

func TestOpenRefusesRelative(t *testing.T) {
	if _, err := Open("notify"); err == nil {
		t.Fatal("Open(\"notify\") succeeded; a relative path depends on the working directory")
	}
}

func TestWatchdogPeriod(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      int64
		fails     bool
	}{
		{"", "", 0, false},
		{"2000000", "", 1000000, false},
		{"2000000", "42", 1000000, false},
		{"2000000", "43", 0, false}, // another process's watchdog
		{"0", "", 0, true},
		{"soon", "", 0, true},
		{"2000000", "me", 0, true},
	} {
		got, err := watchdogPeriod(tc.usec, tc.pid, 42)
		if got != tc.want || (err != nil) != tc.fails {
			t.Errorf("watchdogPeriod(%q, %q) = %d, %v; want %d, error %v", tc.usec, tc.pid, got, err, tc.want, tc.fails)
		}
	}
}

// watchdogNotifier is a Notifier from the environment a manager with
// WatchdogSec=2*period gives its service.
func watchdogNotifier(t *testing.T, period time.Duration) (*Notifier, *manager) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "notify")
	m := newManager(t, socket)
	t.Setenv("NOTIFY_SOCKET", socket)
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(2*period.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if got := n.WatchdogPeriod(); got != period {
		t.Fatalf("WatchdogPeriod = %v, want %v (half of WATCHDOG_USEC)", got, period)
	}
	return n, m
}

func TestWatchdogCadence(t *testing.T) {
	const period = 50 * time.Millisecond
	n, m := watchdogNotifier(t, period)
	stop := n.Watchdog(t.Context(), func(context.Context) error { return nil }, slog.New(slog.DiscardHandler))
	defer stop()
	var last time.Time
	for i := range 8 {
		if got := m.next(t, 20*period); got != "WATCHDOG=1\n" {
			t.Fatalf("watchdog sent %q", got)
		}
		now := time.Now()
		// Never faster than the period: the manager's budget is twice
		// it, and a flood would hide a stuck loop no better.
		if i > 0 && now.Sub(last) < period*7/10 {
			t.Errorf("keepalive %d came %v after the last; the period is %v", i, now.Sub(last), period)
		}
		last = now
	}
	stop()
	if msg, ok := m.within(3 * period); ok {
		t.Errorf("after stop the watchdog still sent %q", msg)
	}
}

func TestWatchdogWedged(t *testing.T) {
	const period = 30 * time.Millisecond
	n, m := watchdogNotifier(t, period)
	var wedged atomic.Bool
	release := make(chan struct{})
	alive := func(context.Context) error {
		if wedged.Load() {
			<-release // the main loop's lock, held for good
		}
		return nil
	}
	stop := n.Watchdog(t.Context(), alive, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer stop()
	m.next(t, 20*period)
	wedged.Store(true)
	// At most one keepalive was on its way when the loop wedged.
	m.within(2 * period)
	if msg, ok := m.within(10 * period); ok {
		t.Fatalf("the watchdog sent %q while the main loop was wedged", msg)
	}
	wedged.Store(false)
	close(release)
	if got := m.next(t, 20*period); got != "WATCHDOG=1\n" {
		t.Fatalf("after the loop came back the watchdog sent %q", got)
	}
}

func TestWatchdogFailingCheck(t *testing.T) {
	const period = 30 * time.Millisecond
	n, m := watchdogNotifier(t, period)
	var calls atomic.Int32
	stop := n.Watchdog(t.Context(), func(context.Context) error {
		calls.Add(1)
		return errors.New("main loop says no")
	}, slog.New(slog.DiscardHandler))
	defer stop()
	if msg, ok := m.within(10 * period); ok {
		t.Fatalf("the watchdog sent %q while its check failed", msg)
	}
	if calls.Load() < 2 {
		t.Fatalf("the check ran %d times in 10 periods", calls.Load())
	}
}

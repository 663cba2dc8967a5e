package nstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// killTimeout bounds the wait for a SIGKILLed process to be reaped.
const killTimeout = 10 * time.Second

// logTail is how many lines of a process's log a failing test shows.
const logTail = 60

// Proc is a process started in a namespace by NS.Start.
type Proc struct {
	Cmd     *exec.Cmd
	LogPath string // stdout and stderr, combined

	name string
	done chan struct{} // closed once the process is reaped
	err  error         // from cmd.Wait, valid after done
}

// Start starts args inside the namespace with stdout and stderr going to a
// file in t.TempDir(). The test's cleanup kills the process by PID if it still
// runs (and shows the tail of its log when the test failed); the namespace's
// cleanup does the same.
func (n *NS) Start(t testing.TB, args ...string) *Proc {
	t.Helper()
	return n.StartLogged(t, filepath.Join(t.TempDir(), filepath.Base(args[0])+".log"), args...)
}

// StartLogged is Start with the log file chosen by the caller, for a program
// that should also write its own log there (sshd -E FILE): the file is opened
// for appending, so both writers add to its end.
func (n *NS) StartLogged(t testing.TB, logPath string, args ...string) *Proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := n.Cmd(args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group keeps a terminal's ^C away from it; cleanup
	// still kills by PID only.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Proc{Cmd: cmd, LogPath: logPath, name: n.Name + ": " + strings.Join(args, " "), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("in %s: start %s: %v", n.Name, strings.Join(args, " "), err)
	}
	n.track(t, p, nil)
	return p
}

// track waits for a started process and has it killed by PID at the
// test's end (after showing its log's tail when the test failed), then
// runs after, if not nil; the namespace's cleanup kills it too.
func (n *NS) track(t testing.TB, p *Proc, after func()) {
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s (pid %d), last %d lines:\n%s", p.name, p.PID(), logTail, p.Tail(logTail))
		}
		p.kill(t)
		if after != nil {
			after()
		}
	})
}

// PID returns the process ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Log returns everything the process wrote so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail returns the last n lines of the log.
func (p *Proc) Tail(n int) string {
	lines := strings.SplitAfter(p.Log(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// Signal sends sig to the process (by PID). Signalling a process that has
// exited returns os.ErrProcessDone.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ErrWaitTimeout is returned by Proc.Wait when the process outlives the timeout.
var ErrWaitTimeout = errors.New("process still running")

// Wait waits up to timeout for the process to exit and returns its exit error
// (nil, or an *exec.ExitError carrying the code), or ErrWaitTimeout.
func (p *Proc) Wait(timeout time.Duration) error {
	if p.Exited() {
		return p.err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s after %v: %w", p.name, timeout, ErrWaitTimeout)
	}
}

// ExitCode returns the exit code once the process has exited: -1 when a
// signal ended it, or when it still runs.
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.Cmd.ProcessState.ExitCode()
}

// kill SIGKILLs the process by PID unless it was already reaped, and waits
// for the reaping. Safe to call more than once.
func (p *Proc) kill(t testing.TB) {
	if p.Exited() {
		return
	}
	p.Cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(killTimeout):
		t.Errorf("%s (pid %d) not reaped %v after SIGKILL", p.name, p.PID(), killTimeout)
	}
}

package nstest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// StartTerminal is Start on a terminal of its own: the process's stdin,
// stdout and stderr are a new pseudo-terminal, which is its controlling
// terminal, as when a user types the command. What it writes there goes
// to its log; what the test writes to the returned file, the process
// reads as typed (Ctrl-D is "\x04"). Cleanup kills the process by PID and
// closes the terminal.
func (n *NS) StartTerminal(t testing.TB, args ...string) (*Proc, *os.File) {
	t.Helper()
	term, tty, err := openPTY()
	if err != nil {
		t.Fatalf("a terminal for %s: %v", args[0], err)
	}
	logPath := filepath.Join(t.TempDir(), filepath.Base(args[0])+".log")
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Cmd(args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	// A session of its own, the terminal its controlling one (fd 0).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	p := &Proc{Cmd: cmd, LogPath: logPath, name: n.Name + ": " + strings.Join(args, " "), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("in %s: start %s: %v", n.Name, strings.Join(args, " "), err)
	}
	tty.Close() // the process holds it now: reads of term end when it exits
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(log, term) // ends with EIO once no process holds the terminal
		log.Close()
	}()
	n.track(t, p, func() {
		term.Close()
		<-copied
	})
	return p, term
}

// openPTY opens a new pseudo-terminal: term is the test's side, tty the
// process's.
func openPTY() (term, tty *os.File, err error) {
	term, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(term.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		term.Close()
		return nil, nil, fmt.Errorf("unlock the terminal: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		term.Close()
		return nil, nil, fmt.Errorf("the terminal's number: %w", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		term.Close()
		return nil, nil, err
	}
	return term, tty, nil
}

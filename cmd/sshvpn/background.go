package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"github.com/sshvpn/sshvpn/relay/reconnect"
)

// readyFDEnv names the descriptor on which a backgrounded connect (-f)
// tells the process that started it that the tunnel is up.
const readyFDEnv = "SSHVPN_READY_FD"

// A Go program cannot fork, so -f runs sshvpn again and waits for the
// word that the first tunnel is up: then it exits 0, and the tunnel lives
// on. Until then the child shares this terminal, so it can ask for a
// passphrase or a host key as ssh does before it forks, and a Ctrl-C
// reaches both; once up, the child leaves the terminal's session (as
// ssh's daemon() does) before it says so. If the child fails first, its
// error is already on stderr and its exit status is ours.
func background(ctx context.Context, args []string, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("-f: find sshvpn's own binary: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("-f: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(self, append([]string{"connect"}, args...)...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.Stdin = os.Stdin
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("-f: start the background sshvpn: %w", err)
	}
	w.Close()
	up := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		up <- line == "up\n"
	}()
	select {
	case ok := <-up:
		if ok {
			return cmd.Process.Release()
		}
	case <-ctx.Done():
		// Interrupted before the tunnel was up: the child got the
		// terminal's signal too; make sure, and wait for its teardown.
		cmd.Process.Signal(syscall.SIGTERM)
	}
	// The child closed the pipe without a tunnel: it exited, or will.
	err = cmd.Wait()
	if ctx.Err() != nil {
		return reconnect.ErrNeverUp
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return &exitError{code: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("-f: the background sshvpn: %w", err)
	}
	return &exitError{255, errors.New("-f: the background sshvpn ended before a tunnel was up")}
}

// inBackground reports whether this process is the child of a -f.
func inBackground() bool { return os.Getenv(readyFDEnv) == "3" }

// readyNotifier returns what a backgrounded child calls once its tunnel is
// up, or nil when this process is not one.
func readyNotifier() func() {
	if !inBackground() {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	f := os.NewFile(3, "ready")
	syscall.CloseOnExec(3)
	return func() {
		// Leave the terminal's session, so its hangup and its Ctrl-C no
		// longer reach the tunnel, and stop reading its input.
		syscall.Setsid()
		if null, err := os.Open(os.DevNull); err == nil {
			syscall.Dup2(int(null.Fd()), 0)
			null.Close()
		}
		f.WriteString("up\n")
		f.Close()
	}
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// readyFDEnv names the descriptor on which a backgrounded connect (-f)
// tells the process that started it that the tunnel is up.
const readyFDEnv = "SSHVPN_READY_FD"

// A Go program cannot fork, so -f runs sshvpn again in a new session, as
// ssh's daemon() would leave it, and waits for the word that the first
// tunnel is up: then it exits 0, and the tunnel lives on. If the child
// fails first, its error is already on stderr and its exit status is ours.
// The child has no terminal: a key that needs a passphrase must be in
// ssh-agent, as with ssh -f once it has forked.
func background(args []string, stderr io.Writer) error {
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
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("-f: start the background sshvpn: %w", err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	if line == "up\n" {
		return cmd.Process.Release()
	}
	// The child closed the pipe without a tunnel: it exited, or will.
	err = cmd.Wait()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return &exitError{code: ee.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("-f: the background sshvpn: %w", err)
	}
	return &exitError{255, errors.New("-f: the background sshvpn ended before a tunnel was up")}
}

// readyNotifier returns what a backgrounded child calls once its tunnel is
// up, or nil when this process is not one.
func readyNotifier() func() {
	if os.Getenv(readyFDEnv) != "3" {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	f := os.NewFile(3, "ready")
	syscall.CloseOnExec(3)
	return func() {
		f.WriteString("up\n")
		f.Close()
	}
}

package sshclient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// Prompter asks the user on a terminal. Dial uses it for passphrases and
// for StrictHostKeyChecking=ask; with a nil Prompter nothing is asked, as
// when ssh has no terminal.
type Prompter interface {
	// ReadSecret shows prompt and reads one line without echo.
	ReadSecret(prompt string) (string, error)
	// ReadLine shows prompt and reads one line with echo.
	ReadLine(prompt string) (string, error)
}

// TTY is a Prompter on /dev/tty, like ssh's read_passphrase; the prompts
// go to Out (usually stderr).
type TTY struct {
	Out io.Writer
	// Done, when closed, ends a prompt in progress with ErrInterrupted:
	// the first Ctrl-C must not wait for the user to answer.
	Done <-chan struct{}
}

// OpenTTY returns a TTY when the process has a controlling terminal, or an
// error saying why not (the caller then leaves Dialer.Prompt nil).
func OpenTTY(out io.Writer) (*TTY, error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("no terminal to prompt on: %w", err)
	}
	defer f.Close()
	if !term.IsTerminal(int(f.Fd())) {
		return nil, errors.New("no terminal to prompt on: /dev/tty is not a terminal")
	}
	return &TTY{Out: out}, nil
}

// ErrInterrupted is a prompt given up because TTY.Done was closed.
var ErrInterrupted = errors.New("interrupted")

// ReadSecret implements Prompter.
func (t *TTY) ReadSecret(prompt string) (string, error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	fd := int(f.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		f.Close()
		return "", err
	}
	fmt.Fprint(t.Out, prompt)
	secret, err := t.read(f, func() (string, error) {
		b, err := term.ReadPassword(fd)
		return string(b), err
	}, func() { term.Restore(fd, state) })
	if !errors.Is(err, ErrInterrupted) {
		fmt.Fprintln(t.Out) // the newline the user typed was not echoed
	}
	return secret, err
}

// ReadLine implements Prompter.
func (t *TTY) ReadLine(prompt string) (string, error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	fmt.Fprint(t.Out, prompt)
	line, err := t.read(f, func() (string, error) {
		s, err := bufio.NewReader(f).ReadString('\n')
		if err != nil && s == "" {
			return "", err
		}
		return strings.TrimRight(s, "\r\n"), nil
	}, func() {})
	return line, err
}

// read runs one prompt's read until it ends or Done closes. An
// interrupted prompt restores the terminal at once (echo back on) and
// leaves the read, and the file, to the exiting process: a blocked read
// of a terminal does not end when its descriptor is closed.
func (t *TTY) read(f *os.File, read func() (string, error), restore func()) (string, error) {
	type result struct {
		s   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := read()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		f.Close()
		if r.err == nil {
			return r.s, nil
		}
		return "", r.err
	case <-t.Done:
		restore()
		fmt.Fprintln(t.Out)
		return "", ErrInterrupted
	}
}

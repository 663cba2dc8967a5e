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

// ReadSecret implements Prompter.
func (t *TTY) ReadSecret(prompt string) (string, error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fmt.Fprint(t.Out, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(t.Out)
	return string(b), err
}

// ReadLine implements Prompter.
func (t *TTY) ReadLine(prompt string) (string, error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fmt.Fprint(t.Out, prompt)
	s, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && s == "" {
		return "", err
	}
	return strings.TrimRight(s, "\r\n"), nil
}

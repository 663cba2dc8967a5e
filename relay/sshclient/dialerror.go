package sshclient

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrTimedOut is ConnectTimeout running out; the error wrapping it says
// where, in ssh's words ("Connection timed out during banner exchange").
//
//lint:ignore ST1005 ssh's words, capitalized as ssh prints them
var ErrTimedOut = errors.New("Connection timed out")

// PermissionDeniedError is a login the server refused: no key was accepted.
type PermissionDeniedError struct {
	User, Host string
	err        error
}

func (e *PermissionDeniedError) Error() string {
	return fmt.Sprintf("%s@%s: Permission denied (publickey).", e.User, e.Host)
}

func (e *PermissionDeniedError) Unwrap() error { return e.err }

// isAuthFailure tells x/crypto/ssh's "no key was accepted" apart from a
// transport failure; it has no error type for it.
func isAuthFailure(err error) bool {
	return strings.Contains(err.Error(), "unable to authenticate")
}

// dialError is a TCP connect failure in ssh's words, keeping its cause for
// errors.Is (Retryable tests the errno).
type dialError struct {
	msg string
	err error
}

func (e *dialError) Error() string { return e.msg }
func (e *dialError) Unwrap() error { return e.err }

// connectError words a failed TCP connect as ssh does: "connect to host h
// port p: Connection refused", "Could not resolve hostname h: Name or
// service not known".
func connectError(cfg *Config, err error) error {
	if dns, ok := errors.AsType[*net.DNSError](err); ok {
		why := "Name or service not known"
		switch {
		case dns.IsTimeout, dns.IsTemporary:
			why = "Temporary failure in name resolution"
		case !dns.IsNotFound:
			why = dns.Err
		}
		return &dialError{fmt.Sprintf("Could not resolve hostname %s: %s", cfg.HostName, why), err}
	}
	why := err.Error()
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		why = capitalize(errno.Error())
	case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		why = "Connection timed out"
	}
	return &dialError{fmt.Sprintf("connect to host %s port %d: %s", cfg.HostName, cfg.Port, why), err}
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// capitalize is strerror's case: "Connection refused".
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// remoteString is "host port N" as ssh prints a peer.
func remoteString(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return fmt.Sprintf("%s port %d", a.IP, a.Port)
	}
	return c.RemoteAddr().String()
}

// bannerConn notes when the server's identification line has arrived, so a
// timeout before it reads as ssh's "during banner exchange".
type bannerConn struct {
	net.Conn
	mu     sync.Mutex
	line   []byte // the start of the current line, up to 4 bytes
	banner bool
}

func (c *bannerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if !c.banner {
		for _, b := range p[:n] {
			if b == '\n' {
				if string(c.line) == "SSH-" {
					c.banner = true
					break
				}
				c.line = c.line[:0]
				continue
			}
			if len(c.line) < 4 {
				c.line = append(c.line, b)
			}
		}
	}
	c.mu.Unlock()
	return n, err
}

func (c *bannerConn) bannerSeen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.banner
}

// handshakeTimer closes the connection when ConnectTimeout runs out. A
// channel through a jump host has no deadlines, so closing is the one way
// that works for both kinds of connection. Prompts pause it.
type handshakeTimer struct {
	mu      sync.Mutex
	conn    net.Conn
	left    time.Duration // 0: no timeout
	started time.Time
	t       *time.Timer
	done    bool // stopped for good, or fired
	hit     bool // fired
}

func newHandshakeTimer(d time.Duration, conn net.Conn) *handshakeTimer {
	h := &handshakeTimer{conn: conn, left: d}
	h.resume()
	return h
}

func (h *handshakeTimer) resume() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.left <= 0 || h.done || h.t != nil {
		return
	}
	h.started = time.Now()
	h.t = time.AfterFunc(h.left, func() {
		h.mu.Lock()
		if !h.done {
			h.done, h.hit = true, true
			h.conn.Close()
		}
		h.mu.Unlock()
	})
}

func (h *handshakeTimer) pause() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.t == nil || h.done {
		return
	}
	if h.t.Stop() {
		h.left -= time.Since(h.started)
	}
	h.t = nil
}

// stop ends the timer and reports whether it had not fired.
func (h *handshakeTimer) stop() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.t != nil {
		h.t.Stop()
	}
	h.done = true
	return !h.hit
}

func (h *handshakeTimer) fired() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hit
}

// pausingPrompter stops the handshake's clock while the user types.
type pausingPrompter struct {
	p Prompter
	t *handshakeTimer
}

func (p pausingPrompter) ReadSecret(prompt string) (string, error) {
	p.t.pause()
	defer p.t.resume()
	return p.p.ReadSecret(prompt)
}

func (p pausingPrompter) ReadLine(prompt string) (string, error) {
	p.t.pause()
	defer p.t.resume()
	return p.p.ReadLine(prompt)
}

// network is the dial network AddressFamily asks for.
func (c *Config) network() string {
	switch c.AddressFamily {
	case "inet":
		return "tcp4"
	case "inet6":
		return "tcp6"
	}
	return "tcp"
}

package gateway

import (
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// session serves a session channel: sshvpn runs no commands, it shows the
// tunnel's status and keeps the session open, so that `ssh -w any gw` works
// without -N.
func (cs *connState) session(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	cs.countSession(1)
	defer cs.countSession(-1)
	// One status writer per session, as sshd runs one command: a second
	// shell or exec is refused, so a client cannot start writers that
	// race on the channel or pile up goroutines.
	pty, started := false, false
	var greeter sync.WaitGroup
	gone := make(chan struct{}) // the session ended: the greeter waits no more
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			req.Reply(!started, nil)
			pty = pty || !started
		case "shell", "exec":
			req.Reply(!started, nil)
			if !started {
				started = true
				greeter.Go(func() { cs.greet(ch, pty, gone) })
			}
		case "env", "window-change":
			req.Reply(true, nil)
		default:
			req.Reply(false, nil)
		}
	}
	// The requests end when the channel or the connection does; the
	// greeter's read of the channel ends with them.
	close(gone)
	ch.Close()
	greeter.Wait()
}

// greetWait is how long the status waits for the tunnel: ssh opens the
// tunnel before the session, but the two are served concurrently.
const greetWait = 2 * time.Second

func (cs *connState) greet(ch ssh.Channel, pty bool, gone <-chan struct{}) {
	select {
	case <-cs.opened:
	case <-time.After(greetWait):
	case <-gone:
		return
	}
	text := cs.status() + "This session runs no command; the tunnel stays up while it is open."
	switch {
	case pty && cs.sessionCount() == 1:
		text += " Press Ctrl-D to close it and the tunnel."
	case pty:
		text += " Press Ctrl-D to close it; another session holds the tunnel."
	}
	text += "\n"
	if pty {
		text = strings.ReplaceAll(text, "\n", "\r\n")
	}
	ch.Write([]byte(text))
	if !pty {
		// Without a terminal the client's stdin may well be /dev/null:
		// its EOF must not end the tunnel; the client closes the channel.
		// Whatever it types is read and dropped so it never fills the
		// window.
		io.Copy(io.Discard, ch)
		return
	}
	hungUp := waitForHangup(ch)
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
	ch.Close()
	// A hangup ends the connection only from its one session: another
	// (ssh -S ctl -t gw beside a ControlMaster's ssh -w) closes just itself.
	if hungUp && cs.sessionCount() == 1 {
		cs.hangUp()
	}
}

// countSession counts the connection's open session channels.
func (cs *connState) countSession(d int) {
	cs.mu.Lock()
	cs.sessions += d
	cs.mu.Unlock()
}

func (cs *connState) sessionCount() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.sessions
}

// waitForHangup reads a terminal session's input until Ctrl-C, Ctrl-D or
// its end, and reports whether the user typed one of the two.
func waitForHangup(ch ssh.Channel) bool {
	buf := make([]byte, 256)
	for {
		n, err := ch.Read(buf)
		if strings.ContainsAny(string(buf[:n]), "\x03\x04") {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// hangUpWait is how long a client that hung up has to leave on its own
// once its channels are closed, before the gateway drops the connection.
const hangUpWait = 2 * time.Second

// hangUp ends the connection whose user pressed Ctrl-D or Ctrl-C, as the
// session's text promises. Closing the session alone would not do: a
// stock ssh stays while its tun channel is open, and so would the tunnel.
// Its tunnels and forwards are closed first, so that ssh sees every
// channel close and exits with the session's status; a client that still
// stays is disconnected.
func (cs *connState) hangUp() {
	cs.log.Info("the client hung up its session: closing its tunnels and the connection")
	cs.end()
	t := time.NewTimer(hangUpWait)
	defer t.Stop()
	select {
	case <-cs.left:
	case <-t.C:
		cs.conn.Close()
	}
}

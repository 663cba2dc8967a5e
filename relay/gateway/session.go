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
	if pty {
		text += " Press Ctrl-D to close it."
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
	waitForHangup(ch)
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
	ch.Close()
}

// waitForHangup reads a terminal session's input until Ctrl-C, Ctrl-D or
// its end.
func waitForHangup(ch ssh.Channel) {
	buf := make([]byte, 256)
	for {
		n, err := ch.Read(buf)
		if err != nil || strings.ContainsAny(string(buf[:n]), "\x03\x04") {
			return
		}
	}
}

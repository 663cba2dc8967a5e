package sshchan

import (
	"fmt"

	"golang.org/x/crypto/ssh"
)

// Receiver takes a tun@openssh.com channel's messages whole, one at a
// time, and returns window to the peer only when told to. sshvpn never
// receives this way: Channel returns window as x/crypto does. It is for
// tests that play a receiver with a window policy of its own (package
// sshchantest): one that returns window late, or counts each datagram
// other than by its length, as implementations other than OpenSSH and
// x/crypto may.
//
// Next must be called from one goroutine at a time, and nothing else may
// read the channel.
type Receiver struct {
	conn   ssh.Conn
	ch     ssh.Channel
	shim   *chanShim
	window uint32
}

// NewReceiver binds to ch, a channel of conn from x/crypto/ssh.
func NewReceiver(conn ssh.Conn, ch ssh.Channel) (*Receiver, error) {
	shim, err := newChanShim(ch)
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	win, err := myWindowOf(ch)
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	if _, err := transportOf(conn); err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	return &Receiver{conn: conn, ch: ch, shim: shim, window: win}, nil
}

// Window is the window granted to the peer when the Receiver was made.
func (r *Receiver) Window() uint32 { return r.window }

// Next moves the next message into p whole, blocking until one arrives,
// and returns its length. It returns io.EOF once the channel is closed
// and every message taken, and fails when p cannot hold the message.
func (r *Receiver) Next(p []byte) (int, error) { return r.shim.take(p) }

// Queued counts the messages that arrived and were not taken yet.
func (r *Receiver) Queued() int { return r.shim.queued() }

// Return gives the peer n more bytes of window: one
// SSH_MSG_CHANNEL_WINDOW_ADJUST.
func (r *Receiver) Return(n uint32) error { return WidenWindow(r.conn, r.ch, n) }

// Allow lets the peer send n more bytes than x/crypto's count of the
// window, which checks every message, would let it, and tells the peer
// nothing: for a receiver whose own count charges less than a message's
// length, or that checks the window itself.
func (r *Receiver) Allow(n uint32) error { return allowWindow(r.ch, n) }

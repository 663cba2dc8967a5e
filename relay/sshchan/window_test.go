package sshchan

import (
	"bytes"
	"io"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay/wire"
)

// connChannelPair opens a channel of type over an SSH connection on
// loopback (net.Pipe would deadlock: both sides send their version first)
// and returns both ends and the server's connection.
func connChannelPair(t *testing.T, typ string) (client ssh.Channel, server ssh.Channel, srvConn *ssh.ServerConn) {
	t.Helper()
	cfg := openServerConfig(t)
	a, b := tcpPair(t)
	type accepted struct {
		conn *ssh.ServerConn
		ch   ssh.Channel
	}
	got := make(chan accepted, 1)
	go func() {
		sc, chans, reqs, err := ssh.NewServerConn(b, cfg)
		if err != nil {
			close(got)
			return
		}
		go ssh.DiscardRequests(reqs)
		ch, creqs, err := (<-chans).Accept()
		if err != nil {
			close(got)
			return
		}
		go ssh.DiscardRequests(creqs)
		got <- accepted{sc, ch}
	}()
	c, chans, reqs, err := ssh.NewClientConn(a, "pipe", &ssh.ClientConfig{HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	go func() {
		for nc := range chans {
			nc.Reject(ssh.Prohibited, "no")
		}
	}()
	client, creqs, err := ssh.NewClient(c, nil, nil).OpenChannel(typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(creqs)
	s, ok := <-got
	if !ok {
		t.Fatal("server side of the channel failed")
	}
	return client, s.ch, s.conn
}

// A receiver that widens its window takes far more than x/crypto's 2 MiB
// before it reads a byte, and what it then reads is what was sent: its own
// check of incoming data agrees with what it granted.
func TestWidenWindow(t *testing.T) {
	tx, rx, conn := connChannelPair(t, wire.StreamChannelType)
	if err := WidenWindow(conn, rx, FramedWindowExtra(time.Second)); err != nil {
		t.Fatal(err)
	}
	const size = 12 << 20 // six times the window x/crypto grants
	data := bytes.Repeat([]byte("sshvpn window "), size/14+1)[:size]
	sent := make(chan error, 1)
	go func() {
		_, err := tx.Write(data)
		sent <- err
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("12 MiB did not fit the window before the receiver read: the window was not widened")
	}
	got := make([]byte, size)
	if _, err := io.ReadFull(rx, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, data))
	}
	// The widened window is kept topped up: another 12 MiB goes through.
	go func() {
		_, err := tx.Write(data)
		sent <- err
	}()
	if _, err := io.ReadFull(rx, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second read: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// The window follows the path: x/crypto's own on a LAN, a round trip's
// worth at framedRate beyond 5 ms, never more than 16 MiB.
func TestFramedWindowExtra(t *testing.T) {
	for _, c := range []struct {
		rtt  time.Duration
		want uint32
	}{
		{200 * time.Microsecond, 0},
		{5 * time.Millisecond, 0},
		{20 * time.Millisecond, uint32(0.020*framedRate) - xcryptoWindow},
		{40 * time.Millisecond, uint32(0.040*framedRate) - xcryptoWindow},
		{60 * time.Millisecond, framedMaxWindow - xcryptoWindow},
		{time.Second, framedMaxWindow - xcryptoWindow},
	} {
		if got := FramedWindowExtra(c.rtt); got != c.want {
			t.Errorf("FramedWindowExtra(%v) = %d, want %d", c.rtt, got, c.want)
		}
	}
}

package sshchan

import (
	"bytes"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
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

// SizeWindow runs beside the tunnel, which may close first: a window
// adjust after our CLOSE would name a channel the peer has forgotten, and
// x/crypto ends the whole connection then. WidenWindow refuses instead,
// and the connection carries on.
func TestWidenWindowAfterClose(t *testing.T) {
	tx, rx, conn := connChannelPair(t, wire.StreamChannelType)
	rx.Close()
	if _, err := io.Copy(io.Discard, tx); err != nil { // the peer's side of the close
		t.Fatal(err)
	}
	tx.Close()
	if err := WidenWindow(conn, rx, FramedWindowExtra(time.Second)); err == nil {
		t.Fatal("widened a closed channel")
	}
	if _, _, err := conn.SendRequest("keepalive@openssh.com", true, nil); err != nil {
		t.Fatalf("the connection did not survive: %v", err)
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

// flood writes 1400-byte packets to c until Write fails, counting them.
func flood(c *Channel) *atomic.Int64 {
	var sent atomic.Int64
	go func() {
		bufs := withHeadroom(ipPacket(1400, 1))
		for {
			if _, err := c.Write(bufs, relay.Headroom); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	return &sent
}

// held is what n of flood's packets take of the peer's window: the packet,
// its address family word, and the 4 bytes a peer that has returned
// nothing yet is charged for each.
func held(n int64) int { return int(n) * (1400 + 4 + 4) }

// inFlightUntilBlocked floods c, whose peer never reads, until Write stops
// returning, and says how many bytes of window the peer then holds.
func inFlightUntilBlocked(t *testing.T, c *Channel) int {
	t.Helper()
	sent := flood(c)
	// Blocked: no progress for 200 ms.
	last := int64(-1)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		if n := sent.Load(); n == last {
			return held(n)
		} else {
			last = n
		}
	}
	t.Fatal("the writer never blocked on the window")
	return 0
}

// Toward a stock peer on a short path, Channel keeps at most minInFlight
// unconsumed in the peer (SetPathRTT), not its whole 2 MiB window: OpenSSH
// drains its window one datagram per loop, and every datagram held there
// delays a ping behind a download. Without SetPathRTT, or on a path long
// enough to need it, the whole window is used. The peer here never reads,
// so the cap would be lifted after capPatience (TestChannelLiftsTheCap):
// this test gives it all the patience it needs.
func TestChannelBoundsWhatThePeerHolds(t *testing.T) {
	for _, c := range []struct {
		name     string
		rtt      time.Duration
		min, max int
	}{
		{"unmeasured", 0, xcryptoWindow - 2*1408, xcryptoWindow},
		{"lan", 300 * time.Microsecond, minInFlight - 2*1408, minInFlight},
		{"40ms", 40 * time.Millisecond, xcryptoWindow - 2*1408, xcryptoWindow},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _, _ := connChannelPair(t, wire.ChannelType)
			tx, err := New(a, Config{Mode: relay.PointToPoint, MTU: 1500, PeerVersion: []byte("SSH-2.0-OpenSSH_9.2p1")})
			if err != nil {
				t.Fatal(err)
			}
			setPatience(tx, time.Hour)
			if c.rtt > 0 {
				tx.SetPathRTT(c.rtt)
			}
			got := inFlightUntilBlocked(t, tx)
			tx.Close()
			if got < c.min || got > c.max {
				t.Errorf("the peer holds %d bytes unread, want %d-%d", got, c.min, c.max)
			}
		})
	}
}

// A peer that holds what the cap lets it hold and returns nothing gets the
// rest of its window once a write has waited capPatience: RFC 4254 lets a
// receiver return window as late as it likes, and one that waits for half
// its window to go (asyncssh) would otherwise stall the tunnel for good.
// The peer here claims to be OpenSSH, whose adjusts come early, so the cap
// holds at first.
func TestChannelLiftsTheCap(t *testing.T) {
	a, _, _ := connChannelPair(t, wire.ChannelType)
	tx, err := New(a, Config{Mode: relay.PointToPoint, MTU: 1500, PeerVersion: []byte("SSH-2.0-OpenSSH_9.2p1"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	tx.SetPathRTT(300 * time.Microsecond)
	sent := flood(tx)
	whole := xcryptoWindow - 2*1408
	deadline := time.Now().Add(10 * time.Second)
	for held(sent.Load()) < whole {
		if time.Now().After(deadline) {
			t.Fatalf("the peer holds %d bytes unread after 10 s, want its whole window: the cap of %d was never lifted",
				held(sent.Load()), minInFlight)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := windowState(tx); st.capWaits == 0 || !st.lifted {
		t.Errorf("writes waited on the cap %d times, lifted %v: the cap never held", st.capWaits, st.lifted)
	}
}

// setPatience sets how long c's writes wait on the cap without an adjust.
func setPatience(c *Channel, d time.Duration) {
	c.shim.win.L.Lock()
	c.shim.send.patience = d
	c.shim.win.L.Unlock()
}

// windowState is a copy of c's view of the peer's window.
func windowState(c *Channel) sendWindow {
	c.shim.win.L.Lock()
	defer c.shim.win.L.Unlock()
	s := c.shim.send
	s.lens = lengths{}
	return s
}

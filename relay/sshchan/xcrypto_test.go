package sshchan

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay/wire"
)

// openServerConfig is an x/crypto server that lets anyone in, with a
// fresh host key.
func openServerConfig(t *testing.T) *ssh.ServerConfig {
	t.Helper()
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	hs, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(hs)
	return cfg
}

// channelPair opens a tun@openssh.com channel over an SSH connection on
// loopback and returns the client's end and the server's.
func channelPair(t *testing.T) (client, server ssh.Channel) {
	client, server, _ = connChannelPair(t, wire.ChannelType)
	return client, server
}

// TestChanShimMatchesXCrypto fails when golang.org/x/crypto/ssh changes the
// internals xcrypto.go mirrors: then update the mirror (or, once
// golang/go#70029 lands, replace the shim with the new API).
func TestChanShimMatchesXCrypto(t *testing.T) {
	client, server := channelPair(t)
	for _, ch := range []ssh.Channel{client, server} {
		s, err := newChanShim(ch)
		if err != nil {
			t.Fatalf("x/crypto/ssh changed shape: %v", err)
		}
		if s.maxPayload != 1<<15 {
			t.Errorf("peer's max packet %d, want x/crypto's 32768", s.maxPayload)
		}
		s.win.L.Lock()
		win := s.win.win
		s.win.L.Unlock()
		if win != 64<<15 {
			t.Errorf("initial window %d, want x/crypto's 2 MiB", win)
		}
	}
}

func TestChanShimReadsOneMessageAtATime(t *testing.T) {
	client, server := channelPair(t)
	s, err := newChanShim(server)
	if err != nil {
		t.Fatal(err)
	}
	msgs := [][]byte{[]byte("first"), bytes.Repeat([]byte("second"), 300), []byte("3")}
	for _, m := range msgs {
		if _, err := client.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until all three are queued together, as they are under load.
	deadline := time.Now().Add(5 * time.Second)
	for s.queued() < len(msgs) {
		if time.Now().After(deadline) {
			t.Fatal("messages never queued")
		}
		time.Sleep(time.Millisecond)
	}
	for i, want := range msgs {
		n, err := s.nextLen(false)
		if err != nil || n != len(want) {
			t.Fatalf("message %d: nextLen = %d, %v; want %d", i, n, err, len(want))
		}
		got := make([]byte, n)
		if _, err := s.readMessage(got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: got %q", i, got)
		}
	}
	if n, err := s.nextLen(false); n != 0 || err != nil {
		t.Fatalf("after the last message: nextLen = %d, %v", n, err)
	}
}

func TestChanShimChargesDriftAndNeverSplits(t *testing.T) {
	client, server := channelPair(t)
	s, err := newChanShim(server)
	if err != nil {
		t.Fatal(err)
	}
	// The receiving side counts SSH messages, not bytes: Channel.Read
	// would join the fragments of a split write into the same bytes.
	rx, err := newChanShim(client)
	if err != nil {
		t.Fatal(err)
	}
	window := func() uint32 {
		s.win.L.Lock()
		defer s.win.L.Unlock()
		return s.win.win
	}
	before := window()
	p := bytes.Repeat([]byte{0xab}, 1404)
	if err := s.writeDatagram(p); err != nil {
		t.Fatal(err)
	}
	if got := before - window(); got != 1408 {
		t.Fatalf("window charged %d for a 1404-byte datagram, want len+4 = 1408", got)
	}
	expectMessage(t, rx, len(p))

	// With less window than a datagram needs, the write waits instead of
	// sending part of it.
	s.win.L.Lock()
	saved := s.win.win
	s.win.win = 100
	s.win.L.Unlock()
	done := make(chan error, 1)
	go func() { done <- s.writeDatagram(p) }()
	waitParked(t, "(*chanShim).writeDatagram", done)
	s.win.L.Lock()
	s.win.win = saved
	s.win.Broadcast()
	s.win.L.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	expectMessage(t, rx, len(p))
	if n := rx.queued(); n != 0 {
		t.Fatalf("%d more messages after the datagram: it was split", n)
	}

	if err := s.writeDatagram(make([]byte, 40000)); err == nil {
		t.Fatal("a datagram beyond the peer's max packet was written")
	}
}

// expectMessage reads the next SSH message and checks it is n bytes long.
func expectMessage(t *testing.T, rx *chanShim, n int) {
	t.Helper()
	got, err := rx.nextLen(true)
	if err != nil || got != n {
		t.Fatalf("next message is %d bytes (%v), want one whole %d-byte datagram", got, err, n)
	}
	if _, err := rx.readMessage(make([]byte, got)); err != nil {
		t.Fatal(err)
	}
}

// waitParked waits until a goroutine is blocked on a sync.Cond inside fn,
// and fails if done delivers first: fn returned instead of waiting.
func waitParked(t *testing.T, fn string, done <-chan error) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("%s returned (%v) instead of waiting", fn, err)
		default:
		}
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "sync.(*Cond).Wait") && strings.Contains(g, fn) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine waits in %s", fn)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestChanShimRejectsOtherChannels(t *testing.T) {
	if _, err := newChanShim(fakeChannel{}); err == nil {
		t.Fatal("shim bound to a channel that is not x/crypto's")
	}
}

type fakeChannel struct{ ssh.Channel }

// tcpPair is a connected loopback TCP pair.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

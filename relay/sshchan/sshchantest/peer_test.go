package sshchantest_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/relaytest"
	"github.com/sshvpn/sshvpn/relay/sshchan/sshchantest"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// A sender that counts len, as x/crypto's Write does, fills the 2 MiB it
// was granted with 1,493 datagrams of 1,404 bytes. A receiver that counts
// len takes them all; one that counts len+4 finds the 1,490th overruns
// its window, and says so.
func TestPeerChecksTheWindow(t *testing.T) {
	for _, c := range []struct {
		pol     sshchantest.Policy
		overrun bool
	}{
		{sshchantest.HalfWindow, false},
		{sshchantest.PlusFour, true},
	} {
		t.Run(c.pol.Name, func(t *testing.T) {
			tx, peer := rawPair(t, c.pol)
			const n = 2 << 20 / 1404
			frame := append([]byte{0, 0, 0, 2}, relaytest.IPv4(strings.Repeat("x", 1380))...)
			for range n {
				if _, err := tx.Write(frame); err != nil {
					t.Fatal(err)
				}
			}
			// All arrived before the peer returns any window: none of
			// its adjusts could count for them.
			for deadline := time.Now().Add(10 * time.Second); peer.Queued() < n; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d datagrams arrived", peer.Queued(), n)
				}
			}
			bufs := [][]byte{make([]byte, relay.Headroom+sshchantest.MTU)}
			sizes := make([]int, 1)
			got := 0
			var err error
			for got < n && err == nil {
				var k int
				k, err = peer.Read(bufs, sizes, relay.Headroom)
				got += k
			}
			switch {
			case !c.overrun && err != nil:
				t.Fatalf("after %d datagrams: %v", got, err)
			case c.overrun && (err == nil || !errors.Is(err, peer.Err()) || !strings.Contains(err.Error(), "overran")):
				t.Fatalf("after %d datagrams: %v (Err %v), want the 1,490th to overrun", got, err, peer.Err())
			case c.overrun && got != 1489:
				t.Fatalf("the overrun came after %d datagrams, want 1,489", got)
			}
		})
	}
}

// rawPair is an x/crypto channel whose writes count len, and a Peer of pol
// at its other end, dialled over loopback.
func rawPair(t *testing.T, pol sshchantest.Policy) (ssh.Channel, *sshchantest.Peer) {
	t.Helper()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	key, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan ssh.Channel, 1)
	go func() {
		defer close(got)
		cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if !bytes.Equal(k.Marshal(), key.PublicKey().Marshal()) {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		}}
		cfg.AddHostKey(key)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		ch, creqs, err := (<-chans).Accept()
		if err != nil {
			return
		}
		go ssh.DiscardRequests(creqs)
		got <- ch
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client, err := sshchantest.Dial(c, "test", key, pol, relay.PointToPoint, relay.AnyUnit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ch, ok := <-got
	if !ok {
		t.Fatalf("the server side of the %s channel failed", wire.ChannelType)
	}
	return ch, client.Peer
}

package sshchan_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/relaytest"
	"github.com/sshvpn/sshvpn/relay/sshchan"
	"github.com/sshvpn/sshvpn/relay/sshchan/sshchantest"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// Toward every receiver sshchantest plays, in both roles, Channel carries
// its datagrams to the end, byte for byte, and never sends more than the
// receiver's own count of its window allows: it learns what each datagram
// costs the receiver from the receiver's adjusts, holds no receiver that
// returns window late to the in-flight cap, and lifts the cap for one that
// claimed to return it early and does not.
//
// A len-4 receiver that returns window at half stalls a sender that counts
// len after some 262,000 datagrams, too many for a unit test under -race
// (the integration tests carry that many). Here it returns window only
// once less than 1/64 of it is left, which stalls such a sender after
// 14,000 datagrams, one that counts len+4 after 13,500; and a sender that
// counts len overruns the len+4 receiver after 19,500. Those two get
// 21,600; the others stall at the cap within 400. The first window's
// worth of datagrams is large, so that a sender that starts at len+4
// reaches the first adjust of the receiver at 1/64.
func TestStockReceivers(t *testing.T) {
	for _, pol := range sshchantest.Receivers {
		n := bigDatagrams + 2_000
		if pol == sshchantest.LessFour || pol == sshchantest.PlusFour {
			n = bigDatagrams + 20_000
		}
		if pol == sshchantest.LessFour {
			pol.Name, pol.ReturnBelow = "len-4, at 1/64", 64
		}
		for _, role := range []string{"gateway", "client"} {
			t.Run(pol.Name+"/"+role, func(t *testing.T) {
				t.Parallel()
				var log relaytest.Buffer
				tx, peer := pair(t, pol, role == "gateway", &log)
				tx.SetPathRTT(300 * time.Microsecond) // a LAN: the cap is 512 KiB
				carry(t, tx, peer, n)
				st := sshchan.WindowStateOf(tx)
				t.Logf("%d datagrams; the receiver sent %d adjusts; the sender saw %d, learnt len%+d (settled %v), waited on the cap %d times, lifted %v",
					n, peer.Stats().Adjusts, st.Adjusts, st.Charge, st.Settled, st.CapWaits, st.Lifted)
				if int(st.Charge) != pol.Charge {
					t.Errorf("the sender charges len%+d per datagram, the receiver len%+d", st.Charge, pol.Charge)
				}
				// Learnt at DEBUG: the peer's window is sshvpn's business.
				if want := fmt.Sprintf(`level=DEBUG msg="the peer's window: what each datagram costs it" charge=len%+d adjusts=`, pol.Charge); !strings.Contains(log.String(), want) ||
					!strings.Contains(log.String(), `from="its adjusts"`) {
					t.Errorf("the log does not say the charge was learnt from the adjusts (%s):\n%s", want, log.String())
				}
				switch {
				case pol.Version == sshchantest.LateOpenSSH.Version && !st.Lifted:
					t.Errorf("the cap was never lifted for a receiver that returns window at half")
				case pol.Version != sshchantest.LateOpenSSH.Version && pol.ReturnBelow > 0 && st.CapWaits > 0:
					t.Errorf("a receiver not known to return window early was held to the cap %d times", st.CapWaits)
				}
			})
		}
	}
}

// pair opens a tun@openssh.com channel over SSH on loopback between
// Channel and a receiver of pol: Channel on the SSH server's side when
// gateway is set, else on the client's.
func pair(t *testing.T, pol sshchantest.Policy, gateway bool, log io.Writer) (*sshchan.Channel, *sshchantest.Peer) {
	t.Helper()
	key := newSigner(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type end struct {
		ch      ssh.Channel
		version []byte
		peer    *sshchantest.Peer
		err     error
	}
	done := make(chan end, 1)
	if gateway {
		go func() {
			ch, version, err := acceptTunnel(ln, key.PublicKey())
			done <- end{ch: ch, version: version, err: err}
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
		e := <-done
		if e.err != nil {
			t.Fatal(e.err)
		}
		return wrap(t, e.ch, e.version, log), client.Peer
	}
	go func() {
		p, err := sshchantest.Server{Authorized: key.PublicKey()}.Accept(ln, pol)
		done <- end{peer: p, err: err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(c, ln.Addr().String(), &ssh.ClientConfig{User: "test",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatal(err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	t.Cleanup(func() { client.Close() })
	ch, creqs, err := client.OpenChannel(wire.ChannelType, wire.OpenRequest{Mode: relay.PointToPoint, Unit: 0}.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(creqs)
	e := <-done
	if e.err != nil {
		t.Fatal(e.err)
	}
	t.Cleanup(func() { e.peer.Close() })
	return wrap(t, ch, client.ServerVersion(), log), e.peer
}

// wrap makes ch sshvpn's Channel toward a peer announcing version,
// logging to log.
func wrap(t *testing.T, ch ssh.Channel, version []byte, log io.Writer) *sshchan.Channel {
	t.Helper()
	tx, err := sshchan.New(ch, sshchan.Config{Mode: relay.PointToPoint, MTU: 1500, PeerVersion: version,
		Log: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	return tx
}

// acceptTunnel serves one SSH connection from ln for key and returns its
// first tun@openssh.com channel and the client's version.
func acceptTunnel(ln net.Listener, key ssh.PublicKey) (ssh.Channel, []byte, error) {
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if !bytes.Equal(k.Marshal(), key.Marshal()) {
			return nil, fmt.Errorf("unknown key")
		}
		return nil, nil
	}}
	cfg.AddHostKey(newSignerOrPanic())
	c, err := ln.Accept()
	if err != nil {
		return nil, nil, err
	}
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return nil, nil, err
	}
	go ssh.DiscardRequests(reqs)
	nc := <-chans
	if nc == nil || nc.ChannelType() != wire.ChannelType {
		return nil, nil, fmt.Errorf("no %s channel", wire.ChannelType)
	}
	go func() {
		for nc := range chans {
			nc.Reject(ssh.Prohibited, "one tunnel")
		}
	}()
	ch, creqs, err := nc.Accept()
	if err != nil {
		return nil, nil, err
	}
	go ssh.DiscardRequests(creqs)
	return ch, sc.ClientVersion(), nil
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	return newSignerOrPanic()
}

func newSignerOrPanic() ssh.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		panic(err)
	}
	return s
}

// bigDatagrams are the first test packets, of about 1,400 bytes: 2.2 MB,
// more than a window.
const bigDatagrams = 1600

// datagram is the i-th test packet: an IPv4 packet of about 1,400 bytes
// (the first bigDatagrams), then of 24 to 279, whose payload is i and a
// pattern of i's.
func datagram(i int) []byte {
	size := 4 + i*7%256
	if i < bigDatagrams {
		size = 1376 - i%16
	}
	payload := make([]byte, size)
	binary.BigEndian.PutUint32(payload, uint32(i))
	for j := 4; j < len(payload); j++ {
		payload[j] = byte(i + j)
	}
	return relaytest.IPv4(string(payload))
}

// carry writes n datagrams with tx and reads them with peer, checking each
// byte for byte and in order. A stall fails it: no datagram for 20 s.
func carry(t *testing.T, tx *sshchan.Channel, peer *sshchantest.Peer, n int) {
	t.Helper()
	sent := make(chan error, 1)
	go func() {
		bufs := make([][]byte, 0, tx.BatchSize())
		for i := 0; i < n; {
			bufs = bufs[:0]
			for ; i < n && len(bufs) < cap(bufs); i++ {
				bufs = append(bufs, append(make([]byte, relay.Headroom), datagram(i)...))
			}
			if _, err := tx.Write(bufs, relay.Headroom); err != nil {
				sent <- fmt.Errorf("Write: %w", err)
				return
			}
		}
		sent <- nil
	}()
	got := make(chan error, 1)
	var progress atomic.Int64
	go func() { got <- read(peer, n, &progress) }()
	for last, since := int64(0), time.Now(); ; {
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			if err := peer.Err(); err != nil {
				t.Fatal(err)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if p := progress.Load(); p != last {
			last, since = p, time.Now()
		} else if time.Since(since) > 20*time.Second {
			st := sshchan.WindowStateOf(tx)
			t.Fatalf("stalled after %d of %d datagrams (the receiver sent %d adjusts; the sender charges len%+d, waited on the cap %d times, lifted %v; receiver error %v)",
				last, n, peer.Stats().Adjusts, st.Charge, st.CapWaits, st.Lifted, peer.Err())
		}
	}
}

// read takes n datagrams from peer and checks them, reporting progress.
func read(peer *sshchantest.Peer, n int, progress *atomic.Int64) error {
	bufs := make([][]byte, peer.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, relay.Headroom+sshchantest.MTU)
	}
	sizes := make([]int, len(bufs))
	for i := 0; i < n; {
		k, err := peer.Read(bufs, sizes, relay.Headroom)
		if err != nil {
			return fmt.Errorf("Read after %d datagrams: %w", i, err)
		}
		for j := range k {
			if want := datagram(i); !bytes.Equal(bufs[j][relay.Headroom:relay.Headroom+sizes[j]], want) {
				return fmt.Errorf("datagram %d: got % x, want % x", i, bufs[j][relay.Headroom:relay.Headroom+sizes[j]], want)
			}
			i++
		}
		progress.Store(int64(i))
	}
	return nil
}

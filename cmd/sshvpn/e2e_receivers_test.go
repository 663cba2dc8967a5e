//go:build integration

package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/internal/nstest"
	"github.com/sshvpn/sshvpn/kernel/tun"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/sshchan/sshchantest"
)

// receiverTransfer is what each tunnel carries each way: a len-4 receiver
// stalls a sender that counts len after some 262,000 datagrams, and 400 MiB
// of TCP at an MTU of 1500 is 290,000.
const receiverTransfer = 400 << 20

// Receivers other than OpenSSH and x/crypto, each behind a real kernel tun
// as ssh -w keeps one: one that returns window only at half, one that
// counts len-4 per datagram (both as asyncssh does), one that counts len+4
// (as OpenSSH, under another name). sshvpn carries 400 MiB each way through
// each, byte for byte, as the gateway on both backends and as the client,
// learns what a datagram costs the receiver, and never sends more than the
// receiver's own count of its window allows.
func TestStockReceivers(t *testing.T) {
	nstest.RequireRoot(t)
	for _, pol := range []sshchantest.Policy{sshchantest.HalfWindow, sshchantest.LessFour, sshchantest.PlusFour} {
		t.Run(pol.Name, func(t *testing.T) {
			t.Run("serve-netstack", func(t *testing.T) { receiverIntoServe(t, pol, true) })
			t.Run("serve-kernel", func(t *testing.T) { receiverIntoServe(t, pol, false) })
			t.Run("connect", func(t *testing.T) { connectToReceiver(t, pol) })
		})
	}
}

// receiverIntoServe dials sshvpn serve as a client with a receiver of pol,
// as ssh -w would, and carries 400 MiB each way between its tun and the
// LAN behind the gateway.
func receiverIntoServe(t *testing.T, pol sshchantest.Policy, netstack bool) {
	tp := newTopo(t)
	key, authKeys := goKey(t)
	var gw *gatewayProc
	if netstack {
		gw = tp.startRootless(t, authKeys+"\n", "--log-level", "debug")
	} else {
		gw = tp.startGateway(t, authKeys+"\n", "--tun-address", tunGW.String(), "--nat", "--log-level", "debug")
	}
	conn, err := tp.client.Dial(t, "tcp", gwListen)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := sshchantest.Dial(conn, "root", key, pol, relay.PointToPoint, relay.AnyUnit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	mine := statusAddress(t, peer.SSH)
	tun := pumpToTun(t, tp.client, peer.Peer)
	upClient(t, tp.client, tun, mine, lanHost.Masked())

	carryEachWay(t, tp, peer.Peer, gw.Proc)
}

// connectToReceiver runs a receiver of pol as the SSH server on the
// gateway host, its tun routing for the tunnel network as a stock sshd's
// would, and sshvpn connect into it, and carries 400 MiB each way between
// the client and the LAN.
func connectToReceiver(t *testing.T, pol sshchantest.Policy) {
	tp := newTopo(t)
	key, file := keyFile(t)
	ln := tp.gw.Listen(t, "tcp", "198.18.1.1:22")
	type accepted struct {
		peer *sshchantest.Peer
		err  error
	}
	got := make(chan accepted, 1)
	go func() {
		p, err := sshchantest.Server{Authorized: key.PublicKey()}.Accept(ln, pol)
		got <- accepted{p, err}
	}()
	c := tp.client.Start(t, connectArgs(file, "", "-w", "any:0", "--log-level", "debug",
		"--address", tunClient.String(), "--route", lanHost.Masked().String(), "root@198.18.1.1")...)
	var peer *sshchantest.Peer
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatalf("the receiver's server: %v\nsshvpn connect: %s", a.err, c.Log())
		}
		peer = a.peer
	case <-time.After(20 * time.Second):
		t.Fatalf("sshvpn connect opened no tunnel: %s", c.Log())
	}
	t.Cleanup(func() { peer.Close() })
	tun := pumpToTun(t, tp.gw, peer)
	tp.gw.Run(t, "ip", "addr", "add", tunGW.String(), "dev", tun)
	tp.gw.Run(t, "ip", "link", "set", tun, "up")
	tp.routeBack(t)
	waitUp(t, c, 1)

	carryEachWay(t, tp, peer, c)
}

// carryEachWay moves receiverTransfer bytes each way between the client
// and the LAN host, then checks what sshvpn (proc) learnt of the receiver.
func carryEachWay(t *testing.T, tp *topo, peer *sshchantest.Peer, proc *nstest.Proc) {
	t.Helper()
	pol := peer.Policy()
	up := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), receiverTransfer, false)
	down := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), receiverTransfer, true)
	st := peer.Stats()
	charges := regexp.MustCompile(`charge=len([+-]\d+) adjusts=(\d+) from="its adjusts"`).FindAllStringSubmatch(proc.Log(), -1)
	learnt, after := "nothing from its adjusts", "-"
	if len(charges) > 0 {
		learnt, after = "len"+charges[len(charges)-1][1], charges[len(charges)-1][2]
	}
	t.Logf("receiver %s: upload %v, download %v; it took %d datagrams (%d bytes) and sent %d adjusts; sshvpn learnt %s after %s",
		pol.Name, up, down, st.Datagrams, st.Bytes, st.Adjusts, learnt, after)
	if err := peer.Err(); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("len%+d", pol.Charge); learnt != want {
		t.Errorf("sshvpn learnt that a datagram costs the receiver %s, want %s:\n%s", learnt, want, proc.Log())
	}
}

// keyFile makes an Ed25519 key and writes its private half to a file for
// sshvpn connect's -i.
func keyFile(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(k, "")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, file
}

// statusAddress opens a session beside the tunnel, as ssh without -N
// does, and returns the address the gateway's status gives the client.
func statusAddress(t *testing.T, client *ssh.Client) netip.Prefix {
	t.Helper()
	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	yours := regexp.MustCompile(`(?:yours: |your address )(198\.18\.3\.\d+/24)`)
	found := make(chan string, 1)
	go func() {
		var text strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			text.WriteString(sc.Text() + "\n")
			if m := yours.FindStringSubmatch(text.String()); m != nil {
				found <- m[1]
				return
			}
		}
		close(found)
	}()
	select {
	case a, ok := <-found:
		if !ok {
			t.Fatal("the gateway's status names no address for the client")
		}
		return netip.MustParsePrefix(a)
	case <-time.After(15 * time.Second):
		t.Fatal("no status from the gateway")
	}
	return netip.Prefix{}
}

// pumpToTun opens a tun in ns, as ssh -w does, and pumps packets between
// it and peer until the test ends. It returns the tun's name.
func pumpToTun(t *testing.T, ns *nstest.NS, peer relay.Device) string {
	t.Helper()
	var dev *tun.Tun
	var err error
	ns.Do(t, func() { dev, err = tun.Open(tun.Config{Mode: relay.PointToPoint, Unit: relay.AnyUnit}) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := relay.NewPump(dev, peer, nil, nil, nil).Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("the receiver's pump: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return dev.Name()
}

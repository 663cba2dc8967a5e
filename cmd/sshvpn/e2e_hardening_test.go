//go:build integration

package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/internal/nstest"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// dialGo logs in to the gateway from the client namespace with x/crypto's
// client, for what a stock ssh will not send (2,000 shell requests).
func dialGo(t *testing.T, tp *topo, signer ssh.Signer) *ssh.Client {
	t.Helper()
	conn, err := tp.client.Dial(t, "tcp", gwListen)
	if err != nil {
		t.Fatal(err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, gwListen, &ssh.ClientConfig{User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sc := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() { sc.Close() })
	return sc
}

// A client that sends 2,000 shell requests on one session gets one
// answered; SIGTERM then stops the gateway within 5 s with everything it
// set up undone.
func TestShutdownAfterSessionFlood(t *testing.T) {
	nstest.RequireRoot(t)
	tp := newTopo(t)
	signer, line := goKey(t)
	nstest.Ping(t, tp.client, underGW.Addr().String(), 1)
	before := hostState(t, tp.gw)
	gw := tp.startGateway(t, line+"\n", "--tun-address", tunGW.String(), "--nat")
	c := dialGo(t, tp, signer)
	tun, treqs, err := c.OpenChannel(wire.ChannelType, wire.OpenRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit}.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(treqs)
	defer tun.Close()
	sess, sreqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(sreqs)
	rss0, fds0 := procUsage(t, gw.PID())
	accepted := 0
	for range 2000 {
		ok, err := sess.SendRequest("shell", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			accepted++
		}
	}
	if accepted != 1 {
		t.Errorf("%d of 2000 shell requests accepted, want 1", accepted)
	}
	rss1, fds1 := procUsage(t, gw.PID())
	t.Logf("gateway before and after 2000 shell requests: RSS %d → %d KiB, fds %d → %d", rss0, rss1, fds0, fds1)
	if fds1 > fds0+2 || rss1 > rss0+20<<10 {
		t.Errorf("the requests cost the gateway: RSS %d → %d KiB, fds %d → %d", rss0, rss1, fds0, fds1)
	}
	start := time.Now()
	gw.Signal(syscall.SIGTERM)
	if err := gw.Wait(5 * time.Second); err != nil {
		t.Fatalf("the gateway did not exit within 5 s of SIGTERM with a client connected: %v\n%s", err, gw.Tail(20))
	}
	t.Logf("gateway exited %v after SIGTERM, code %d", time.Since(start).Round(time.Millisecond), gw.ExitCode())
	if code := gw.ExitCode(); code != 0 {
		t.Errorf("exit code %d:\n%s", code, gw.Tail(20))
	}
	if after := hostState(t, tp.gw); after != before {
		t.Errorf("the gateway left state behind.\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// procUsage reads a process's resident memory (KiB) and open fds.
func procUsage(t *testing.T, pid int) (rssKiB, fds int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return rssKiB, len(ents)
}

// A gateway killed with SIGKILL leaves its changes; the next start,
// even without --nat, undoes exactly them, and so does sshvpn cleanup.
func TestCrashIsUndone(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, pub := tp.key(t, o, "client")
	nstest.Ping(t, tp.client, underGW.Addr().String(), 1)
	before := hostState(t, tp.gw)
	for _, restart := range []string{"serve", "cleanup"} {
		t.Run(restart, func(t *testing.T) {
			gw := tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(), "--tun-address", "2001:2:0:3::1/64", "--nat")
			ssh := tp.sshTunnel(t, o, priv, "point-to-point", "0:any", "-N")
			waitTunnel(t, tp.client, "tun0", ssh, gw, 1)
			gw.Signal(syscall.SIGKILL)
			gw.Wait(5 * time.Second)
			ssh.Signal(syscall.SIGTERM)
			left := hostState(t, tp.gw)
			for _, want := range []string{"masquerade", "ip_forward=1", "unreachable 198.18.3.0/24"} {
				if !strings.Contains(left, want) {
					t.Fatalf("after SIGKILL the host lacks %q: the test proves nothing:\n%s", want, left)
				}
			}
			if restart == "serve" {
				again := tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String())
				if !strings.Contains(again.Log(), "undoing what a dead sshvpn left") {
					t.Errorf("the restart did not say it undid the dead gateway's changes:\n%s", again.Log())
				}
				again.Signal(syscall.SIGTERM)
				if err := again.Wait(10 * time.Second); err != nil || again.ExitCode() != 0 {
					t.Fatalf("restarted gateway: %v, exit %d\n%s", err, again.ExitCode(), again.Log())
				}
			} else {
				out := tp.gw.Run(t, sshvpnBin, "cleanup", "--state-dir", tp.stateDir)
				if !strings.Contains(out, "host changes undone") {
					t.Errorf("sshvpn cleanup said: %s", out)
				}
			}
			if after := hostState(t, tp.gw); after != before {
				t.Errorf("after SIGKILL and %s the host differs.\nbefore:\n%s\nafter:\n%s", restart, before, after)
			}
			if left, _ := filepath.Glob(filepath.Join(tp.stateDir, "*")); len(left) != 0 {
				t.Errorf("journals left: %v", left)
			}
		})
	}
}

// nftCounter counts, in ns, the packets from src that reach it, through a
// table of the test's own.
func nftCounter(t *testing.T, ns *nstest.NS, src string) func() int {
	t.Helper()
	family, proto := "ip", "ip"
	if strings.Contains(src, ":") {
		family, proto = "ip6", "ip6"
	}
	name := "count_" + strings.NewReplacer(".", "_", ":", "_").Replace(src)
	ns.Run(t, "nft", "add", "table", family, name)
	ns.Run(t, "nft", "add", "chain", family, name, "in", "{ type filter hook prerouting priority -300; }")
	ns.Run(t, "nft", "add", "rule", family, name, "in", proto, "saddr", src, "counter")
	return func() int {
		out := ns.Run(t, "nft", "list", "chain", family, name, "in")
		i := strings.Index(out, "packets ")
		if i < 0 {
			t.Fatalf("no counter in:\n%s", out)
		}
		n, _ := strconv.Atoi(strings.Fields(out[i+len("packets "):])[0])
		return n
	}
}

// 10.2 and 10.9: a client may send only from its tunnel's addresses and the
// networks its key allows; a LAN host's address is dropped, not put on the
// LAN, and 5,000 such packets cost the log a line or two.
func TestSourcesAreChecked(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		nstest.RequireTool(t, "nft")
		gw, _ := tp.stockTunnel(t, o, priv, `environment="SSHVPN_ALLOWED_IPS=198.19.50.0/24" `+pub+"\n", "point-to-point", []string{"--tun-address", tunGW.String(), "--nat"}, lanHost.Masked())
		// Room for the whole burst: the datagrams must reach the gateway
		// to be judged there, not be dropped by the client's own queue.
		tp.client.Run(t, "ip", "link", "set", "tun0", "txqueuelen", "10000")
		lanPeer := "198.18.2.9" // another LAN host's address, claimed by the client
		site := "198.19.50.1"   // the client's own site, allowed for its key
		for _, a := range []string{lanPeer, site} {
			tp.client.Run(t, "ip", "addr", "add", a+"/32", "dev", "tun0")
		}
		fromPeer, fromSite := nftCounter(t, tp.lan, lanPeer), nftCounter(t, tp.lan, site)
		fromGW := nftCounter(t, tp.lan, lanGW.Addr().String()) // masqueraded

		nstest.Ping(t, tp.client, lanHost.Addr().String(), 2) // the tunnel's own address works
		sendUDP(t, tp.client, lanPeer, lanHost.Addr().String(), 5000)
		sendUDP(t, tp.client, site, lanHost.Addr().String(), 3)
		// The tunnel keeps order: once the site's datagrams, sent last,
		// have arrived, every spoofed one before them has been judged.
		nstest.WaitFor(t, 10*time.Second, "the site's 3 datagrams at the LAN", func() bool { return fromSite() >= 3 })
		if n := fromGW(); n < 2 {
			t.Fatalf("control: %d masqueraded pings reached the LAN, want 2", n)
		}
		if n := fromPeer(); n != 0 {
			t.Errorf("%d of 5000 packets claiming a LAN host's address reached the LAN", n)
		}
		if n := fromSite(); n != 3 {
			t.Errorf("%d packets from the key's allowed site reached the LAN, want 3", n)
		}
		nstest.WaitFor(t, 5*time.Second, "the spoofing warning", func() bool {
			return strings.Contains(gw.Log(), "source outside the tunnel's addresses")
		})
		n := strings.Count(gw.Log(), "dropping packets from the client")
		t.Logf("5000 datagrams in a LAN host's name: %d reached the LAN, %d log lines", fromPeer(), n)
		if n > 3 {
			t.Errorf("5000 spoofed packets took %d log lines, want a few:\n%s", n, gw.Tail(10))
		}
	})
}

// sendUDP sends n datagrams from src to dst's discard port, from ns.
func sendUDP(t *testing.T, ns *nstest.NS, src, dst string, n int) {
	t.Helper()
	var c net.PacketConn
	ns.Do(t, func() {
		var err error
		if c, err = net.ListenPacket("udp", net.JoinHostPort(src, "0")); err != nil {
			t.Fatal(err)
		}
	})
	defer c.Close()
	to := &net.UDPAddr{IP: net.ParseIP(dst), Port: 9}
	for i := range n {
		if _, err := c.WriteTo([]byte("spoofed?"), to); err != nil {
			t.Fatalf("datagram %d from %s: %v", i, src, err)
		}
	}
}

// packetSocket is an AF_PACKET socket on dev in ns, for frames the kernel
// cannot make itself (it has no 8021q module here).
func packetSocket(t *testing.T, ns *nstest.NS, dev string) int {
	t.Helper()
	var fd int
	ns.Do(t, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		proto := int(htons(syscall.ETH_P_ALL))
		if fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, proto); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { syscall.Close(fd) })
	tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// taggedFrame is an 802.1Q-tagged IPv4 UDP frame from src, marked so the
// capture can find it.
func taggedFrame(dst, srcMAC net.HardwareAddr, src string, mark byte) []byte {
	ip := make([]byte, 28)
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 28)
	copy(ip[12:16], netip.MustParseAddr(src).AsSlice())
	copy(ip[16:20], netip.MustParseAddr("198.18.3.1").AsSlice())
	ip[27] = mark
	f := append(append(append([]byte{}, dst...), srcMAC...), 0x81, 0x00, 0, 42, 0x08, 0x00)
	return append(f, ip...)
}

// In ethernet mode an 802.1Q-tagged frame is checked on its inner
// source: one from the client's own address reaches the gateway's tap, one
// claiming a LAN host's address does not.
func TestTaggedFramesAreChecked(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, pub := tp.key(t, o, "client")
	tp.stockTunnel(t, o, priv, pub+"\n", "ethernet", []string{"--tun-address", tunGW.String()})
	nstest.Ping(t, tp.client, tunGW.Addr().String(), 1) // claims tunClient for this tunnel

	send, capture := packetSocket(t, tp.client, "tap0"), packetSocket(t, tp.gw, "tap0")
	var mac net.HardwareAddr
	tp.client.Do(t, func() {
		ifi, _ := net.InterfaceByName("tap0")
		mac = ifi.HardwareAddr
	})
	broadcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	for range 3 {
		for _, f := range [][]byte{taggedFrame(broadcast, mac, tunClient.Addr().String(), 0xa1),
			taggedFrame(broadcast, mac, lanHost.Addr().String(), 0xb2)} {
			if _, err := syscall.Write(send, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	seen := map[byte]int{}
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		n, err := syscall.Read(capture, buf)
		if err != nil {
			continue // the receive timeout
		}
		// The receiving kernel moves the tag out of the frame (into the
		// packet's metadata), so the frame shows with or without it.
		if f := buf[:n]; (n == 46 && f[12] == 0x81) || (n == 42 && f[12] == 0x08 && f[13] == 0x00) {
			seen[f[n-1]]++
		}
	}
	if seen[0xa1] == 0 {
		t.Fatalf("control: no tagged frame from the client's own address reached the gateway's tap (%v)", seen)
	}
	if seen[0xb2] != 0 {
		t.Errorf("%d tagged frames claiming a LAN host's address reached the gateway's tap", seen[0xb2])
	}
}

// SIGHUP reads authorized_keys again, as sshd does, and the tunnels
// stay up.
func TestHangupReloadsKeys(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	privA, pubA := tp.key(t, o, "a")
	privB, pubB := tp.key(t, o, "b")
	gw := tp.startGateway(t, pubA+"\n", "--tun-address", tunGW.String())
	a := tp.sshTunnel(t, o, privA, "point-to-point", "0:any", "-N")
	waitTunnel(t, tp.client, "tun0", a, gw, 1)
	upClient(t, tp.client, "tun0", tunClient)

	// Key b is refused until the file has it and the gateway is told.
	if out, err := tp.client.Cmd(o.ClientArgs(t, privB, "", "-p", "2222", "-o", "BatchMode=yes", "root@198.18.1.1", "true")...).CombinedOutput(); err == nil {
		t.Fatalf("key b logged in before it was added:\n%s", out)
	}
	if err := os.WriteFile(gw.keys, []byte(pubA+"\n"+pubB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw.Signal(syscall.SIGHUP)
	nstest.WaitFor(t, 5*time.Second, "reload", func() bool { return strings.Contains(gw.Log(), "authorized_keys reloaded") })
	if gw.Exited() {
		t.Fatalf("SIGHUP stopped the gateway:\n%s", gw.Log())
	}
	nstest.Ping(t, tp.client, tunGW.Addr().String(), 2) // a's tunnel is still up
	b := tp.sshTunnel(t, o, privB, "point-to-point", "1:any", "-N")
	waitTunnel(t, tp.client, "tun1", b, gw, 2)
}

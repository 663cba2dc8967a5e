package proxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// attackerEnv, when set, makes the test binary the other local user of
// TestUDPAssociateOtherUser: "RELAY ECHO", the association's BND and the
// echo peer.
const attackerEnv = "SSHVPN_PROXY_TEST_UDP_ATTACKER"

func TestMain(m *testing.M) {
	if v := os.Getenv(attackerEnv); v != "" {
		os.Exit(udpAttacker(v))
	}
	os.Exit(m.Run())
}

// udpAttacker sends one datagram to the relay from a socket of its own
// and prints the reply it got, or "no reply".
func udpAttacker(arg string) int {
	r, e, _ := strings.Cut(arg, " ")
	relay, err1 := netip.ParseAddrPort(r)
	echo, err2 := netip.ParseAddrPort(e)
	if err1 != nil || err2 != nil {
		fmt.Println("bad argument:", arg)
		return 2
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fmt.Println(err)
		return 2
	}
	defer c.Close()
	fmt.Printf("uid %d sends from %v\n", os.Getuid(), c.LocalAddr())
	if _, err := c.WriteToUDPAddrPort(udpRequest(0, echo, "attacker"), relay); err != nil {
		fmt.Println(err)
		return 2
	}
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 2048)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		fmt.Println("no reply")
		return 0
	}
	fmt.Printf("reply %q\n", buf[:n])
	return 0
}

// userVisibleCopy copies the test binary where uid 65534 may run it:
// go test builds it in a directory only its user can enter.
func userVisibleCopy(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "proxy-attacker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "proxy.test")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestUDPAssociateOtherUser is the hijack: an authenticated user's
// association on loopback, and another local user, with no password,
// who sends the first datagram to its relay port. The datagram must be
// dropped as unverified, and the owner's own datagrams still relayed.
func TestUDPAssociateOtherUser(t *testing.T) {
	nstest.RequireRoot(t)
	setpriv := nstest.RequireTool(t, "setpriv")
	echo := udpEcho(t)
	creds := &Credentials{}
	if err := creds.Add("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	d := &recordingDialer{to: echoServer(t)}
	s := NewServer(Config{Dial: d.Dial, SOCKS: true, Auth: creds, UDP: &loopbackDatagrams{}})
	addr := serve(t, s)

	ctl := dialRaw(t, addr)
	ctl.Write([]byte{5, 1, methodPassword})
	ctl.Write([]byte{authVersion, 5, 'a', 'l', 'i', 'c', 'e', 6, 's', 'e', 'c', 'r', 'e', 't'})
	var sel, auth [2]byte
	if _, err := io.ReadFull(ctl, sel[:]); err != nil || sel != [2]byte{5, methodPassword} {
		t.Fatalf("method selection %x, %v", sel, err)
	}
	if _, err := io.ReadFull(ctl, auth[:]); err != nil || auth != [2]byte{authVersion, 0} {
		t.Fatalf("authentication %x, %v", auth, err)
	}
	ctl.Write([]byte{5, cmdUDPAssociate, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	rep, bnd := readReply5(t, ctl)
	if rep != socks5Succeeded {
		t.Fatalf("UDP ASSOCIATE: reply %02x", rep)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(bnd[:4])), binary.BigEndian.Uint16(bnd[4:]))

	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", userVisibleCopy(t))
	cmd.Env = append(os.Environ(), attackerEnv+"="+relay.String()+" "+echo.String())
	out, err := cmd.CombinedOutput()
	t.Logf("attacker: %s", out)
	if err != nil {
		t.Fatalf("attacker: %v", err)
	}
	if !strings.Contains(string(out), "no reply") {
		t.Fatalf("another user's datagram was relayed: %s", out)
	}

	victim, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	victim.WriteToUDPAddrPort(udpRequest(0, echo, "mine"), relay)
	expectReply(t, victim, echo, "mine")
	// The relay counts a datagram out after its write returns, which
	// may be after the echo came back: wait for the counters to settle.
	deadline := time.Now().Add(2 * time.Second)
	for {
		st := s.Stats().Snapshot()
		if st.UDPDropped["unverified"] == 1 && st.UDPOut == 1 && st.UDPIn == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want 1 unverified drop and the victim's datagram both ways", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSocketOwners reads the kernel's tables for sockets of our own: the
// client end of a loopback TCP connection, UDP sockets bound to an
// address, to the wildcard, and a dual-stack one sending from IPv4.
func TestSocketOwners(t *testing.T) {
	me := uint32(os.Getuid())
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		network := tc.network
		ln, err := net.Listen(network, tc.addr)
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		defer ln.Close()
		c, err := net.Dial(network, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		client, server := c.LocalAddr().(*net.TCPAddr).AddrPort(), ln.Addr().(*net.TCPAddr).AddrPort()
		if uid, err := tcpPeerOwner(client, server); err != nil || uid != me {
			t.Errorf("%s: tcpPeerOwner(%v, %v) = %d, %v; want %d", network, client, server, uid, err, me)
		}
		if _, err := tcpPeerOwner(server, netip.AddrPortFrom(server.Addr(), 1)); err == nil {
			t.Errorf("%s: found a connection that does not exist", network)
		}
	}

	for _, tc := range []struct{ network, bind, from string }{
		{"udp4", "127.0.0.1:0", "127.0.0.1"},
		{"udp4", "0.0.0.0:0", "127.0.0.1"},
		{"udp6", "[::1]:0", "::1"},
		{"udp6", "[::]:0", "::1"},
		{"udp", "[::]:0", "127.0.0.1"}, // dual stack: listed in udp6 as ::
	} {
		pc, err := net.ListenPacket(tc.network, tc.bind)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.network, tc.bind, err)
		}
		defer pc.Close()
		src := netip.AddrPortFrom(netip.MustParseAddr(tc.from), pc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		if err := udpSenderOwnedBy(src, me); err != nil {
			t.Errorf("%s %s: udpSenderOwnedBy(%v, %d): %v", tc.network, tc.bind, src, me, err)
		}
		if err := udpSenderOwnedBy(src, me+1); err == nil {
			t.Errorf("%s %s: %v passes as owned by uid %d", tc.network, tc.bind, src, me+1)
		}
	}
}

// TestParseSocketTable checks the table's format on a line built the way
// the kernel prints it: each 32-bit word of the address in host order.
func TestParseSocketTable(t *testing.T) {
	word := func(b []byte) string { return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(b)) }
	lo4, lo6 := []byte{127, 0, 0, 1}, netip.IPv6Loopback().AsSlice()
	table := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: " + word(lo4) + ":0438 " + word(lo4) + ":D431 01 00000000:00000000 00:00000000 00000000  1000        0 1 1\n" +
		"   1: " + word(lo6[:4]) + word(lo6[4:8]) + word(lo6[8:12]) + word(lo6[12:]) + ":0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000 65534        0 2 2\n"
	var got []string
	err := parseSocketTable(strings.NewReader(table), func(local, remote netip.AddrPort, uid uint32) {
		got = append(got, fmt.Sprintf("%v %v %d", local, remote, uid))
	})
	want := []string{"127.0.0.1:1080 127.0.0.1:54321 1000", "[::1]:53 [::]:0 65534"}
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	if err := parseSocketTable(strings.NewReader("heading\n 0: zz:0438 0100007F:0001 01 0 0 0 1000\n"), func(netip.AddrPort, netip.AddrPort, uint32) {}); err == nil {
		t.Fatal("a bad address parsed")
	}
}

//go:build integration

package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// What the gateway host gains after the rootless gateway started: a second
// address on the LAN link in each family, a /32 on lo, and a new interface
// with an IPv6 prefix, whose subnet-router anycast address the host
// (forwarding IPv6) accepts as its own.
var (
	gainedLAN4    = netip.MustParsePrefix("198.18.2.50/24")
	gainedLAN6    = netip.MustParsePrefix("2001:2:0:2::50/64")
	gainedLo      = netip.MustParsePrefix("198.18.77.1/32")
	gainedNew6    = netip.MustParsePrefix("2001:2:0:78::1/64")
	gainedAnycast = netip.MustParseAddr("2001:2:0:78::")
)

// The services: on the gateway host bound to 0.0.0.0 and :: (a TCP banner
// and a UDP echo that names the host), and a TCP banner on the LAN host.
const (
	bannerPort = 8090
	echoPort   = 8091
	gwBanner   = "the gateway host"
	lanBanner  = "the lan host"
)

// banner serves text to each connection to ln, then closes it.
func banner(ln net.Listener, text string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, text+"\n")
		c.Close()
	}
}

// readBanner connects from ns to addr and reads what it says.
func readBanner(t *testing.T, ns *nstest.NS, addr string) (string, error) {
	t.Helper()
	c, err := ns.Dial(t, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// askUDP sends msg from ns to addr and returns the answer, if any comes
// within a few seconds. The answer to an anycast address comes from a
// unicast one, which a connected socket would drop; a connected one ends
// the wait at an ICMP port unreachable.
func askUDP(t *testing.T, ns *nstest.NS, addr, msg string, connected bool) string {
	t.Helper()
	dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))
	var pc net.PacketConn
	var err error
	ns.Do(t, func() {
		if connected {
			pc, err = net.DialUDP("udp", nil, dst)
		} else {
			pc, err = net.ListenPacket("udp", ":0")
		}
	})
	if err != nil {
		t.Fatalf("udp to %s: %v", addr, err)
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(3 * time.Second))
	if connected {
		_, err = pc.(*net.UDPConn).Write([]byte(msg))
	} else {
		_, err = pc.WriteTo([]byte(msg), dst)
	}
	if err != nil {
		t.Fatalf("udp to %s: %v", addr, err)
	}
	buf := make([]byte, 100)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// devOf is the device that holds an address in p in ns.
func devOf(t *testing.T, ns *nstest.NS, p netip.Prefix) string {
	t.Helper()
	f := strings.Fields(ns.Run(t, "ip", "-o", "addr", "show", "to", p.Masked().String()))
	if len(f) < 2 {
		t.Fatalf("no device in %s holds an address in %s", ns, p.Masked())
	}
	return f[1]
}

// The rootless gateway follows its host's addresses: one the host gains
// after the gateway started is refused through a tunnel and through ssh -W
// (direct-tcpip), although a service bound to 0.0.0.0 and :: answers there
// on the host itself; one the host loses, and another host then holds, is
// reached. The OpenSSH generation makes no difference to what the gateway
// dials, so one runs.
func TestRootlessHostAddrsFollowed(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.addLAN6(t)
	// A host that forwards IPv6 accepts its prefixes' anycast addresses.
	tp.gw.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	go banner(tp.gw.Listen(t, "tcp", fmt.Sprintf("[::]:%d", bannerPort)), gwBanner)
	go banner(tp.lan.Listen(t, "tcp", fmt.Sprintf("[::]:%d", bannerPort)), lanBanner)
	// The UDP service also keeps what it heard: a datagram that reaches it
	// has done its work, although the answer from an anycast address comes
	// from a unicast one, which the gateway's connected socket drops.
	heard := make(chan string, 64)
	echo := tp.gw.ListenPacket(t, "udp", fmt.Sprintf("[::]:%d", echoPort))
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case heard <- string(buf[:n]):
			default:
			}
			echo.WriteTo([]byte(gwBanner), from)
		}
	}()

	priv, pub := tp.key(t, o, "client")
	gw := tp.startRootless(t, pub+"\n", "--subnet", subnet6.String(), "--log-level", "debug")
	if !regexp.MustCompile(`the host's own addresses are denied to clients" addresses=\d+ changes="reported by the kernel"`).MatchString(gw.Log()) {
		t.Errorf("the gateway does not say it follows the host's addresses:\n%s", gw.Log())
	}
	ssh := tp.sshTunnel(t, o, priv, "point-to-point", "any:any")
	yours := regexp.MustCompile(`your address (198\.18\.3\.\d+/24), the gateway's 198\.18\.3\.1`)
	yours6 := regexp.MustCompile(`your address (2001:2:0:3:[0-9a-f:]+/64), the gateway's 2001:2:0:3::1`)
	nstest.WaitFor(t, 15*time.Second, "status text", func() bool {
		if ssh.Exited() {
			t.Fatalf("ssh exited: %s", ssh.Log())
		}
		return yours.MatchString(ssh.Log()) && yours6.MatchString(ssh.Log())
	})
	upClient(t, tp.client, "tun0", netip.MustParsePrefix(yours.FindStringSubmatch(ssh.Log())[1]),
		lanHost.Masked(), gainedLo.Masked())
	tp.client.Run(t, "ip", "-6", "addr", "add", yours6.FindStringSubmatch(ssh.Log())[1], "dev", "tun0", "nodad")
	for _, r := range []netip.Prefix{lanHost6.Masked(), gainedNew6.Masked()} {
		tp.client.Run(t, "ip", "-6", "route", "add", r.String(), "dev", "tun0")
	}
	sshW := func(target string) string {
		t.Helper()
		args := o.ClientArgs(t, priv, "", "-W", target, "-p", "2222", "root@"+underGW.Addr().String())
		out, _ := tp.client.Cmd(args...).CombinedOutput()
		return string(out)
	}
	at := func(a netip.Addr) string { return netip.AddrPortFrom(a, bannerPort).String() }
	refused := func(a netip.Addr, why string) {
		t.Helper()
		if got, err := readBanner(t, tp.client, at(a)); got != "" || err == nil {
			t.Errorf("through the tunnel, %s answered %q (%v), want refused", at(a), got, err)
		}
		if out := sshW(at(a)); strings.Contains(out, gwBanner) || !strings.Contains(out, "open failed") {
			t.Errorf("ssh -W %s reached it or failed otherwise:\n%s", at(a), out)
		}
		for _, msg := range []string{"tcp refused by egress policy", "port forwarding refused by egress policy"} {
			line := msg + `.* dst=` + regexp.QuoteMeta(at(a)) + ` rule="built-in deny ` + regexp.QuoteMeta(a.String()) + `/\d+ \(` + regexp.QuoteMeta(why)
			if !regexp.MustCompile(line).MatchString(gw.Log()) {
				t.Errorf("the gateway did not log %q:\n%s", line, gw.Tail(20))
			}
		}
	}
	reached := func(a netip.Addr) {
		t.Helper()
		if got, err := readBanner(t, tp.client, at(a)); got != lanBanner {
			t.Errorf("through the tunnel, %s answered %q (%v), want %q", at(a), got, err, lanBanner)
		}
		if out := sshW(at(a)); !strings.Contains(out, lanBanner) {
			t.Errorf("ssh -W %s did not reach the lan host:\n%s", at(a), out)
		}
	}

	// The tunnel reaches the LAN, and not the addresses the host had at
	// start.
	reached(lanHost.Addr())
	refused(lanGW.Addr(), "this host's own address")
	refused(lanGW6.Addr(), "this host's own address")

	// The host gains addresses, which its services then answer on.
	lanDev := devOf(t, tp.gw, lanGW)
	tp.gw.Run(t, "ip", "addr", "add", gainedLAN4.String(), "dev", lanDev)
	tp.gw.Run(t, "ip", "-6", "addr", "add", gainedLAN6.String(), "dev", lanDev, "nodad")
	tp.gw.Run(t, "ip", "addr", "add", gainedLo.String(), "dev", "lo")
	tp.gw.Run(t, "ip", "link", "add", "gained0", "type", "veth", "peer", "name", "gained1")
	tp.gw.Run(t, "ip", "link", "set", "gained0", "up")
	tp.gw.Run(t, "ip", "link", "set", "gained1", "up")
	tp.gw.Run(t, "ip", "-6", "addr", "add", gainedNew6.String(), "dev", "gained0", "nodad")
	for _, p := range []netip.Prefix{gainedLAN4, gainedLAN6, gainedLo, gainedNew6} {
		nstest.WaitFor(t, 5*time.Second, "the gateway following "+p.String(), func() bool {
			return strings.Contains(gw.Log(), `msg="host address added" addr=`+p.String())
		})
		if got, err := readBanner(t, tp.gw, at(p.Addr())); got != gwBanner {
			t.Fatalf("on the gateway host, %s answered %q (%v): the test's premise is gone", at(p.Addr()), got, err)
		}
	}
	if got := askUDP(t, tp.gw, netip.AddrPortFrom(gainedAnycast, echoPort).String(), "from the host", false); got != gwBanner {
		t.Fatalf("on the gateway host, the anycast address %s answered %q: the test's premise is gone", gainedAnycast, got)
	}
	for _, p := range []netip.Prefix{gainedLAN4, gainedLAN6, gainedLo, gainedNew6} {
		refused(p.Addr(), "this host's own address")
	}
	for _, c := range []struct {
		dst netip.Addr
		why string
	}{
		{gainedAnycast, "subnet-router anycast of " + gainedNew6.Masked().String()},
		{netip.MustParseAddr("198.18.2.255"), "broadcast of " + lanGW.Masked().String()},
	} {
		dst := netip.AddrPortFrom(c.dst, echoPort).String()
		msg := "through the tunnel to " + dst
		if got := askUDP(t, tp.client, dst, msg, true); got != "" {
			t.Errorf("through the tunnel, %s answered %q", dst, got)
		}
		// Refused, the datagram never left the gateway; let through,
		// it reached the service while askUDP waited for an answer.
		for len(heard) > 0 {
			if got := <-heard; got == msg {
				t.Errorf("the gateway host's service on :: got a datagram sent through the tunnel to %s", dst)
			}
		}
		line := `udp refused by egress policy.* dst=` + regexp.QuoteMeta(dst) + ` rule=".*` + regexp.QuoteMeta(c.why)
		if !regexp.MustCompile(line).MatchString(gw.Log()) {
			t.Errorf("the gateway did not log %q:\n%s", line, gw.Tail(20))
		}
	}

	// The host loses two of them to the LAN host: they are its now, and
	// reached.
	lanHostDev := devOf(t, tp.lan, lanHost)
	tp.gw.Run(t, "ip", "addr", "del", gainedLAN4.String(), "dev", lanDev)
	tp.gw.Run(t, "ip", "-6", "addr", "del", gainedLAN6.String(), "dev", lanDev)
	tp.lan.Run(t, "ip", "addr", "add", gainedLAN4.String(), "dev", lanHostDev)
	tp.lan.Run(t, "ip", "-6", "addr", "add", gainedLAN6.String(), "dev", lanHostDev, "nodad")
	for _, p := range []netip.Prefix{gainedLAN4, gainedLAN6} {
		nstest.WaitFor(t, 5*time.Second, "the gateway dropping "+p.String(), func() bool {
			return strings.Contains(gw.Log(), `msg="host address removed" addr=`+p.String())
		})
		reached(p.Addr())
	}
	refused(gainedLo.Addr(), "this host's own address")
}

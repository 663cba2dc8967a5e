//go:build integration

package main

import (
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// tunAddrs are the global addresses on dev: IPv4 first, then IPv6.
func tunAddrs(t *testing.T, ns *nstest.NS, dev string) (v4, v6 []netip.Prefix) {
	t.Helper()
	re := regexp.MustCompile(`inet6? (\S+) `)
	for _, l := range strings.Split(ns.Run(t, "ip", "-o", "addr", "show", "dev", dev, "scope", "global"), "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		p, err := netip.ParsePrefix(m[1])
		if err != nil {
			t.Fatalf("ip addr: %q: %v", l, err)
		}
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

// The gateway hands client A a new address on reconnect
// because client B, another key, took A's addresses while A was away. A's
// device must then carry the new IPv4 and IPv6 addresses (deleting the old
// IPv4 primary used to take the new secondary with it, and every IPv4 route
// through the device), reach the gateway on both and the LAN through its
// route.
func TestConnectNewAddressOnReconnect(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "ss")
	nstest.RequireTool(t, "nft")
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	second := nstest.New(t)
	nstest.Link(t, second, netip.MustParsePrefix("198.18.5.2/24"), tp.gw, netip.MustParsePrefix("198.18.5.1/24"))
	privA, pubA := tp.key(t, o, "a")
	privB, pubB := tp.key(t, o, "b")
	gw := tp.startGateway(t, pubA+"\n"+pubB+"\n", "--listen", ":2222", "--tun-address", tunGW.String(),
		"--tun-address", tunGW6.String(), "--nat", "--route", lanHost.Masked().String())

	a := tp.client.Start(t, connectArgs(privA, "", "-p", "2222", "--state-dir", t.TempDir(), "root@"+underGW.Addr().String())...)
	waitUp(t, a, 1)
	old4, old6 := tunAddrs(t, tp.client, "tun0")
	if len(old4) != 1 || len(old6) != 1 {
		t.Fatalf("A's device has %v and %v, want one address of each family from the gateway", old4, old6)
	}
	nstest.Ping(t, tp.client, tunGW.Addr().String(), 1)

	// A goes away: its connection is reset and new ones are refused.
	tp.gw.Run(t, "nft", "add", "table", "inet", "away")
	tp.gw.Run(t, "nft", "add", "chain", "inet", "away", "in", "{ type filter hook input priority 0; }")
	tp.gw.Run(t, "nft", "add", "rule", "inet", "away", "in", "ip", "saddr", underClient.Addr().String(), "tcp", "dport", "2222", "reject", "with", "tcp", "reset")
	killSessions(t, tp.gw)
	nstest.WaitFor(t, 10*time.Second, "A's tunnel down on the gateway", func() bool { return strings.Contains(gw.Log(), "tunnel down") })

	// B takes A's addresses by sending from them.
	b := second.Start(t, connectArgs(privB, "", "-p", "2222", "--state-dir", t.TempDir(),
		"--address", old4[0].String(), "--address", old6[0].String(), "root@198.18.5.1")...)
	waitUp(t, b, 1)
	nstest.Ping(t, second, tunGW.Addr().String(), 1)
	nstest.Ping(t, second, tunGW6.Addr().String(), 1)

	// A comes back and is given other addresses.
	tp.gw.Run(t, "nft", "delete", "table", "inet", "away")
	waitUp(t, a, 2)
	nstest.WaitFor(t, 5*time.Second, "A's new addresses", func() bool {
		v4, v6 := tunAddrs(t, tp.client, "tun0")
		return len(v4) == 1 && len(v6) == 1 && v4[0] != old4[0] && v6[0] != old6[0]
	})
	if !strings.Contains(a.Log(), "assigned a new address") {
		t.Errorf("A did not log the change:\n%s", a.Log())
	}
	new4, new6 := tunAddrs(t, tp.client, "tun0")
	t.Logf("A: %v %v, then %v %v", old4, old6, new4, new6)
	nstest.Ping(t, tp.client, tunGW.Addr().String(), 2)
	nstest.Ping(t, tp.client, tunGW6.Addr().String(), 2)
	nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
	// And B, on A's old addresses, was not disturbed.
	nstest.Ping(t, second, tunGW.Addr().String(), 1)
	if t.Failed() {
		t.Logf("A:\n%s", a.Log())
	}
}

// tunState is what a client may change on a device it attaches to, and
// the tables and rules: link flags, addresses, every route and rule.
func tunState(t *testing.T, ns *nstest.NS, dev string) string {
	t.Helper()
	// The kernel switches a tun, which has no hardware address, to random
	// IPv6 address generation the first time it has carrier, for good.
	link := addrGenRE.ReplaceAllString(ns.Run(t, "ip", "-o", "-d", "link", "show", dev), "")
	addrs := ns.Run(t, "ip", "-o", "addr", "show", "dev", dev, "scope", "global")
	mtu := ns.Run(t, "cat", "/sys/class/net/"+dev+"/mtu")
	return "$ ip -d link\n" + link + "$ ip addr\n" + addrs + "$ mtu\n" + mtu + routingTables(t, ns)
}

var addrGenRE = regexp.MustCompile(`addrgenmode \S+ `)

// A client attached to a persistent device (made with
// ip tuntap) and killed with SIGKILL leaves its addresses and routes on the
// device. The next run undoes them from the journal and starts (it used to
// fail with "address in use"), and sshvpn cleanup puts the device back as
// it was: down, no address, no route.
func TestConnectLeftoversOnPersistentDevice(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, pub := tp.key(t, o, "client")
	tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(), "--tun-address", tunGW6.String(),
		"--nat", "--route", lanHost.Masked().String(), "--mtu", "1400")
	tp.client.Run(t, "ip", "tuntap", "add", "dev", "tun6", "mode", "tun")
	// The first time a link is up the kernel gives it a qdisc for good:
	// not a change anyone can undo, so it happens before the picture.
	tp.client.Run(t, "ip", "link", "set", "tun6", "up")
	tp.client.Run(t, "ip", "link", "set", "tun6", "down")
	before := tunState(t, tp.client, "tun6")
	state := t.TempDir()
	run := func() *nstest.Proc {
		t.Helper()
		p := tp.client.Start(t, connectArgs(priv, "", "-p", "2222", "-w", "6:any", "--state-dir", state, "root@"+underGW.Addr().String())...)
		waitUp(t, p, 1)
		nstest.Ping(t, tp.client, tunGW.Addr().String(), 1)
		nstest.Ping(t, tp.client, lanHost.Addr().String(), 1)
		return p
	}
	kill := func(p *nstest.Proc) {
		t.Helper()
		p.Signal(syscall.SIGKILL)
		p.Wait(10 * time.Second)
		if tunState(t, tp.client, "tun6") == before {
			t.Fatal("the killed client left nothing on tun6: the test proves nothing")
		}
	}
	first := run()
	kill(first)
	second := run()
	if strings.Contains(second.Log(), "address in use") {
		t.Errorf("the second run met the first one's address:\n%s", second.Log())
	}
	if !strings.Contains(second.Log(), "undoing what a dead sshvpn left") {
		t.Errorf("the second run did not say it undid the first one's changes:\n%s", second.Log())
	}
	kill(second)

	out, err := tp.client.Cmd(sshvpnBin, "cleanup", "--state-dir", state).CombinedOutput()
	if err != nil {
		t.Fatalf("sshvpn cleanup: %v\n%s", err, out)
	}
	t.Logf("sshvpn cleanup:\n%s", out)
	if after := tunState(t, tp.client, "tun6"); after != before {
		t.Errorf("tun6 and the routing after cleanup:\n%s\nwant, as before:\n%s", after, before)
	}
	if left, _ := os.ReadDir(state); len(left) != 0 {
		t.Errorf("journals left in the state directory: %v", left)
	}
}

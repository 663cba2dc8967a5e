//go:build integration

package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The segment the DHCP test's client joins: the LAN host serves DHCP and
// routes to a network behind it; radvd on the gateway's bridge advertises
// an IPv6 prefix.
var (
	dhcpRouter = lanHost.Addr() // dnsmasq's host, and the router it names
	dhcpDNS    = netip.MustParseAddr("198.18.2.53")
	farNet     = netip.MustParsePrefix("198.18.4.0/24")
	farRouter  = netip.MustParsePrefix("198.18.4.1/24")
	farHost    = netip.MustParsePrefix("198.18.4.2/24")
	slaacNet   = netip.MustParsePrefix("2001:2:0:5::/64")
)

// dnsmasq is a DHCP server started by the test.
type dnsmasq struct {
	*nstest.Proc
	leases string // its lease file
}

// startDNSMasq serves DHCPv4 (no DNS: --port=0) on dev in ns: leases of
// two minutes renewed after 4 s, naming dhcpRouter and dhcpDNS.
func startDNSMasq(t *testing.T, ns *nstest.NS, dev string) *dnsmasq {
	t.Helper()
	nstest.RequireTool(t, "dnsmasq")
	dir := t.TempDir()
	d := &dnsmasq{leases: filepath.Join(dir, "leases")}
	d.Proc = ns.Start(t, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface="+dev, "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp", "--log-facility=-",
		"--dhcp-leasefile="+d.leases, "--pid-file="+filepath.Join(dir, "pid"),
		"--dhcp-range=198.18.2.100,198.18.2.150,255.255.255.0,2m",
		"--dhcp-option=option:router,"+dhcpRouter.String(),
		"--dhcp-option=option:dns-server,"+dhcpDNS.String(),
		"--dhcp-option=option:domain-search,lan.test",
		"--dhcp-option=option:T1,4", "--dhcp-option=option:T2,6")
	nstest.WaitFor(t, 5*time.Second, "dnsmasq up", func() bool {
		if d.Exited() {
			t.Fatalf("dnsmasq exited: %s", d.Log())
		}
		return strings.Contains(d.Log(), "DHCP, IP range")
	})
	return d
}

// lease is the address the lease file holds for mac, or zero.
func (d *dnsmasq) lease(t *testing.T, mac string) netip.Addr {
	b, err := os.ReadFile(d.leases)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 3 && strings.EqualFold(f[1], mac) {
			return netip.MustParseAddr(f[2])
		}
	}
	return netip.Addr{}
}

// startRadvd advertises prefix on dev in ns every few seconds.
func startRadvd(t *testing.T, ns *nstest.NS, dev string, prefix netip.Prefix) {
	t.Helper()
	nstest.RequireTool(t, "radvd")
	dir := t.TempDir()
	conf := filepath.Join(dir, "radvd.conf")
	err := os.WriteFile(conf, fmt.Appendf(nil, `interface %s {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime 0;
	prefix %s { AdvOnLink on; AdvAutonomous on; };
};
`, dev, prefix), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start(t, "radvd", "--nodaemon", "--logmethod=stderr", "--config="+conf, "--pidfile="+filepath.Join(dir, "pid"))
}

// tapAddr is tap0's IPv4 address with its length, or "".
func tapAddr(t *testing.T, ns *nstest.NS) string {
	m := regexp.MustCompile(`inet (\S+) brd (\S+)`).FindStringSubmatch(ns.Run(t, "ip", "-4", "-o", "addr", "show", "dev", "tap0"))
	if m == nil {
		return ""
	}
	return m[1] + " brd " + m[2]
}

// sshvpn connect --dhcp on an ethernet tunnel into a stock sshd whose tap
// is bridged to a LAN that dnsmasq serves: the lease's address goes on the
// tap with its mask and broadcast address, the network behind the lease's
// router is reached via that router, the lease is renewed at T1, and given
// back (DHCPRELEASE) at exit; radvd's prefix gives the tap an address too
// (SLAAC). A client killed outright leaves its leased address on the
// persistent tap until sshvpn cleanup takes it.
func TestConnectDHCP(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, pub := tp.key(t, o, "client")

	// The gateway: a bridge of a pre-made tap0, which sshd attaches for
	// unit 0, and the LAN link.
	lanDev := devOf(t, tp.gw, lanGW)
	tp.gw.Run(t, "ip", "addr", "flush", "dev", lanDev)
	tp.gw.Run(t, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap")
	tp.gw.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	for _, dev := range []string{lanDev, "tap0"} {
		tp.gw.Run(t, "ip", "link", "set", dev, "master", "br0")
		tp.gw.Run(t, "ip", "link", "set", dev, "up")
	}
	tp.gw.Run(t, "ip", "link", "set", "br0", "up")
	tp.gw.EnableForwarding(t) // radvd advertises only from a router
	sshd := o.StartSSHD(t, tp.gw, nstest.SSHDConfig{ListenAddr: "198.18.1.1:22", PermitTunnel: "ethernet", AuthorizedKeys: pub + "\n"})
	startRadvd(t, tp.gw, "br0", slaacNet)

	// The LAN host serves DHCP and routes to a far network.
	far := nstest.New(t)
	nstest.Link(t, tp.lan, farRouter, far, farHost)
	far.AddRoute(t, lanHost.Masked(), farRouter.Addr())
	tp.lan.EnableForwarding(t)
	dhcp := startDNSMasq(t, tp.lan, devOf(t, tp.lan, lanHost))

	// The client's tap0 is persistent, so that what a killed client left
	// on it stays to be seen.
	tp.client.Run(t, "ip", "tuntap", "add", "dev", "tap0", "mode", "tap")
	mac := strings.Fields(tp.client.Run(t, "cat", "/sys/class/net/tap0/address"))[0]
	state := t.TempDir()
	start := func() *nstest.Proc {
		c := tp.client.Start(t, connectArgs(priv, sshd.KnownHosts, "-o", "Tunnel=ethernet", "-w", "0:0", "--dhcp",
			"--route", farNet.String(), "--state-dir", state, "root@198.18.1.1")...)
		waitUp(t, c, 1)
		nstest.WaitFor(t, 15*time.Second, "the DHCP lease applied", func() bool {
			if c.Exited() {
				t.Fatalf("sshvpn connect exited: %s", c.Log())
			}
			return strings.Contains(c.Log(), `msg="DHCP lease"`)
		})
		return c
	}

	c := start()
	leased := dhcp.lease(t, mac)
	if !leased.IsValid() {
		t.Fatalf("dnsmasq holds no lease for %s:\n%s", mac, dhcp.Log())
	}
	if got, want := tapAddr(t, tp.client), leased.String()+"/24 brd 198.18.2.255"; got != want {
		t.Fatalf("tap0 has %q, want the lease's %q", got, want)
	}
	for _, w := range []string{"address=" + leased.String() + "/24", "server=" + dhcpRouter.String(), "lease_time=2m0s", "dns=[" + dhcpDNS.String() + "]", "domains=[lan.test]"} {
		if !strings.Contains(c.Log(), w) {
			t.Errorf("the lease's log line lacks %q:\n%s", w, c.Log())
		}
	}
	if r := tp.client.Run(t, "ip", "route", "show", farNet.String()); !strings.Contains(r, "via "+dhcpRouter.String()+" dev tap0") {
		t.Errorf("--route %s is not via the lease's router: %q", farNet, r)
	}
	nstest.Ping(t, tp.client, farHost.Addr().String(), 3)
	r := nstest.Transfer(t, far, farHost.Addr().String()+":0", tp.client, farHost.Addr().String(), 4<<20, true)
	t.Logf("through the lease's router: %v", r)

	nstest.WaitFor(t, 15*time.Second, "a SLAAC address on tap0 from radvd's prefix", func() bool {
		return strings.Contains(tp.client.Run(t, "ip", "-6", "-o", "addr", "show", "dev", "tap0", "scope", "global"), "inet6 2001:2:0:5:")
	})
	if r := tp.client.Run(t, "ip", "-6", "route", "show", "default"); r != "" {
		t.Errorf("the tap took a default route from the advertisement: %s", r)
	}
	nstest.WaitFor(t, 15*time.Second, "the lease renewed at T1", func() bool {
		return strings.Count(dhcp.Log(), "DHCPACK(") >= 2
	})
	if got := tapAddr(t, tp.client); !strings.HasPrefix(got, leased.String()+"/") {
		t.Errorf("after the renewal tap0 has %q, want %s", got, leased)
	}

	c.Signal(syscall.SIGTERM)
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatalf("sshvpn connect did not end cleanly: %v\n%s", err, c.Log())
	}
	if got := tapAddr(t, tp.client); got != "" {
		t.Errorf("the lease's address stayed on tap0 after exit: %s", got)
	}
	nstest.WaitFor(t, 5*time.Second, "dnsmasq drops the released lease", func() bool {
		return !dhcp.lease(t, mac).IsValid()
	})
	if !strings.Contains(dhcp.Log(), "DHCPRELEASE(") {
		t.Errorf("dnsmasq saw no DHCPRELEASE:\n%s", dhcp.Log())
	}

	// Killed outright: the address stays until sshvpn cleanup.
	c = start()
	c.Signal(syscall.SIGKILL)
	c.Wait(10 * time.Second)
	if got := tapAddr(t, tp.client); got == "" {
		t.Fatal("the killed client's address is gone already: the test proves nothing")
	}
	out, err := tp.client.Cmd(sshvpnBin, "cleanup", "--state-dir", state).CombinedOutput()
	if err != nil {
		t.Fatalf("sshvpn cleanup: %v\n%s", err, out)
	}
	if got := tapAddr(t, tp.client); got != "" {
		t.Errorf("sshvpn cleanup left the lease's address on tap0: %s\n%s", got, out)
	}
	if r := tp.client.Run(t, "ip", "route", "show", farNet.String()); r != "" {
		t.Errorf("sshvpn cleanup left the route: %s", r)
	}
}

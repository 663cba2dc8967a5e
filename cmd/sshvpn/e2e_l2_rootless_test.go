//go:build integration

package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// udhcpcScript is busybox udhcpc's -s script for the tests: it configures
// the tap as an RFC 3442 client does (address, MTU; the classless static
// routes of option 121 when the lease has them, else a default route via
// the router) and writes what the lease carried to a file, never to
// /etc/resolv.conf, which a namespace shares with the host. Debian's stock
// /etc/udhcpc/default.script differs here: it ignores $staticroutes and
// always adds the default route, which is why the gateway's session text
// pins the SSH connection first.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	if [ -n "$staticroutes" ]; then
		set -- $staticroutes
		while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
	else
		for r in $router; do ip route add default via "$r" dev "$interface"; done
	fi
	echo "ip=$ip mask=$mask router=$router dns=$dns domain=$domain search=$search mtu=$mtu staticroutes=$staticroutes" > %s
	;;
esac
exit 0
`

// dhclientScript is ISC dhclient's -sf script for the tests: Debian's
// dhclient-script without its resolv.conf and hostname steps. It adds the
// default route via new_routers only when the lease has no option 121, as
// Debian's does ("if we have $new_rfc3442_classless_static_routes then we
// have to ignore $new_routers entirely"), and runs Debian's own
// rfc3442-classless-routes exit hook for the routes.
const dhclientScript = `#!/bin/sh
case "$reason" in
BOUND|REBOOT)
	ip -4 addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
	if [ -z "$new_rfc3442_classless_static_routes" ]; then
		for r in $new_routers; do ip -4 route add default via "$r" dev "$interface"; done
	fi
	. /etc/dhcp/dhclient-exit-hooks.d/rfc3442-classless-routes
	echo "ip=$new_ip_address routers=$new_routers rfc3442=$new_rfc3442_classless_static_routes" > %s
	;;
esac
exit 0
`

// writeScript writes a DHCP client script, tmpl with the path of the file
// it writes the lease to, and returns both paths.
func writeScript(t *testing.T, tmpl string) (script, lease string) {
	t.Helper()
	dir := t.TempDir()
	script, lease = filepath.Join(dir, "dhcp.sh"), filepath.Join(dir, "lease")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(tmpl, lease)), 0o700); err != nil {
		t.Fatal(err)
	}
	return script, lease
}

// statusCommands returns the commands a rootless ethernet session printed
// for a stock client, in order.
func statusCommands(t *testing.T, log string) []string {
	t.Helper()
	var cmds []string
	in := false
	for _, line := range strings.Split(strings.ReplaceAll(log, "\r", ""), "\n") {
		switch {
		case strings.Contains(line, "on your side, as root"):
			in = true
		case in && strings.HasPrefix(line, "    "):
			cmds = append(cmds, strings.TrimSpace(line))
		case in:
			return cmds
		}
	}
	if len(cmds) == 0 {
		t.Fatalf("the session printed no commands:\n%s", log)
	}
	return cmds
}

// followStatus runs in ns the commands the session printed, in their
// order, each through sh as a user pasting them into one shell would: the
// first sets $dev, with tapN, as the user does, made the test's tap0. The
// DHCP line runs dhcp instead, the tests' own client scripts in place of
// the stock ones (which rewrite the host's /etc/resolv.conf).
func followStatus(t *testing.T, ns *nstest.NS, log string, dhcp func()) {
	t.Helper()
	cmds := statusCommands(t, log)
	if !strings.HasPrefix(cmds[0], "dev=tapN ") {
		t.Fatalf("the session's commands do not start by naming the client's tap: %q", cmds)
	}
	set := "dev=tap0; "
	for _, c := range cmds[1:] {
		if strings.HasPrefix(c, "udhcpc ") {
			dhcp()
			continue
		}
		if out, err := ns.Cmd("sh", "-c", set+c).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c, err, out)
		}
	}
}

// pinned checks that the client's route to the gateway's SSH address
// stays off the tap, as the session's first command set it.
func pinned(t *testing.T, ns *nstest.NS) {
	t.Helper()
	sshAddr := strings.Split(gwListen, ":")[0]
	if r := ns.Run(t, "ip", "route", "get", sshAddr); strings.Contains(r, "dev tap0") {
		t.Errorf("the SSH connection's route goes into its own tunnel: %s", r)
	}
	if r := ns.Run(t, "ip", "route", "show", sshAddr+"/32"); !strings.Contains(r, sshAddr) {
		t.Errorf("no host route to %s pinned: %q", sshAddr, r)
	}
}

// tcpdumpTimes starts tcpdump on dev in ns, printing each packet with its
// epoch time, and waits until it listens.
func tcpdumpTimes(t *testing.T, ns *nstest.NS, dev, filter string) *nstest.Proc {
	t.Helper()
	nstest.RequireTool(t, "tcpdump")
	p := ns.Start(t, "tcpdump", "-i", dev, "-n", "-l", "-tt", filter)
	nstest.WaitFor(t, 5*time.Second, "tcpdump listening", func() bool { return strings.Contains(p.Log(), "listening on") })
	return p
}

// firstGap is the time from the first line of a capture matching from to
// the first after it matching to.
func firstGap(capture string, from, to *regexp.Regexp) (time.Duration, bool) {
	var start float64
	for _, line := range strings.Split(capture, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ts, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		switch {
		case start == 0 && from.MatchString(line):
			start = ts
		case start != 0 && to.MatchString(line):
			return time.Duration((ts - start) * float64(time.Second)), true
		}
	}
	return 0, false
}

// a: stock ssh -o Tunnel=ethernet into the rootless gateway. The tap gets
// the key's address from busybox udhcpc and a SLAAC address from the
// gateway's router advertisements, and reaches the LAN (no route back)
// over both families through the gateway's NAT: HTTP, ping, DNS, 100 MiB
// each way byte for byte. It logs how long DHCP and a router
// solicitation take to be answered.
func TestRootlessEthernet(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		for _, tool := range []string{"udhcpc", "rdisc6", "curl"} {
			nstest.RequireTool(t, tool)
		}
		tp := newTopo(t)
		tp.lanServices(t)
		tp.addLAN6(t)
		priv, pub := tp.key(t, o, "client")
		gw := tp.startRootless(t, pub+"\n", "--subnet", subnet6.String(), "--dns-domain", "lan.test")

		ssh := tp.sshTunnel(t, o, priv, "ethernet", "0:any")
		gives := regexp.MustCompile(`DHCP gives you (198\.18\.3\.\d+)/24, router 198\.18\.3\.1`)
		nstest.WaitFor(t, 15*time.Second, "status text", func() bool {
			if ssh.Exited() {
				t.Fatalf("ssh exited: %s", ssh.Log())
			}
			return gives.MatchString(ssh.Log()) && strings.Contains(ssh.Log(), "udhcpc -i $dev")
		})
		stable := gives.FindStringSubmatch(ssh.Log())[1]
		waitTunnel(t, tp.client, "tap0", ssh, gw, 1)

		// The session's commands, in its order: the SSH connection pinned
		// outside the tunnel, accept_ra=2, the link up, DHCP. DHCP gives
		// the key's stable address, the gateway as router and DNS, the
		// --dns-domain as search list, the tunnel's MTU.
		script, leaseFile := writeScript(t, udhcpcScript)
		var capture *nstest.Proc
		var udhcpcTook time.Duration
		followStatus(t, tp.client, ssh.Log(), func() {
			capture = tcpdumpTimes(t, tp.client, "tap0", "udp port 67 or udp port 68 or icmp6")
			start := time.Now()
			if out, err := tp.client.Cmd("udhcpc", "-i", "tap0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script).CombinedOutput(); err != nil {
				t.Fatalf("udhcpc: %v\n%s\ngateway:\n%s", err, out, gw.Log())
			}
			udhcpcTook = time.Since(start)
		})
		if capture == nil {
			t.Fatalf("the session printed no udhcpc command:\n%s", ssh.Log())
		}
		got, err := os.ReadFile(leaseFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"ip=" + stable + " ", "mask=24", "router=198.18.3.1", "dns=198.18.3.1", "lan.test", "mtu=16366", "staticroutes=\n"} {
			if !strings.Contains(string(got), want) {
				t.Errorf("lease %q lacks %q", got, want)
			}
		}
		if r := tp.client.Run(t, "ip", "-4", "route", "show", "default"); !strings.Contains(r, "via 198.18.3.1 dev tap0") {
			t.Errorf("IPv4 default route %q, want via 198.18.3.1 dev tap0 (no --route: everything through the gateway)", r)
		}
		pinned(t, tp.client)

		// SLAAC from the gateway's advertisements, and a default route via
		// its link-local address.
		slaac := regexp.MustCompile(`inet6 (2001:2:0:3:[0-9a-f:]+)/64 scope global (dynamic|mngtmpaddr)`)
		nstest.WaitFor(t, 15*time.Second, "a SLAAC address on tap0", func() bool {
			out, _ := tp.client.Cmd("ip", "-6", "addr", "show", "dev", "tap0").CombinedOutput()
			return slaac.Match(out) && !strings.Contains(string(out), "tentative")
		})
		if r := tp.client.Run(t, "ip", "-6", "route", "show", "default"); !strings.Contains(r, "via fe80::1 dev tap0") {
			t.Fatalf("IPv6 default route %q, want via fe80::1 dev tap0", r)
		}

		// A router solicitation of its own, timed.
		start := time.Now()
		ra := tp.client.Run(t, "rdisc6", "-1", "-w", "1000", "tap0")
		rdiscTook := time.Since(start)
		for _, want := range []string{"Prefix                   : 2001:2:0:3::/64", "Recursive DNS server     : 2001:2:0:3::1", "DNS search list          : lan.test", "02:73:73:68:76:70", "16366"} {
			if !strings.Contains(ra, want) {
				t.Errorf("rdisc6 output lacks %q:\n%s", want, ra)
			}
		}

		// The LAN over IPv4 and IPv6, through the gateway's NAT.
		if body, err := httpGet(t, tp.client, "http://"+lanHost.Addr().String()+"/"); err != nil || !strings.Contains(body, "hello from the lan, 198.18.2.1:") {
			t.Fatalf("HTTP to the LAN: %q %v", body, err)
		}
		if body, err := httpGet(t, tp.client, "http://["+lanHost6.Addr().String()+"]/"); err != nil || !strings.Contains(body, "hello from the lan, ["+lanGW6.Addr().String()+"]:") {
			t.Fatalf("HTTP over IPv6 to the LAN: %q %v", body, err)
		}
		nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
		nstest.Ping(t, tp.client, lanHost6.Addr().String(), 2)
		nstest.Ping(t, tp.client, "fe80::1%tap0", 2)
		tp.client.Do(t, func() {
			q := new(dns.Msg)
			q.SetQuestion("lan.test.", dns.TypeA)
			for _, server := range []string{"198.18.3.1:53", "[2001:2:0:3::1]:53"} {
				c := &dns.Client{Timeout: 5 * time.Second}
				a, _, err := c.Exchange(q, server)
				if err != nil || len(a.Answer) != 1 || !strings.Contains(a.Answer[0].String(), lanHost.Addr().String()) {
					t.Errorf("DNS through the gateway's %s: %v %v", server, a, err)
				}
			}
		})
		up := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 100<<20, false)
		down := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 100<<20, true)
		up6 := nstest.Transfer(t, tp.lan, "["+lanHost6.Addr().String()+"]:0", tp.client, lanHost6.Addr().String(), 100<<20, false)
		down6 := nstest.Transfer(t, tp.lan, "["+lanHost6.Addr().String()+"]:0", tp.client, lanHost6.Addr().String(), 100<<20, true)
		t.Logf("OpenSSH %s ethernet → rootless gateway: IPv4 upload %v, download %v; IPv6 upload %v, download %v", o.Version, up, down, up6, down6)

		capture.Signal(os.Interrupt)
		capture.Wait(5 * time.Second)
		dhcp, ok1 := firstGap(capture.Log(), regexp.MustCompile(`0\.0\.0\.0\.68 > 255\.255\.255\.255\.67`), regexp.MustCompile(`198\.18\.3\.1\.67 > `))
		rsra, ok2 := firstGap(capture.Log(), regexp.MustCompile(`router solicitation`), regexp.MustCompile(`fe80::1 > .*router advertisement`))
		if !ok1 || !ok2 {
			t.Fatalf("capture lacks DHCP (%v) or RS→RA (%v):\n%s", ok1, ok2, capture.Log())
		}
		t.Logf("timings (OpenSSH %s): DHCP discover→offer %v (udhcpc to a lease %v); RS→RA %v (rdisc6 -1 in all %v)",
			o.Version, dhcp, udhcpcTook, rsra, rdiscTook)
		if dhcp > 50*time.Millisecond {
			t.Errorf("DHCP discover→offer took %v, want under 50 ms", dhcp)
		}
		if rsra > 100*time.Millisecond {
			t.Errorf("RS→RA took %v, want under 100 ms", rsra)
		}
		ssh.Signal(os.Interrupt)
		nstest.WaitFor(t, 10*time.Second, "tunnel down", func() bool { return strings.Contains(gw.Log(), "tunnel down") })
		if !strings.Contains(gw.Log(), "ethernet client's MAC learnt") || !strings.Contains(gw.Log(), "ethernet client's SLAAC address accepted") {
			t.Errorf("the gateway did not log the client's MAC and SLAAC address:\n%s", gw.Log())
		}
	})
}

// e: stock ssh into a rootless gateway with --route networks, following
// its session's commands. DHCP sends the IPv4 network as a classless
// static route (option 121), and neither busybox udhcpc nor ISC dhclient,
// with scripts that follow RFC 3442 as Debian's dhclient-script does,
// adds a default route; accept_ra_defrtr=0 keeps the IPv6 default route
// away too. Both networks are reached through the explicit routes.
func TestRootlessEthernetRoutes(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"udhcpc", "dhclient"} {
		nstest.RequireTool(t, tool)
	}
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanServices(t)
	tp.addLAN6(t)
	priv, pub := tp.key(t, o, "client")
	gw := tp.startRootless(t, pub+"\n", "--subnet", subnet6.String(),
		"--route", lanHost.Masked().String(), "--route", lanHost6.Masked().String())
	ssh := tp.sshTunnel(t, o, priv, "ethernet", "0:any")
	nstest.WaitFor(t, 15*time.Second, "status text", func() bool {
		if ssh.Exited() {
			t.Fatalf("ssh exited: %s", ssh.Log())
		}
		return strings.Contains(ssh.Log(), "ip -6 route replace")
	})
	for _, want := range []string{"option 121", "accept_ra_defrtr=0",
		"ip route replace 198.18.2.0/24 via 198.18.3.1 dev $dev", "ip -6 route replace 2001:2:0:2::/64 via fe80::1 dev $dev"} {
		if !strings.Contains(ssh.Log(), want) {
			t.Errorf("the session text lacks %q:\n%s", want, ssh.Log())
		}
	}
	waitTunnel(t, tp.client, "tap0", ssh, gw, 1)

	noDefault := func(client string) {
		t.Helper()
		for _, fam := range []string{"-4", "-6"} {
			if r := tp.client.Run(t, "ip", fam, "route", "show", "default"); r != "" {
				t.Errorf("%s: an %s default route: %q", client, fam, r)
			}
		}
		pinned(t, tp.client)
		nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
		nstest.Ping(t, tp.client, lanHost6.Addr().String(), 2)
	}

	// busybox udhcpc: does it hand option 121 to its script?
	script, leaseFile := writeScript(t, udhcpcScript)
	followStatus(t, tp.client, ssh.Log(), func() {
		if out, err := tp.client.Cmd("udhcpc", "-i", "tap0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script).CombinedOutput(); err != nil {
			t.Fatalf("udhcpc: %v\n%s\ngateway:\n%s", err, out, gw.Log())
		}
	})
	if got, err := os.ReadFile(leaseFile); err != nil || !strings.Contains(string(got), "staticroutes=198.18.2.0/24 198.18.3.1") {
		t.Errorf("udhcpc's lease %q (%v) lacks option 121's route", got, err)
	}
	nstest.WaitFor(t, 15*time.Second, "a SLAAC address on tap0", func() bool {
		out, _ := tp.client.Cmd("ip", "-6", "addr", "show", "dev", "tap0", "scope", "global").CombinedOutput()
		return strings.Contains(string(out), "2001:2:0:3:") && !strings.Contains(string(out), "tentative")
	})
	noDefault("udhcpc")

	// ISC dhclient on the same tap, from scratch: its option 121 as
	// Debian's dhclient-script reads it.
	tp.client.Run(t, "ip", "-4", "addr", "flush", "dev", "tap0")
	tp.client.Run(t, "ip", "-4", "route", "flush", "dev", "tap0")
	script, leaseFile = writeScript(t, dhclientScript)
	dir := t.TempDir()
	dh := tp.client.Start(t, "dhclient", "-d", "-1", "-4", "-sf", script, "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "tap0")
	nstest.WaitFor(t, 15*time.Second, "dhclient's lease", func() bool {
		if dh.Exited() {
			t.Fatalf("dhclient exited: %s", dh.Log())
		}
		_, err := os.Stat(leaseFile)
		return err == nil
	})
	if got, _ := os.ReadFile(leaseFile); !strings.Contains(string(got), "routers=198.18.3.1 rfc3442=24 198 18 2 198 18 3 1") {
		t.Errorf("dhclient's lease %q lacks option 121's route", got)
	}
	if r := tp.client.Run(t, "ip", "-4", "route", "show", lanHost.Masked().String()); !strings.Contains(r, "via 198.18.3.1 dev tap0") {
		t.Errorf("dhclient's route to %s: %q", lanHost.Masked(), r)
	}
	noDefault("dhclient")
	dh.Signal(os.Interrupt)
	dh.Wait(5 * time.Second)
}

// d: two keys on the rootless gateway's ethernet tunnels, a stock ssh
// client taking its address from DHCP and sshvpn connect with no flags at
// all. Each gets its own key's address; the stock one gets the same lease
// again after a reconnect whose new tap has a new MAC; neither reaches
// the other, on the segment (nobody answers ARP for the other's address)
// or through the gateway (its policy denies the tunnel subnet).
func TestRootlessEthernetTwoClients(t *testing.T) {
	t.Parallel()
	nstest.RequireTool(t, "udhcpc")
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	second := nstest.New(t)
	nstest.Link(t, second, netip.MustParsePrefix("198.18.5.2/24"), tp.gw, netip.MustParsePrefix("198.18.5.1/24"))
	privA, pubA := tp.key(t, o, "stock")
	privB, pubB := tp.key(t, o, "sshvpn")
	gw := tp.startRootless(t, pubA+"\n"+pubB+"\n", "--listen", ":2222", "--route", lanHost.Masked().String())
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(udhcpcScript, script+".lease")), 0o700); err != nil {
		t.Fatal(err)
	}

	// A: stock ssh, then DHCP on its tap.
	stockLease := func(n int) (netip.Addr, string, *nstest.Proc) {
		ssh := tp.sshTunnel(t, o, privA, "ethernet", "0:any", "-N")
		waitTunnel(t, tp.client, "tap0", ssh, gw, n)
		tp.client.Run(t, "ip", "link", "set", "tap0", "up")
		if out, err := tp.client.Cmd("udhcpc", "-i", "tap0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script).CombinedOutput(); err != nil {
			t.Fatalf("udhcpc: %v\n%s\ngateway:\n%s", err, out, gw.Log())
		}
		lease, err := os.ReadFile(script + ".lease")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`ip=(\S+) `).FindSubmatch(lease)
		if m == nil {
			t.Fatalf("no address in the lease: %s", lease)
		}
		return netip.MustParseAddr(string(m[1])), ifaceMAC(t, tp.client, "tap0").String(), ssh
	}
	a, macA, sshA := stockLease(1)
	nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)

	// B: sshvpn connect into the ethernet tunnel, no addressing flags.
	c := second.Start(t, connectArgs(privB, "", "-p", "2222", "-o", "Tunnel=ethernet", "root@198.18.5.1")...)
	waitUp(t, c, 1)
	tapB := regexp.MustCompile(`device=(tap\d+)`).FindStringSubmatch(c.Log())
	if tapB == nil {
		t.Fatalf("sshvpn connect names no tap:\n%s", c.Log())
	}
	m := regexp.MustCompile(`inet (198\.18\.3\.\d+)/24`).FindStringSubmatch(second.Run(t, "ip", "-4", "-o", "addr", "show", "dev", tapB[1]))
	if m == nil {
		t.Fatalf("sshvpn connect's %s has no address from the gateway:\n%s", tapB[1], c.Log())
	}
	b := netip.MustParseAddr(m[1])
	if a == b {
		t.Fatalf("both keys got %s", a)
	}
	if strings.Contains(c.Log(), "pass --address") {
		t.Errorf("sshvpn connect asked for --address on the rootless ethernet tunnel:\n%s", c.Log())
	}
	if r := second.Run(t, "ip", "route", "show", lanHost.Masked().String()); !strings.Contains(r, "via 198.18.3.1 dev "+tapB[1]) {
		t.Errorf("the gateway's --route is not via its address on the tap: %q", r)
	}
	nstest.Ping(t, second, lanHost.Addr().String(), 2)

	// Neither reaches the other: on the segment nobody answers for the
	// other's address, and through the router the policy denies it.
	isolated := func(ns *nstest.NS, dev string, to netip.Addr) {
		t.Helper()
		out, err := ns.Cmd("ping", "-n", "-c", "2", "-W", "1", to.String()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "2 packets transmitted, 0 received") {
			t.Errorf("ping %s on the segment: %v\n%s", to, err, out)
		}
		ns.Run(t, "ip", "route", "add", to.String()+"/32", "via", "198.18.3.1", "dev", dev)
		out, err = ns.Cmd("ping", "-n", "-c", "2", "-W", "1", to.String()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "2 packets transmitted, 0 received") {
			t.Errorf("ping %s through the gateway: %v\n%s", to, err, out)
		}
		ns.Run(t, "ip", "route", "del", to.String()+"/32")
	}
	isolated(tp.client, "tap0", b)
	isolated(second, tapB[1], a)
	nstest.Ping(t, tp.client, "198.18.3.1", 1)

	// A again, on a new tap with a new MAC: the same lease.
	sshA.Signal(os.Interrupt)
	sshA.Wait(10 * time.Second)
	nstest.WaitFor(t, 10*time.Second, "the stock client's tap gone", func() bool {
		return tp.client.Cmd("ip", "link", "show", "tap0").Run() != nil
	})
	a2, macA2, _ := stockLease(3)
	if macA2 == macA {
		t.Fatalf("the new tap kept MAC %s: the test proves nothing", macA)
	}
	if a2 != a {
		t.Errorf("after a reconnect with MAC %s the key got %s, before %s with %s", macA2, a2, a, macA)
	}
	nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
	t.Logf("stock client %s (MAC %s, then %s), sshvpn client %s", a, macA, macA2, b)
}

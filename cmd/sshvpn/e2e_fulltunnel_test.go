//go:build integration

package main

import (
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The IPv6 side of newTopo's hosts.
var (
	underGW6     = netip.MustParsePrefix("2001:2:0:1::1/64")
	underClient6 = netip.MustParsePrefix("2001:2:0:1::2/64")
	lanGW6       = netip.MustParsePrefix("2001:2:0:2::1/64")
	lanHost6     = netip.MustParsePrefix("2001:2:0:2::2/64")
	tunGW6       = netip.MustParsePrefix("2001:2:0:3::1/64")
)

// dualStack gives newTopo's links their IPv6 addresses: each namespace's
// links are veth0, veth1, ... in the order newTopo made them.
func (tp *topo) dualStack(t *testing.T) {
	t.Helper()
	for _, a := range []struct {
		ns  *nstest.NS
		dev string
		p   netip.Prefix
	}{{tp.client, "veth0", underClient6}, {tp.gw, "veth0", underGW6}, {tp.gw, "veth1", lanGW6}, {tp.lan, "veth0", lanHost6}} {
		a.ns.Run(t, "ip", "addr", "add", a.p.String(), "dev", a.dev, "nodad")
	}
}

// routingTables is every route of every table and every rule, of both
// families, leaving out the link-local routes that come and go with carrier,
// and what a full tunnel may add for strict reverse path filtering.
func routingTables(t *testing.T, ns *nstest.NS) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-4", "rule"}, {"ip", "-6", "rule"},
		{"nft", "list", "ruleset"}, {"sysctl", "net.ipv4.conf.all.src_valid_mark"},
	} {
		b.WriteString("$ " + strings.Join(args, " ") + "\n")
		for _, l := range strings.SplitAfter(ns.Run(t, args...), "\n") {
			if !strings.Contains(l, "fe80::") {
				b.WriteString(l)
			}
		}
	}
	return b.String()
}

// killSessions resets the gateway's end of every established SSH
// connection, as a middlebox or a crashing session would.
func killSessions(t *testing.T, gw *nstest.NS) {
	t.Helper()
	gw.Run(t, "ss", "-K", "state", "established", "( sport = :2222 )")
}

// A full tunnel (--route default) to an sshvpn gateway the
// client reaches only through its default route, over IPv4 and over IPv6.
// The SSH connection keeps its path outside the tunnel, a killed session
// reconnects the same way, and SIGTERM leaves every table and rule as it
// found them. Without the pinning, --route default fails ("file exists")
// or the SSH connection is routed into its own tunnel and dies.
func TestConnectFullTunnel(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "ss")
	nstest.RequireTool(t, "nft")
	o := nstest.OpenSSHs(t)[0]
	for _, c := range []struct {
		name, server, client string
		routes               []string
		strict               bool // rp_filter=1 on the uplink
	}{
		{"ssh-over-IPv4", lanGW.Addr().String(), underClient.Addr().String(), []string{"--route", "default"}, false},
		{"ssh-over-IPv6", lanGW6.Addr().String(), underClient6.Addr().String(),
			[]string{"--route", "0.0.0.0/1", "--route", "128.0.0.0/1", "--route", "::/1", "--route", "8000::/1"}, false},
		{"strict-rp_filter", lanGW.Addr().String(), underClient.Addr().String(), []string{"--route", "default"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := newTopo(t)
			tp.dualStack(t)
			priv, pub := tp.key(t, o, "client")
			// The gateway listens on every address; the client dials the
			// one on the gateway's LAN link, which it reaches only through
			// its default route.
			tp.startGateway(t, pub+"\n", "--listen", ":2222", "--tun-address", tunGW.String(), "--tun-address", tunGW6.String(), "--nat")
			tp.client.Run(t, "ip", "route", "add", "default", "via", underGW.Addr().String())
			tp.client.Run(t, "ip", "-6", "route", "add", "default", "via", underGW6.Addr().String())
			// The LAN host has no route back to the client's underlay: it
			// answers only what comes through the tunnel, masqueraded.
			for _, h := range []string{lanHost.Addr().String(), lanHost6.Addr().String()} {
				if nstest.CanPing(tp.client, h) {
					t.Fatalf("%s answered without a tunnel: the test proves nothing", h)
				}
			}
			if c.strict {
				// As RHEL ships it: the SSH server's replies are checked
				// against the routes an unmarked packet would take.
				tp.client.Run(t, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=1")
			}
			before := routingTables(t, tp.client)

			args := append([]string{"-p", "2222", "--state-dir", t.TempDir()}, c.routes...)
			p := tp.client.Start(t, connectArgs(priv, "", append(args, "root@"+c.server)...)...)
			waitUp(t, p, 1)
			reach := func() {
				t.Helper()
				nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
				nstest.Ping(t, tp.client, lanHost6.Addr().String(), 2)
				// The gateway's own address on the LAN link is the SSH
				// server's: unmarked traffic to it goes through the tunnel
				// too, only the SSH connection does not.
				nstest.Ping(t, tp.client, c.server, 1)
			}
			reach()
			during := routingTables(t, tp.client)
			for _, want := range []string{"lookup main suppress_prefixlength 0", "not from all fwmark"} {
				if !strings.Contains(during, want) {
					t.Errorf("while up, the rules lack %q:\n%s", want, during)
				}
			}
			if ss := tp.client.Run(t, "ss", "-tnH", "state", "established", "( dport = :2222 )"); !strings.Contains(ss, c.client) {
				t.Errorf("the SSH connection does not leave from the underlay address %s:\n%s", c.client, ss)
			}

			killSessions(t, tp.gw)
			waitUp(t, p, 2)
			if !strings.Contains(p.Log(), "reconnecting") {
				t.Errorf("no reconnect in the log:\n%s", p.Log())
			}
			reach()

			p.Signal(syscall.SIGTERM)
			if err := p.Wait(15 * time.Second); err != nil {
				t.Fatalf("sshvpn connect did not end cleanly on SIGTERM: %v\n%s", err, p.Log())
			}
			if after := routingTables(t, tp.client); after != before {
				t.Errorf("the routing tables changed.\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if t.Failed() {
				t.Logf("sshvpn connect:\n%s", p.Log())
			}
		})
	}
}

// A route that covers the SSH server's address but is not default-like
// stays in the main table, where it captures the SSH connection: the client
// warns, naming the route.
func TestConnectWarnsOfRouteOverServer(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, pub := tp.key(t, o, "client")
	tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String())
	p := tp.client.Start(t, connectArgs(priv, "", "-p", "2222", "--state-dir", t.TempDir(),
		"--route", "198.18.0.0/16", "root@"+underGW.Addr().String())...)
	nstest.WaitFor(t, 20*time.Second, "the warning", func() bool {
		return strings.Contains(p.Log(), "covers the address of the SSH connection") && strings.Contains(p.Log(), "route=198.18.0.0/16")
	})
	p.Signal(os.Interrupt)
	p.Wait(15 * time.Second)
}

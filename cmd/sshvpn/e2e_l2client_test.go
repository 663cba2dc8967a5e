//go:build integration

package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// tunGW6's network, where the gateway keeps the clients' IPv6 addresses.
var tunClient6Net = tunGW6.Masked()

// reachLAN pings the LAN host over both families and moves a few MiB each
// way to it, byte for byte.
func reachLAN(t *testing.T, tp *topo, what string) {
	t.Helper()
	nstest.Ping(t, tp.client, lanHost.Addr().String(), 3)
	nstest.Ping(t, tp.client, lanHost6.Addr().String(), 3)
	down := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 8<<20, true)
	up := nstest.Transfer(t, tp.lan, "["+lanHost6.Addr().String()+"]:0", tp.client, lanHost6.Addr().String(), 8<<20, false)
	t.Logf("%s: LAN download over IPv4 %v, upload over IPv6 %v", what, down, up)
}

// A kernel gateway's ethernet tunnel, not bridged: the LAN behind it is
// reached via the gateway's address on the tap, not by asking ARP (or
// NDP) for the LAN's hosts on the tap, where nobody answers. sshvpn connect
// needs no flag but the network (the IPv4 LAN from --route, the IPv6 one
// from the gateway's --route); a stock ssh client gets there by running
// the commands of the gateway's status text as they stand (the gateway
// names both networks there).
func TestConnectEthernetNextHop(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	gwArgs := []string{"--tun-address", tunGW.String(), "--tun-address", tunGW6.String(), "--nat", "--route", lanHost6.Masked().String()}

	t.Run("sshvpn", func(t *testing.T) {
		t.Parallel()
		tp := newTopo(t)
		tp.dualStack(t)
		priv, pub := tp.key(t, o, "client")
		tp.startGateway(t, pub+"\n", gwArgs...)
		c := tp.client.Start(t, connectArgs(priv, "", "-p", "2222", "-o", "Tunnel=ethernet",
			"--route", lanHost.Masked().String(), "root@"+underGW.Addr().String())...)
		waitUp(t, c, 1)
		nstest.WaitFor(t, 5*time.Second, "routes on tap0", func() bool {
			return strings.Contains(c.Log(), "local device configured")
		})
		v4 := tp.client.Run(t, "ip", "route", "show", lanHost.Masked().String())
		v6 := tp.client.Run(t, "ip", "-6", "route", "show", lanHost6.Masked().String())
		if !strings.Contains(v4, "via "+tunGW.Addr().String()+" dev tap0") || !strings.Contains(v6, "via "+tunGW6.Addr().String()+" dev tap0") {
			t.Fatalf("the LAN is not routed via the gateway's addresses on tap0:\n%s%s", v4, v6)
		}
		if strings.Contains(c.Log(), "pass --address") {
			t.Errorf("the client asks for --address although the gateway assigned addresses:\n%s", c.Log())
		}
		reachLAN(t, tp, "sshvpn connect -o Tunnel=ethernet")

		c.Signal(syscall.SIGTERM)
		if err := c.Wait(15 * time.Second); err != nil {
			t.Fatalf("sshvpn connect did not end cleanly: %v\n%s", err, c.Log())
		}
		if r := tp.client.Run(t, "ip", "route", "show", lanHost.Masked().String()); r != "" {
			t.Errorf("the route stayed after exit: %s", r)
		}
	})

	t.Run("stock-ssh", func(t *testing.T) {
		t.Parallel()
		tp := newTopo(t)
		tp.dualStack(t)
		priv, pub := tp.key(t, o, "client")
		gw := tp.startGateway(t, pub+"\n", append(gwArgs, "--route", lanHost.Masked().String())...)
		ssh := tp.sshTunnel(t, o, priv, "ethernet", "0:any")
		waitTunnel(t, tp.client, "tap0", ssh, gw, 1)
		// The status text's commands, pasted into a shell with the
		// client's tap named where the text says to.
		nstest.WaitFor(t, 5*time.Second, "status text in the ssh session", func() bool {
			return strings.Contains(ssh.Log(), "ip route add "+lanHost.Masked().String())
		})
		status := ssh.Log()
		t.Logf("status text:\n%s", status)
		followStatus(t, tp.client, status, func() { t.Fatal("a DHCP command for a tunnel the gateway addresses itself") })
		// The IPv6 address the status gave goes through duplicate address
		// detection first.
		nstest.WaitFor(t, 5*time.Second, "IPv6 address on tap0 usable", func() bool {
			out := tp.client.Run(t, "ip", "-6", "addr", "show", "dev", "tap0", "to", tunClient6Net.String())
			return strings.Contains(out, "inet6") && !strings.Contains(out, "tentative")
		})
		if r := tp.client.Run(t, "ip", "route", "show", lanHost.Masked().String()); !strings.Contains(r, "via "+tunGW.Addr().String()) {
			t.Fatalf("the status text's commands did not route the LAN via the gateway: %s", r)
		}
		reachLAN(t, tp, "stock ssh -o Tunnel=ethernet")
	})
}

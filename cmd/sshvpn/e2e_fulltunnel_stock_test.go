//go:build integration

package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The full tunnel against stock sshd, both generations: a full tunnel
// into Debian's or the unpacked sshd (PermitTunnel yes, tun0 made by
// hand), which the client reaches only through its default route. The
// LAN behind it answers through the tunnel; a killed session reconnects
// on the pinned path; SIGTERM leaves the routing as it was.
func TestConnectFullTunnelStockSSHD(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		nstest.RequireTool(t, "ss")
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		tp.gw.Run(t, "ip", "tuntap", "add", "dev", "tun0", "mode", "tun")
		tp.gw.Run(t, "ip", "addr", "add", tunGW.String(), "dev", "tun0")
		tp.gw.Run(t, "ip", "link", "set", "tun0", "up")
		tp.routeBack(t)
		server := lanGW.Addr().String()
		sshd := o.StartSSHD(t, tp.gw, nstest.SSHDConfig{ListenAddr: server + ":22", PermitTunnel: "yes", AuthorizedKeys: pub + "\n"})
		tp.client.Run(t, "ip", "route", "add", "default", "via", underGW.Addr().String())
		before := routingTables(t, tp.client)

		p := tp.client.Start(t, connectArgs(priv, "", "-w", "any:0", "--address", tunClient.String(),
			"--route", "default", "root@"+server)...)
		waitUp(t, p, 1)
		nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
		if ss := tp.client.Run(t, "ss", "-tnH", "state", "established", "( dport = :22 )"); !strings.Contains(ss, underClient.Addr().String()) {
			t.Errorf("the SSH connection does not leave from the underlay:\n%s", ss)
		}

		tp.gw.Run(t, "ss", "-K", "state", "established", "( sport = :22 )")
		waitUp(t, p, 2)
		nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)

		p.Signal(syscall.SIGTERM)
		if err := p.Wait(15 * time.Second); err != nil {
			t.Fatalf("sshvpn connect did not end cleanly: %v\n%s", err, p.Log())
		}
		if after := routingTables(t, tp.client); after != before {
			t.Errorf("the routing tables changed.\nbefore:\n%s\nafter:\n%s", before, after)
		}
		_ = sshd
	})
}

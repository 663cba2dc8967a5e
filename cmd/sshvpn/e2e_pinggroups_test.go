//go:build integration

package main

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// A rootless gateway started where its group may open no ping sockets
// gives the sysctl line that allows them, for its own group, and forwards
// pings once the line is run, without a restart.
func TestRootlessPingAllowedLater(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "ping")
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, pub := tp.key(t, o, "client")
	gw := tp.startRootlessPinging(t, "1 0", pub+"\n")
	if !strings.Contains(gw.Log(), "group 65534") || !strings.Contains(gw.Log(), `sysctl -w net.ipv4.ping_group_range=\"65534 65534\"`) {
		t.Fatalf("the gateway does not give the sysctl line for its group 65534:\n%s", gw.Log())
	}

	ssh := tp.sshTunnel(t, o, priv, "point-to-point", "0:any")
	yours := regexp.MustCompile(`your address (198\.18\.3\.\d+/24)`)
	nstest.WaitFor(t, 15*time.Second, "status text", func() bool {
		if ssh.Exited() {
			t.Fatalf("ssh exited: %s", ssh.Log())
		}
		return yours.MatchString(ssh.Log())
	})
	upClient(t, tp.client, "tun0", netip.MustParsePrefix(yours.FindStringSubmatch(ssh.Log())[1]), lanHost.Masked())
	lan := lanHost.Addr().String()
	if nstest.CanPing(tp.client, lan) {
		t.Fatal("a ping went through a gateway that may open no ping sockets")
	}

	tp.gw.Run(t, "sysctl", "-qw", "net.ipv4.ping_group_range=65534 65534")
	widened := time.Now()
	nstest.WaitFor(t, 10*time.Second, "a ping through the gateway once the sysctl allows it", func() bool {
		return nstest.CanPing(tp.client, lan)
	})
	t.Logf("pings forwarded %v after the sysctl", time.Since(widened).Round(100*time.Millisecond))
	if gw.Exited() || strings.Count(gw.Log(), "listening") != 1 {
		t.Fatalf("the gateway restarted:\n%s", gw.Log())
	}
	if !strings.Contains(gw.Log(), "ping sockets are allowed now") {
		t.Errorf("the gateway did not say that pings are forwarded now:\n%s", gw.Log())
	}
}

//go:build integration

package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// Two stock clients on one gateway, each with its own tunnel device but the
// same gateway network: replies reach the right client, traffic flows to both
// at once, and one client cannot take the other's address.
func TestTwoClients(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		second := nstest.New(t)
		nstest.Link(t, second, netip.MustParsePrefix("198.18.5.2/24"), tp.gw, netip.MustParsePrefix("198.18.5.1/24"))
		// Two clients are two keys: one key is one client, whose newer
		// tunnel may take its own addresses over.
		priv, pub := tp.key(t, o, "client")
		priv2, pub2 := tp.key(t, o, "second")
		gw := tp.startGateway(t, pub+"\n"+pub2+"\n", "--tun-address", tunGW.String(), "--listen", ":2222")

		one := tp.sshTunnel(t, o, priv, "point-to-point", "0:any", "-N")
		waitTunnel(t, tp.client, "tun0", one, gw, 1)
		upClient(t, tp.client, "tun0", tunClient)
		nstest.Ping(t, tp.client, tunGW.Addr().String(), 1)

		args := o.ClientArgs(t, priv2, "", "-o", "Tunnel=point-to-point", "-w", "0:any", "-N", "-p", "2222", "root@198.18.5.1")
		two := second.Start(t, args...)
		waitTunnel(t, second, "tun0", two, gw, 2)
		otherAddr := netip.MustParsePrefix("198.18.3.3/24")
		upClient(t, second, "tun0", otherAddr)
		nstest.Ping(t, second, tunGW.Addr().String(), 1)

		// From the gateway, each client answers through its own device.
		nstest.Ping(t, tp.gw, tunClient.Addr().String(), 2)
		nstest.Ping(t, tp.gw, otherAddr.Addr().String(), 2)

		// Both downloads run at once; each must arrive whole.
		var rs [2]nstest.Result
		trs := [2]*nstest.TransferRun{
			nstest.StartTransfer(t, tp.gw, tunGW.Addr().String()+":0", tp.client, tunGW.Addr().String(), 20<<20, true),
			nstest.StartTransfer(t, tp.gw, tunGW.Addr().String()+":0", second, tunGW.Addr().String(), 20<<20, true),
		}
		for i, tr := range trs {
			r, err := tr.Wait()
			if err != nil {
				t.Errorf("client %d's download: %v", i+1, err)
			}
			rs[i] = r
		}
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("concurrent downloads: first %v, second %v", rs[0], rs[1])

		// The second client claims the first one's address: dropped.
		second.Run(t, "ip", "addr", "add", tunClient.Addr().String()+"/32", "dev", "tun0")
		out, err := second.Cmd("ping", "-n", "-c", "2", "-W", "1", "-I", tunClient.Addr().String(), tunGW.Addr().String()).CombinedOutput()
		if err == nil {
			t.Fatalf("a ping spoofing the first client's address got through:\n%s", out)
		}
		// Failing is not enough: the pings must have gone out and been lost.
		if !strings.Contains(string(out), "2 packets transmitted, 0 received") {
			t.Fatalf("the spoofing ping failed without sending (%v):\n%s", err, out)
		}
		nstest.Ping(t, tp.client, tunGW.Addr().String(), 2)
		nstest.WaitFor(t, 5*time.Second, "spoof warning", func() bool {
			return strings.Contains(gw.Log(), "another tunnel holds")
		})
	})
}

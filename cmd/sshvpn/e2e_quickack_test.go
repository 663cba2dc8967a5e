//go:build integration

package main

import (
	"slices"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// A stock sshd never sets TCP_NODELAY on a tunnel's connection (no tty),
// so a reply it sends behind another still unacknowledged waits for
// Nagle until our ACK, and a delayed ACK is 16 ms here: without the quick
// ACKs of sshclient/quickack_linux.go a ping to the LAN behind sshd came
// back after 16.2 ms at the median (62 and 85 of 99 replies over 5 ms, two
// runs), with them after 0.55 ms (none over 5 ms). The bound is half the
// stall, far above a busy machine's noise.
func TestConnectStockSSHDNeedsNoNagleWait(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		tp.connectToStockSSHD(t, o)
		nstest.Ping(t, tp.client, lanHost.Addr().String(), 1)
		rtts := nstest.PingRTTs(t, tp.client, lanHost.Addr().String(), 100, 10*time.Millisecond)
		if len(rtts) < 50 {
			t.Fatalf("%d of 100 pings answered", len(rtts))
		}
		slices.Sort(rtts)
		p50, worst := rtts[len(rtts)/2], rtts[len(rtts)-1]
		t.Logf("OpenSSH %s: %d replies, p50 %v, p90 %v, max %v", o.Version, len(rtts), p50, rtts[len(rtts)*9/10], worst)
		if p50 > 8*time.Millisecond {
			t.Errorf("pings through stock sshd take %v at the median: its replies wait for our delayed ACKs", p50)
		}
	})
}

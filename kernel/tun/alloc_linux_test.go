//go:build linux

package tun

import (
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// TestAllocs proves Read and Write allocate nothing per packet: each run
// writes an ICMP echo request for the tun's own address and reads the
// kernel's echo reply back.
func TestAllocs(t *testing.T) {
	inNewNS(t, func() {
		tun := open(t, relay.PointToPoint, relay.AnyUnit)
		// No IPv6 on the link, so the kernel sends nothing of its own.
		run(t, "sysctl", "-q", "-w", "net.ipv6.conf."+tun.Name()+".disable_ipv6=1")
		run(t, "ip", "link", "set", tun.Name(), "up")
		run(t, "ip", "addr", "add", "198.18.0.1/24", "dev", tun.Name())
		wbufs := headroom(echo4(ip("198.18.0.2"), ip("198.18.0.1"), 8, 0x5353, 1, []byte("allocs")))
		rbufs, sizes := [][]byte{make([]byte, relay.Headroom+tun.MTU())}, make([]int, 1)
		watchdog := time.AfterFunc(30*time.Second, func() { tun.Close() })
		defer watchdog.Stop()
		allocs := testing.AllocsPerRun(200, func() {
			if n, err := tun.Write(wbufs, relay.Headroom); n != 1 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			n, err := tun.Read(rbufs, sizes, relay.Headroom)
			if n != 1 || err != nil {
				t.Fatalf("Read = %d, %v", n, err)
			}
			if p := rbufs[0][relay.Headroom:]; p[9] != 1 || p[20] != 0 {
				t.Fatalf("read %x; want an ICMP echo reply", p[:sizes[0]])
			}
		})
		if allocs != 0 {
			t.Errorf("Write+Read allocate %.1f times per packet; want 0", allocs)
		}
	})
}

// TestTapAllocs is TestAllocs for a tap, with and without GSO: an ICMP
// echo request in a frame to the tap's MAC, the reply read back.
func TestTapAllocs(t *testing.T) {
	for _, gso := range []bool{false, true} {
		inNewNS(t, func() {
			tap, mac := upTap(t, gso)
			wbufs := headroom(frame(mac, peerMAC, echo4(ip("198.18.0.2"), ip("198.18.0.1"), 8, 0x5353, 1, []byte("allocs"))))
			rbufs, sizes := [][]byte{make([]byte, relay.Headroom+tap.MTU()+18)}, make([]int, 1)
			watchdog := time.AfterFunc(30*time.Second, func() { tap.Close() })
			defer watchdog.Stop()
			allocs := testing.AllocsPerRun(200, func() {
				if n, err := tap.Write(wbufs, relay.Headroom); n != 1 || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
				n, err := tap.Read(rbufs, sizes, relay.Headroom)
				if n != 1 || err != nil {
					t.Fatalf("Read = %d, %v", n, err)
				}
				if p := rbufs[0][relay.Headroom+14:]; p[9] != 1 || p[20] != 0 {
					t.Fatalf("read %x; want an ICMP echo reply", rbufs[0][relay.Headroom:relay.Headroom+sizes[0]])
				}
			})
			if allocs != 0 {
				t.Errorf("tap (GSO %v) Write+Read allocate %.1f times per packet; want 0", gso, allocs)
			}
		})
	}
}

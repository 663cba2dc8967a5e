//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/kernel/internal/kerneltest"
	"github.com/sshvpn/sshvpn/relay"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// The namespace helpers the tests share with kernel.
var (
	requireTool = kerneltest.RequireTool
	inNewNS     = kerneltest.InNewNS
	run         = kerneltest.Run
)

// open opens a Tun and closes it when the test ends.
func open(t *testing.T, mode relay.Mode, unit uint32) *Tun {
	t.Helper()
	tun, err := Open(Config{Mode: mode, Unit: unit})
	if err != nil {
		t.Fatalf("Open(%v, %d): %v", mode, unit, err)
	}
	t.Cleanup(func() { tun.Close() })
	return tun
}

// upTun opens a tun in the test's namespace, sets it up with 198.18.0.1/24
// and 2001:2::1/64. The namespace dies with the test, so nothing is reverted.
func upTun(t *testing.T) *Tun {
	t.Helper()
	tun := open(t, relay.PointToPoint, relay.AnyUnit)
	run(t, "ip", "link", "set", tun.Name(), "up")
	run(t, "ip", "addr", "add", "198.18.0.1/24", "dev", tun.Name())
	run(t, "ip", "addr", "add", "2001:2::1/64", "dev", tun.Name(), "nodad")
	// The kernel delivers packets for an IPv6 address once it has its
	// local route, which it adds from a workqueue a moment after the add.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(run(t, "ip", "-6", "route", "show", "table", "local"), "local 2001:2::1 dev "+tun.Name()) {
		if time.Now().After(deadline) {
			t.Fatal("2001:2::1 has no local route")
		}
		time.Sleep(time.Millisecond)
	}
	return tun
}

// readPacket reads from tun until match accepts a packet, and returns it.
// Packets the kernel sends on its own (IPv6 router solicitations, MLD) are
// passed over.
func readPacket(t *testing.T, tun *Tun, match func([]byte) bool) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		defer close(got)
		bufs, sizes := make([][]byte, 8), make([]int, 8)
		for i := range bufs {
			bufs[i] = make([]byte, relay.Headroom+tun.MTU())
		}
		for {
			n, err := tun.Read(bufs, sizes, relay.Headroom)
			if err != nil {
				return
			}
			for i := range n {
				if p := bufs[i][relay.Headroom : relay.Headroom+sizes[i]]; match(p) {
					got <- p
					return
				}
			}
		}
	}()
	select {
	case p, ok := <-got:
		if !ok {
			t.Fatal("Read failed before the packet arrived")
		}
		return p
	case <-time.After(5 * time.Second):
		tun.Close() // ends the reader
		t.Fatal("no matching packet read from the tun within 5s")
	}
	return nil
}

func TestPacketsIPv4(t *testing.T) {
	inNewNS(t, func() {
		tun := upTun(t)
		testPackets(t, tun, ip("198.18.0.1"), netip.MustParseAddrPort("198.18.0.2:9999"),
			func(src, dst netip.AddrPort, payload []byte) []byte { return udp4(src, dst, 7, false, payload) },
			func(got []byte, src, dst netip.AddrPort, payload []byte) []byte {
				// The kernel picks the ID and DF bit; everything else is fixed.
				return udp4(src, dst, binary.BigEndian.Uint16(got[4:]), got[6]&0x40 != 0, payload)
			})
	})
}

func TestPacketsIPv6(t *testing.T) {
	inNewNS(t, func() {
		tun := upTun(t)
		testPackets(t, tun, ip("2001:2::1"), netip.MustParseAddrPort("[2001:2::2]:9999"),
			func(src, dst netip.AddrPort, payload []byte) []byte { return udp6(src, dst, 0, payload) },
			func(got []byte, src, dst netip.AddrPort, payload []byte) []byte {
				// The kernel picks the flow label; everything else is fixed.
				return udp6(src, dst, binary.BigEndian.Uint32(got), payload)
			})
	})
}

type buildFunc func(src, dst netip.AddrPort, payload []byte) []byte

type rebuildFunc func(got []byte, src, dst netip.AddrPort, payload []byte) []byte

// testPackets sends a hand-built UDP packet from peer into the tun and
// receives it on a socket bound to local, then sends a datagram from that
// socket to peer and reads it from the tun, comparing it byte for byte with
// a hand-built packet.
func testPackets(t *testing.T, tun *Tun, local netip.Addr, peer netip.AddrPort, build buildFunc, rebuild rebuildFunc) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		t.Fatalf("listen on %s: %v", local, err)
	}
	defer conn.Close()
	me := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	me = netip.AddrPortFrom(me.Addr().Unmap(), me.Port())

	in := []byte("sshvpn kernel test: tun to socket")

	if n, err := tun.Write(headroom(build(peer, me, in)), relay.Headroom); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("socket did not receive the packet written to the tun: %v\n%s", err, nstat())
	}
	if !bytes.Equal(buf[:n], in) || from != peer {
		t.Errorf("socket got %q from %s; want %q from %s", buf[:n], from, in, peer)
	}

	out := []byte("sshvpn kernel test: socket to tun")
	if _, err := conn.WriteToUDPAddrPort(out, peer); err != nil {
		t.Fatalf("send to %s: %v", peer, err)
	}
	got := readPacket(t, tun, func(p []byte) bool { return bytes.HasSuffix(p, out) })
	if want := rebuild(got, me, peer, out); !bytes.Equal(got, want) {
		t.Errorf("tun read\n%x\nwant\n%x", got, want)
	}
}

func TestChecksum(t *testing.T) {
	// A header from RFC 1071's neighbour, the classic worked example.
	hdr := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := checksum(hdr, 0); got != 0xb861 {
		t.Fatalf("checksum = %#04x; want 0xb861", got)
	}
}

// nstat returns the namespace's network counters, to explain a lost packet.
func nstat() string {
	out, err := exec.Command("nstat", "-a").CombinedOutput()
	if err != nil {
		return "nstat: " + err.Error()
	}
	return string(out)
}

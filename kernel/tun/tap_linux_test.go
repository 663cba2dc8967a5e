//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/offload"
)

// peerMAC is the far end of the test taps: a static neighbour, so the
// kernel sends to it without asking ARP first.
var peerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}

// upTap opens a tap with or without GSO in the test's namespace, up with
// 198.18.0.1/24 and 198.18.0.2 a permanent neighbour at peerMAC, and
// returns it with its own MAC. IPv6 is off, so the kernel sends nothing of
// its own.
func upTap(t *testing.T, gso bool) (*Tun, net.HardwareAddr) {
	t.Helper()
	tap, err := Open(Config{Mode: relay.Ethernet, Unit: relay.AnyUnit, GSO: gso})
	if err != nil {
		t.Fatalf("Open(tap, GSO %v): %v", gso, err)
	}
	t.Cleanup(func() { tap.Close() })
	if !tap.vnet || tap.GSO() != gso {
		t.Fatalf("tap opened with vnet %v, GSO %v; want vnet true, GSO %v", tap.vnet, tap.GSO(), gso)
	}
	run(t, "sysctl", "-q", "-w", "net.ipv6.conf."+tap.Name()+".disable_ipv6=1")
	run(t, "ip", "link", "set", tap.Name(), "up")
	run(t, "ip", "addr", "add", "198.18.0.1/24", "dev", tap.Name())
	run(t, "ip", "neigh", "add", "198.18.0.2", "lladdr", peerMAC.String(), "dev", tap.Name(), "nud", "permanent")
	link, err := netlink.LinkByName(tap.Name())
	if err != nil {
		t.Fatal(err)
	}
	return tap, link.Attrs().HardwareAddr
}

// frame puts the IPv4 packet p behind an Ethernet header.
func frame(dst, src net.HardwareAddr, p []byte) []byte {
	f := append(append(append([]byte(nil), dst...), src...), 0x08, 0x00)
	return append(f, p...)
}

// readFrame reads from tap until match accepts a frame, and returns it
// with the virtio-net header in front of it.
func readFrame(t *testing.T, tap *Tun, match func([]byte) bool) ([]byte, offload.Hdr) {
	t.Helper()
	type read struct {
		f []byte
		h offload.Hdr
	}
	got := make(chan read, 1)
	go func() {
		defer close(got)
		bufs, sizes := make([][]byte, 8), make([]int, 8)
		for i := range bufs {
			bufs[i] = make([]byte, relay.Headroom+tap.MTU()+18)
		}
		for {
			n, err := tap.Read(bufs, sizes, relay.Headroom)
			if err != nil {
				return
			}
			for i := range n {
				if f := bufs[i][relay.Headroom : relay.Headroom+sizes[i]]; match(f) {
					var h offload.Hdr
					h.Decode(bufs[i][relay.Headroom-offload.HdrLen:])
					got <- read{f, h}
					return
				}
			}
		}
	}()
	select {
	case r, ok := <-got:
		if !ok {
			t.Fatal("Read failed before the frame arrived")
		}
		return r.f, r.h
	case <-time.After(5 * time.Second):
		tap.Close() // ends the reader
		t.Fatal("no matching frame read from the tap within 5s")
	}
	return nil, offload.Hdr{}
}

// A tap opened with GSO hands out a UDP super-frame whole: one Ethernet
// header in front of a 5000-byte datagram train, with a header whose
// csum_start counts from the frame's first byte, as the kernel writes it;
// Split cuts it into the datagrams the socket sent.
func TestTapReadsSuperFrameWhole(t *testing.T) {
	inNewNS(t, func() {
		tap, mac := upTap(t, true)
		conn, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.0.1:0")),
			net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.0.2:9")))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		rc, err := conn.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		const gsoSize = 1000
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, gsoSize) })
		if serr != nil {
			t.Fatalf("UDP_SEGMENT: %v", serr)
		}
		payload := make([]byte, 5*gsoSize)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
		f, h := readFrame(t, tap, func(f []byte) bool { return len(f) > 14+20 && f[12] == 8 && f[13] == 0 && f[14+9] == 17 })
		if want := 14 + 20 + 8 + len(payload); len(f) != want {
			t.Fatalf("read a %d-byte frame (header %+v); want the %d-byte super-frame whole", len(f), h, want)
		}
		if !bytes.Equal(f[:6], peerMAC) || !bytes.Equal(f[6:12], mac) {
			t.Fatalf("frame from %x to %x; want from the tap's %s to %s", f[6:12], f[:6], mac, peerMAC)
		}
		want := offload.Hdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOUDPL4, GSOSize: gsoSize, CsumStart: 14 + 20, CsumOffset: 6}
		if h.HdrLen = 0; h != want {
			t.Fatalf("header %+v; want %+v: csum_start counts from the frame's start", h, want)
		}
		n, err := offload.Segments(offload.Ethernet, f, h)
		if err != nil || n != 5 {
			t.Fatalf("Segments = %d, %v; want 5", n, err)
		}
		outs, sizes := make([][]byte, n), make([]int, n)
		for i := range outs {
			outs[i] = make([]byte, 14+28+gsoSize)
		}
		if _, err := offload.Split(offload.Ethernet, f, h, 0, outs, sizes, 0); err != nil {
			t.Fatal(err)
		}
		src, dst := netip.MustParseAddrPort("198.18.0.1:0"), netip.MustParseAddrPort("198.18.0.2:9")
		src = netip.AddrPortFrom(src.Addr(), binary.BigEndian.Uint16(f[14+20:]))
		for i := range n {
			got := outs[i][:sizes[i]]
			id := binary.BigEndian.Uint16(got[14+4:])
			wantFrame := frame(peerMAC, mac, udp4(src, dst, id, got[14+6]&0x40 != 0, payload[i*gsoSize:(i+1)*gsoSize]))
			if !bytes.Equal(got, wantFrame) {
				t.Fatalf("datagram %d:\n got %x\nwant %x", i, got[:64], wantFrame[:64])
			}
		}
	})
}

// tcp4 is an IPv4 TCP segment with DF, no options and valid checksums.
func tcp4(src, dst netip.AddrPort, seq, ack uint32, flags byte, payload []byte) []byte {
	b := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12], b[13] = 5<<4, flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	copy(b[20:], payload)
	binary.BigEndian.PutUint16(b[16:], checksum(b, pseudoSum(src.Addr(), dst.Addr(), 6, len(b))))
	return ipv4(src.Addr(), dst.Addr(), 6, 1, true, b)
}

// A tap without GSO still coalesces the TCP segments written to it: after
// a handshake from the far end, ten data segments go to the kernel as one
// super-frame, and the socket reads their bytes in order.
func TestTapWritesCoalescedFrames(t *testing.T) {
	inNewNS(t, func() {
		tap, mac := upTap(t, false)
		ln, err := net.Listen("tcp4", "198.18.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		me := ln.Addr().(*net.TCPAddr).AddrPort()
		me = netip.AddrPortFrom(me.Addr().Unmap(), me.Port())
		peer := netip.MustParseAddrPort("198.18.0.2:40000")
		const syn, ack, psh = 0x02, 0x10, 0x08

		if n, err := tap.Write(headroom(frame(mac, peerMAC, tcp4(peer, me, 1000, 0, syn, nil))), relay.Headroom); n != 1 || err != nil {
			t.Fatalf("Write(SYN) = %d, %v", n, err)
		}
		synAck, _ := readFrame(t, tap, func(f []byte) bool {
			return len(f) >= 14+40 && f[14+9] == 6 && f[14+20+13] == syn|ack
		})
		isn := binary.BigEndian.Uint32(synAck[14+20+4:])

		const segs, mss = 10, 1400
		payload := make([]byte, segs*mss)
		for i := range payload {
			payload[i] = byte(i*13 + i>>8)
		}
		pkts := [][]byte{frame(mac, peerMAC, tcp4(peer, me, 1001, isn+1, ack, nil))}
		for i := range segs {
			flags := byte(ack)
			if i == segs-1 {
				flags |= psh
			}
			pkts = append(pkts, frame(mac, peerMAC, tcp4(peer, me, 1001+uint32(i*mss), isn+1, flags, payload[i*mss:(i+1)*mss])))
		}
		if n, err := tap.Write(headroom(pkts...), relay.Headroom); n != len(pkts) || err != nil {
			t.Fatalf("Write(ACK and %d segments) = %d, %v", segs, n, err)
		}
		if tap.wr.n != 2 {
			t.Fatalf("the ACK and %d segments went to the tap as %d frames; want 2, the segments merged", segs, tap.wr.n)
		}

		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		conn, err := ln.Accept()
		if err != nil {
			t.Fatalf("accept: %v\n%s", err, nstat())
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(payload))
		if _, err := readFull(conn, got); err != nil {
			t.Fatalf("read the coalesced bytes: %v\n%s", err, nstat())
		}
		if !bytes.Equal(got, payload) {
			t.Fatal("the socket read other bytes than the segments carried")
		}
	})
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

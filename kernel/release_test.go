package kernel

import (
	"encoding/binary"
	"net"
	"testing"
)

// dhcpFrame is an Ethernet frame from src carrying an IPv4 UDP datagram
// to dport.
func dhcpFrame(src net.HardwareAddr, proto byte, frag, dport uint16) []byte {
	f := make([]byte, 14+20+8+300)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	f[14] = 0x45
	binary.BigEndian.PutUint16(f[14+6:], frag)
	f[14+9] = proto
	binary.BigEndian.PutUint16(f[14+20+2:], dport)
	return f
}

// Leave watches for the tap's own DHCP message to a server, and only that.
func TestIsDHCPToServer(t *testing.T) {
	mine := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	other := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	arp := dhcpFrame(mine, 17, 0, 67)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	for _, c := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"the release", dhcpFrame(mine, 17, 0, 67), true},
		{"another host's", dhcpFrame(other, 17, 0, 67), false},
		{"to the client port", dhcpFrame(mine, 17, 0, 68), false},
		{"TCP", dhcpFrame(mine, 6, 0, 67), false},
		{"a later fragment", dhcpFrame(mine, 17, 0x0020, 67), false},
		{"ARP", arp, false},
		{"cut short", dhcpFrame(mine, 17, 0, 67)[:30], false},
	} {
		if got := isDHCPToServer(c.frame, mine); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// The watch ends at the read after the one that saw it.
	w := newReleaseWatch(mine)
	w.next()
	w.see(dhcpFrame(other, 17, 0, 67))
	w.next()
	select {
	case <-w.done:
		t.Fatal("the watch ended on another host's frame")
	default:
	}
	w.see(dhcpFrame(mine, 17, 0, 67))
	w.next()
	select {
	case <-w.done:
	default:
		t.Fatal("the watch did not end at the read after the release")
	}
	w.next() // again: no double close
}

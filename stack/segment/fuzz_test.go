package segment

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzWrite feeds the segment one frame from the client, as a hostile
// peer would send it. Whatever the bytes, the segment must neither panic
// nor pass the stack anything but an IP packet from an address the client
// may use, and every frame it sends back must come from the gateway's MAC
// and, for ARP, answer for one of the gateway's own addresses.
func FuzzWrite(f *testing.F) {
	slaac := netip.MustParseAddr("2001:2::ff:fe00:42")
	for _, seed := range [][]byte{
		eth(broadcastMAC, clientMAC, header.ARPProtocolNumber, arpRequestFor(clientMAC, lease.Addr(), gw4)),
		eth(broadcastMAC, clientMAC, header.IPv4ProtocolNumber, udp4(netip.IPv4Unspecified(), bcast, 68, 67, make([]byte, 240))),
		nsFrame(f, llClient, gw6, true),
		rsFrame(f, llClient),
		ip4Frame(lease.Addr(), netip.MustParseAddr("198.19.0.1")),
		ip6Frame(slaac, netip.MustParseAddr("2001:2:1::1")),
		ip6Frame(llClient, DefaultLinkLocal),
		ip4Frame(netip.MustParseAddr("198.18.200.8"), gw4), // another client's address
		eth(broadcastMAC, clientMAC, header.ARPProtocolNumber, arpRequestFor(clientMAC, lease.Addr(), netip.MustParseAddr("198.18.200.8"))),
		{0x81, 0x00},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		r := newRig(t, nil)
		// The client's MAC first, so that the fuzzed frame is judged as
		// the client's once its source MAC is clientMAC.
		r.write(ip4Frame(lease.Addr(), netip.MustParseAddr("198.19.0.1")))
		r.inner.takeWritten()
		r.write(frame)
		for _, p := range r.inner.takeWritten() {
			var src netip.Addr
			switch {
			case len(p) >= header.IPv4MinimumSize && header.IPVersion(p) == 4:
				src = netip.AddrFrom4([4]byte(header.IPv4(p).SourceAddress().As4()))
				if src != lease.Addr() {
					t.Fatalf("the stack got IPv4 from %s: % x", src, p)
				}
			case len(p) >= header.IPv6MinimumSize && header.IPVersion(p) == 6:
				src = netip.AddrFrom16(header.IPv6(p).SourceAddress().As16())
				if !stable6.Contains(src) && !src.IsLinkLocalUnicast() || src == gw6 {
					t.Fatalf("the stack got IPv6 from %s: % x", src, p)
				}
			default:
				t.Fatalf("the stack got a packet that is not IP: % x", p)
			}
		}
		for _, out := range r.read() {
			if len(out) < header.EthernetMinimumSize {
				t.Fatalf("runt frame to the client: % x", out)
			}
			e := header.Ethernet(out)
			if lmac(e.SourceAddress()) != gwMAC {
				t.Fatalf("frame to the client from %s", e.SourceAddress())
			}
			if e.Type() == header.ARPProtocolNumber {
				a := header.ARP(out[header.EthernetMinimumSize:])
				sender := netip.AddrFrom4([4]byte(a.ProtocolAddressSender()))
				if sender != gw4 && sender != dns4 {
					t.Fatalf("ARP reply claims %s", sender)
				}
			}
		}
	})
}

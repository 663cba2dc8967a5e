package segment

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/ndp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestPortSecurity(t *testing.T) {
	r := newRig(t, nil)
	r.write(ip4Frame(lease.Addr(), gw4)) // learns clientMAC
	if m, ok := r.seg.ClientMAC(); !ok || mac(m) != clientMAC {
		t.Fatalf("client MAC = %v, %v; want %v", m, ok, clientMAC)
	}
	spoof := ip4Frame(lease.Addr(), gw4)
	copy(spoof[6:12], otherMAC[:])
	mcastSrc := ip4Frame(lease.Addr(), gw4)
	mcastSrc[6] |= 1
	r.write(spoof, mcastSrc, ip4Frame(lease.Addr(), gw4))
	if got := r.seg.Stats().DropsForeignMAC.Load(); got != 2 {
		t.Errorf("DropsForeignMAC = %d, want 2 (another MAC, a multicast source)", got)
	}
	if got := len(r.inner.takeWritten()); got != 2 {
		t.Errorf("%d packets reached the stack, want the client's 2", got)
	}
}

func TestTaggedFramesDropped(t *testing.T) {
	r := newRig(t, nil)
	for _, tpid := range []uint16{0x8100, 0x88a8} {
		inner := ipv4Packet(lease.Addr(), gw4, header.TCPProtocolNumber, tcpSYN())
		tagged := eth(gwMAC, clientMAC, 0, append([]byte{0, 7, 0x08, 0x00}, inner...))
		binary.BigEndian.PutUint16(tagged[12:14], tpid)
		r.write(tagged)
	}
	if got := r.seg.Stats().DropsTagged.Load(); got != 2 {
		t.Errorf("DropsTagged = %d, want 2", got)
	}
	if w := r.inner.takeWritten(); len(w) != 0 {
		t.Errorf("tagged frames reached the stack: %d", len(w))
	}
}

func TestARPAnswersOnlyTheGatewaysAddresses(t *testing.T) {
	r := newRig(t, nil)
	for _, target := range []netip.Addr{gw4, dns4} {
		r.write(eth(broadcastMAC, clientMAC, header.ARPProtocolNumber, arpRequestFor(clientMAC, lease.Addr(), target)))
		fs := r.read()
		if len(fs) != 1 {
			t.Fatalf("ARP for %s: %d frames back, want 1", target, len(fs))
		}
		f := header.Ethernet(fs[0])
		if lmac(f.DestinationAddress()) != clientMAC || lmac(f.SourceAddress()) != gwMAC || f.Type() != header.ARPProtocolNumber {
			t.Fatalf("ARP reply frame %s -> %s type %#x", f.SourceAddress(), f.DestinationAddress(), f.Type())
		}
		a := header.ARP(fs[0][header.EthernetMinimumSize:])
		if !a.IsValid() || a.Op() != header.ARPReply || mac(a.HardwareAddressSender()) != gwMAC ||
			netip.AddrFrom4([4]byte(a.ProtocolAddressSender())) != target || mac(a.HardwareAddressTarget()) != clientMAC ||
			netip.AddrFrom4([4]byte(a.ProtocolAddressTarget())) != lease.Addr() {
			t.Errorf("ARP reply for %s: % x", target, []byte(a))
		}
	}
	// The client's own address (its probe), another client's, an outsider's.
	for _, target := range []netip.Addr{lease.Addr(), netip.MustParseAddr("198.18.200.8"), netip.MustParseAddr("198.19.0.1")} {
		r.write(eth(broadcastMAC, clientMAC, header.ARPProtocolNumber, arpRequestFor(clientMAC, netip.IPv4Unspecified(), target)))
		if fs := r.read(); len(fs) != 0 {
			t.Errorf("ARP for %s answered: the gateway claimed an address not its own", target)
		}
	}
	// A request whose sender MAC is not the frame's.
	r.write(eth(broadcastMAC, clientMAC, header.ARPProtocolNumber, arpRequestFor(otherMAC, lease.Addr(), gw4)))
	if fs := r.read(); len(fs) != 0 {
		t.Error("ARP with a forged sender MAC answered")
	}
	if got := r.seg.Stats().ARPReplies.Load(); got != 2 {
		t.Errorf("ARPReplies = %d, want 2", got)
	}
}

// nsFrame is a neighbour solicitation for target from src.
func nsFrame(t testing.TB, src, target netip.Addr, withSLLA bool) []byte {
	t.Helper()
	ns := &ndp.NeighborSolicitation{TargetAddress: target}
	if withSLLA {
		ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC[:]}}
	}
	dst, _ := ndp.SolicitedNodeMulticast(target)
	b, err := ndp.MarshalMessageChecksum(ns, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	return eth(ipv6MulticastMAC(dst.AsSlice()), clientMAC, header.IPv6ProtocolNumber, ipv6Raw(src, dst, header.ICMPv6ProtocolNumber, 255, b))
}

// parseND checks a frame from the gateway carries an ND message from
// the gateway's MAC to wantMAC and returns it and its IPv6 addresses.
func parseND(t *testing.T, f []byte, wantMAC mac) (ndp.Message, netip.Addr, netip.Addr) {
	t.Helper()
	e := header.Ethernet(f)
	if lmac(e.DestinationAddress()) != wantMAC || lmac(e.SourceAddress()) != gwMAC || e.Type() != header.IPv6ProtocolNumber {
		t.Fatalf("frame %s -> %s type %#x; want from %s to %s, IPv6", e.SourceAddress(), e.DestinationAddress(), e.Type(), gwMAC, wantMAC)
	}
	ip := header.IPv6(f[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || ip.HopLimit() != 255 || ip.NextHeader() != uint8(header.ICMPv6ProtocolNumber) {
		t.Fatalf("not an ND packet: % x", []byte(ip))
	}
	src, dst := netip.AddrFrom16(ip.SourceAddress().As16()), netip.AddrFrom16(ip.DestinationAddress().As16())
	if pseudoChecksum(src, dst, protoICMPv6, ip.Payload()) != 0 {
		t.Fatal("bad ICMPv6 checksum")
	}
	m, err := ndp.ParseMessage(ip.Payload())
	if err != nil {
		t.Fatal(err)
	}
	return m, src, dst
}

func TestNeighborSolicitation(t *testing.T) {
	r := newRig(t, nil)
	for _, target := range []netip.Addr{gw6, DefaultLinkLocal} {
		r.write(nsFrame(t, llClient, target, true))
		fs := r.read()
		if len(fs) != 1 {
			t.Fatalf("NS for %s: %d frames back, want 1", target, len(fs))
		}
		m, src, dst := parseND(t, fs[0], clientMAC)
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != target || !na.Solicited || !na.Override || !na.Router || src != target || dst != llClient {
			t.Fatalf("NA for %s: %+v from %s to %s", target, m, src, dst)
		}
		if l, ok := na.Options[0].(*ndp.LinkLayerAddress); !ok || l.Direction != ndp.Target || mac(l.Addr) != gwMAC {
			t.Errorf("NA's target link-layer address: %+v", na.Options)
		}
	}
	// Duplicate address detection of the gateway's address: defended to all nodes.
	r.write(nsFrame(t, netip.IPv6Unspecified(), gw6, false))
	fs := r.read()
	if len(fs) != 1 {
		t.Fatalf("DAD for the gateway's address: %d frames, want 1", len(fs))
	}
	if m, _, dst := parseND(t, fs[0], mac{0x33, 0x33, 0, 0, 0, 1}); dst != allNodes || m.(*ndp.NeighborAdvertisement).Solicited {
		t.Errorf("DAD defence to %s: %+v", dst, m)
	}
	// The client's own DAD, another client's address, an outsider's: silence.
	for _, target := range []netip.Addr{stable6.Addr(), netip.MustParseAddr("2001:2::8000:9"), netip.MustParseAddr("2001:2:1::1")} {
		r.write(nsFrame(t, netip.IPv6Unspecified(), target, false), nsFrame(t, llClient, target, true))
		if fs := r.read(); len(fs) != 0 {
			t.Errorf("NS for %s answered", target)
		}
	}
	// A hop limit below 255 came through a router: ignored.
	f := nsFrame(t, llClient, gw6, true)
	f[header.EthernetMinimumSize+7] = 254
	r.write(f)
	if fs := r.read(); len(fs) != 0 {
		t.Error("NS with hop limit 254 answered")
	}
	if len(r.inner.takeWritten()) != 0 {
		t.Error("neighbour discovery reached the stack")
	}
}

func rsFrame(t testing.TB, src netip.Addr) []byte {
	t.Helper()
	rs := &ndp.RouterSolicitation{Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC[:]}}}
	if src.IsUnspecified() {
		rs.Options = nil
	}
	allRouters := netip.MustParseAddr("ff02::2")
	b, err := ndp.MarshalMessageChecksum(rs, src, allRouters)
	if err != nil {
		t.Fatal(err)
	}
	return eth(mac{0x33, 0x33, 0, 0, 0, 2}, clientMAC, header.IPv6ProtocolNumber, ipv6Raw(src, allRouters, header.ICMPv6ProtocolNumber, 255, b))
}

func TestRouterSolicitationAnswered(t *testing.T) {
	r := newRig(t, func(c *Config) { c.DNS = []netip.Addr{gw4, gw6, netip.MustParseAddr("2001:2::53")} })
	r.write(rsFrame(t, llClient))
	fs := r.read() // no clock advance: the answer is there at once
	if len(fs) != 1 {
		t.Fatalf("RS: %d frames back, want 1", len(fs))
	}
	m, src, dst := parseND(t, fs[0], clientMAC)
	ra, ok := m.(*ndp.RouterAdvertisement)
	if !ok || src != DefaultLinkLocal || dst != llClient {
		t.Fatalf("answer %T from %s to %s", m, src, dst)
	}
	if ra.RouterLifetime != DefaultRA.RouterLifetime || ra.CurrentHopLimit != 64 || ra.ManagedConfiguration {
		t.Errorf("RA header %+v", ra)
	}
	var sawPIO, sawRDNSS, sawDNSSL, sawMTU, sawSLLA bool
	for _, o := range ra.Options {
		switch o := o.(type) {
		case *ndp.PrefixInformation:
			sawPIO = o.Prefix == stable6.Masked().Addr() && o.PrefixLength == 64 && o.AutonomousAddressConfiguration && o.OnLink &&
				o.ValidLifetime > 0 && o.PreferredLifetime > 0 && o.PreferredLifetime <= o.ValidLifetime
		case *ndp.RecursiveDNSServer:
			sawRDNSS = len(o.Servers) == 2 && o.Servers[0] == gw6 && o.Lifetime >= 3*DefaultRA.MaxInterval
		case *ndp.DNSSearchList:
			sawDNSSL = len(o.DomainNames) == 1 && o.DomainNames[0] == "corp.example" && o.Lifetime >= 3*DefaultRA.MaxInterval
		case *ndp.MTU:
			sawMTU = o.MTU == 1500
		case *ndp.LinkLayerAddress:
			sawSLLA = o.Direction == ndp.Source && mac(o.Addr) == gwMAC
		}
	}
	if !sawPIO || !sawRDNSS || !sawDNSSL || !sawMTU || !sawSLLA {
		t.Errorf("RA options: PIO %v RDNSS %v DNSSL %v MTU %v SLLA %v: %+v", sawPIO, sawRDNSS, sawDNSSL, sawMTU, sawSLLA, ra.Options)
	}
	// From the unspecified address: to all nodes.
	r.clock.advance(minDelayBetweenRAs)
	r.write(rsFrame(t, netip.IPv6Unspecified()))
	fs = r.read()
	if len(fs) != 1 {
		t.Fatalf("RS from ::: %d frames, want 1", len(fs))
	}
	if _, _, dst := parseND(t, fs[0], mac{0x33, 0x33, 0, 0, 0, 1}); dst != allNodes {
		t.Errorf("answer to RS from :: went to %s", dst)
	}
}

func TestRouterAdvertisementWithoutSLAACPrefix(t *testing.T) {
	r := newRig(t, func(c *Config) { c.Addr6 = netip.MustParsePrefix("2001:2::8000:1234/96"); c.Domains = nil })
	r.write(rsFrame(t, llClient))
	fs := r.read()
	if len(fs) != 1 {
		t.Fatalf("%d frames", len(fs))
	}
	m, _, _ := parseND(t, fs[0], clientMAC)
	for _, o := range m.(*ndp.RouterAdvertisement).Options {
		switch o.(type) {
		case *ndp.PrefixInformation, *ndp.DNSSearchList:
			t.Errorf("a /96 subnet advertised %T", o)
		}
	}
}

// TestRouterAdvertisementWithoutIPv6: a segment with no IPv6 address
// advertises a router lifetime of 0, so that no client routes IPv6 into a
// tunnel that drops it; with IPv6, the configured lifetime.
func TestRouterAdvertisementWithoutIPv6(t *testing.T) {
	for _, tt := range []struct {
		name  string
		addr6 netip.Prefix
		want  time.Duration
	}{
		{"no IPv6", netip.Prefix{}, 0},
		{"a /64", stable6, DefaultRA.RouterLifetime},
		{"a /96", netip.MustParsePrefix("2001:2::8000:1234/96"), DefaultRA.RouterLifetime},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.Addr6 = tt.addr6 })
			r.write(rsFrame(t, llClient))
			fs := r.read()
			if len(fs) != 1 {
				t.Fatalf("%d frames", len(fs))
			}
			m, _, _ := parseND(t, fs[0], clientMAC)
			if got := m.(*ndp.RouterAdvertisement).RouterLifetime; got != tt.want {
				t.Errorf("router lifetime %v, want %v", got, tt.want)
			}
		})
	}
}

// TestNDBehindExtensionHeaders: a router advertisement or neighbour
// solicitation behind a hop-by-hop, destination options or fragment header
// skips nd()'s checks, so it is dropped rather than passed to the stack
// (RFC 6980); ICMPv6 echo behind the same headers, and a later fragment,
// go on.
func TestNDBehindExtensionHeaders(t *testing.T) {
	ra, _ := ndp.MarshalMessageChecksum(&ndp.RouterAdvertisement{RouterLifetime: time.Hour}, llClient, DefaultLinkLocal)
	echo := []byte{128, 0, 0, 0, 0, 1, 0, 1}
	hbh := func(next byte, body []byte) []byte { return append([]byte{next, 0, 1, 4, 0, 0, 0, 0}, body...) }
	frag := func(next byte, offset uint16, body []byte) []byte {
		h := []byte{next, 0, 0, 0, 0, 0, 0, 7}
		binary.BigEndian.PutUint16(h[2:4], offset<<3|1)
		return append(h, body...)
	}
	send := func(r *rig, next tcpip.TransportProtocolNumber, payload []byte) {
		r.write(eth(gwMAC, clientMAC, header.IPv6ProtocolNumber, ipv6Raw(llClient, DefaultLinkLocal, next, 255, payload)))
	}
	for _, tt := range []struct {
		name    string
		next    tcpip.TransportProtocolNumber
		payload []byte
		dropped bool
	}{
		{"RA behind hop-by-hop", 0, hbh(protoICMPv6, ra), true},
		{"RA behind destination options", 60, hbh(protoICMPv6, ra), true},
		{"RA behind hop-by-hop and destination options", 0, hbh(60, hbh(protoICMPv6, ra)), true},
		{"RA in a first fragment", 44, frag(protoICMPv6, 0, ra), true},
		{"first fragment without the ICMPv6 type", 44, frag(protoICMPv6, 0, nil), true},
		{"echo behind hop-by-hop", 0, hbh(protoICMPv6, echo), false},
		{"echo in a first fragment", 44, frag(protoICMPv6, 0, echo), false},
		{"a later fragment", 44, frag(protoICMPv6, 1, ra), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, nil)
			send(r, tt.next, tt.payload)
			got := len(r.inner.takeWritten())
			if tt.dropped && (got != 0 || r.seg.Stats().DropsMalformed.Load() != 1) {
				t.Errorf("%d packets reached the stack, %d counted malformed; want 0, 1", got, r.seg.Stats().DropsMalformed.Load())
			}
			if !tt.dropped && got != 1 {
				t.Errorf("%d packets reached the stack, want 1", got)
			}
		})
	}
}

// TestInjectAfterClose: answers the segment builds after Close fail to
// queue for a closed device, not a full queue: DropsInjectFull stays 0.
func TestInjectAfterClose(t *testing.T) {
	r := newRig(t, nil)
	r.seg.Close()
	for range cap(r.inner.q) + 6 {
		r.write(eth(broadcastMAC, clientMAC, header.ARPProtocolNumber, arpRequestFor(clientMAC, lease.Addr(), gw4)))
	}
	if got := r.seg.Stats().DropsInjectFull.Load(); got != 0 {
		t.Errorf("DropsInjectFull = %d after Close, want 0", got)
	}
}

func TestRouterGuard(t *testing.T) {
	r := newRig(t, nil)
	ra := &ndp.RouterAdvertisement{RouterLifetime: time.Hour}
	b, _ := ndp.MarshalMessageChecksum(ra, llClient, allNodes)
	r.write(eth(mac{0x33, 0x33, 0, 0, 0, 1}, clientMAC, header.IPv6ProtocolNumber, ipv6Raw(llClient, allNodes, header.ICMPv6ProtocolNumber, 255, b)))
	if got := r.seg.Stats().DropsRAGuard.Load(); got != 1 {
		t.Errorf("DropsRAGuard = %d, want 1", got)
	}
	if len(r.inner.takeWritten()) != 0 || len(r.read()) != 0 {
		t.Error("a client's router advertisement went somewhere")
	}
}

// TestShortNeighborDiscovery: an ICMPv6 packet whose type says ND but
// whose body is shorter than any ND message is dropped as malformed, the
// body never read past its end.
func TestShortNeighborDiscovery(t *testing.T) {
	for name, p := range map[string][]byte{
		"one byte": shortND(41, 0, ""),
		// Payload length 0 with :: to ffc5:: makes the pseudo header
		// sum to 0xffff, so a checksum check alone passes.
		"empty body, checksum passes": shortND(48, 0, "ffc5::"),
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, nil)
			r.write(eth(gwMAC, clientMAC, header.IPv6ProtocolNumber, p))
			if got := r.seg.Stats().DropsMalformed.Load(); got != 1 {
				t.Errorf("DropsMalformed = %d, want 1", got)
			}
			if len(r.inner.takeWritten()) != 0 || len(r.read()) != 0 {
				t.Error("a short ND packet went somewhere")
			}
		})
	}
}

// shortND is an n-byte IPv6 packet from :: to dst (or ::) with next
// header ICMPv6, hop limit 255, payload length plen and a neighbour
// solicitation's type.
func shortND(n int, plen uint16, dst string) []byte {
	p := make([]byte, n)
	p[0] = 6 << 4
	binary.BigEndian.PutUint16(p[4:6], plen)
	p[6], p[7] = protoICMPv6, 255
	if dst != "" {
		d := netip.MustParseAddr(dst).As16()
		copy(p[24:40], d[:])
	}
	p[40] = icmpNeighborSolicitation
	return p
}

// raTimes advances the clock by step until end and returns when each
// unsolicited advertisement came, from the start.
func raTimes(r *rig, end, step time.Duration) []time.Duration {
	start := r.clock.Now()
	var at []time.Duration
	for d := time.Duration(0); d < end; d += step {
		r.clock.advance(step)
		for range r.read() {
			at = append(at, r.clock.Now().Sub(start))
		}
	}
	return at
}

func TestUnsolicitedSchedule(t *testing.T) {
	r := newRig(t, nil)
	if got := r.seg.Stats().RouterAdverts.Load(); got != 1 {
		t.Fatalf("RouterAdverts at start = %d, want 1", got)
	}
	at := raTimes(r, 3*time.Hour, time.Second)
	if len(at) < 2+3*3600/600 {
		t.Fatalf("%d advertisements in 3 h: %v", len(at), at)
	}
	prev := time.Duration(0)
	for i, a := range at {
		gap := a - prev
		prev = a
		switch {
		case i < maxInitialAdverts-1: // the 2nd and 3rd: at most 16 s apart
			if gap > maxInitialInterval {
				t.Errorf("initial advertisement %d came %v after the one before, want <= %v", i+2, gap, maxInitialInterval)
			}
		case gap < DefaultRA.MinInterval || gap > DefaultRA.MaxInterval+time.Second:
			t.Errorf("advertisement %d came %v after the one before, want %v to %v", i+2, gap, DefaultRA.MinInterval, DefaultRA.MaxInterval)
		}
	}
	r.seg.Close()
	if n := len(raTimes(r, time.Hour, 10*time.Second)); n != 0 || !r.inner.closed {
		t.Errorf("after Close: %d advertisements, inner closed %v", n, r.inner.closed)
	}
}

func TestSolicitationRateLimit(t *testing.T) {
	r := newRig(t, nil) // an unsolicited advertisement to all nodes at 0
	r.clock.advance(time.Second)
	// From the unspecified address: the first is answered at once all the
	// same, to all nodes.
	r.write(rsFrame(t, netip.IPv6Unspecified()))
	if n := len(r.read()); n != 1 {
		t.Fatalf("first RS: %d answers, want 1 at once", n)
	}
	// Unicast answers, at once, for a burst.
	r.clock.advance(500 * time.Millisecond)
	for i := range solicitBurst {
		r.write(rsFrame(t, llClient))
		fs := r.read()
		if len(fs) != 1 {
			t.Fatalf("RS %d of a burst: %d answers at once, want 1", i+1, len(fs))
		}
		parseND(t, fs[0], clientMAC)
	}
	// Past the burst: one multicast answer, MIN_DELAY_BETWEEN_RAS after
	// the last multicast one (at 1 s), for all that came meanwhile.
	r.write(rsFrame(t, llClient), rsFrame(t, netip.IPv6Unspecified()))
	if n := len(r.read()); n != 0 {
		t.Fatalf("RS past the burst: %d answers at once, want them deferred", n)
	}
	r.clock.advance(minDelayBetweenRAs - 500*time.Millisecond - time.Millisecond)
	if n := len(r.read()); n != 0 {
		t.Fatalf("deferred answer came early")
	}
	r.clock.advance(time.Millisecond)
	fs := r.read()
	if len(fs) != 1 {
		t.Fatalf("at MIN_DELAY_BETWEEN_RAS: %d answers, want 1 for both solicitations", len(fs))
	}
	parseND(t, fs[0], mac{0x33, 0x33, 0, 0, 0, 1})
	if got := r.seg.Stats().RSDeferred.Load(); got != 2 {
		t.Errorf("RSDeferred = %d, want 2", got)
	}
	// The bucket refills: a second later, one more at once.
	r.clock.advance(time.Second)
	r.write(rsFrame(t, llClient))
	if n := len(r.read()); n != 1 {
		t.Errorf("RS after a second: %d answers, want 1 at once", n)
	}
}

func TestDHCPHandOff(t *testing.T) {
	r := newRig(t, nil)
	discover := []byte("discover")
	r.write(eth(broadcastMAC, clientMAC, header.IPv4ProtocolNumber, udp4(netip.IPv4Unspecified(), bcast, 68, 67, discover)))
	if len(r.dhcp) != 1 || !bytes.Equal(r.dhcp[0], discover) {
		t.Fatalf("server got %q", r.dhcp)
	}
	fs := r.read()
	if len(fs) != 1 {
		t.Fatalf("%d frames back, want the reply", len(fs))
	}
	e := header.Ethernet(fs[0])
	if lmac(e.DestinationAddress()) != broadcastMAC || lmac(e.SourceAddress()) != gwMAC || e.Type() != header.IPv4ProtocolNumber {
		t.Fatalf("reply frame %s -> %s", e.SourceAddress(), e.DestinationAddress())
	}
	ip := header.IPv4(fs[0][header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() || netip.AddrFrom4(ip.SourceAddress().As4()) != gw4 || netip.AddrFrom4(ip.DestinationAddress().As4()) != bcast {
		t.Fatalf("reply IP header % x", []byte(ip)[:20])
	}
	u := header.UDP(ip.Payload())
	if u.SourcePort() != 67 || u.DestinationPort() != 68 || string(u.Payload()) != "offer:discover" ||
		pseudoChecksum(gw4, bcast, 17, u) != 0 {
		t.Errorf("reply UDP %d -> %d %q", u.SourcePort(), u.DestinationPort(), u.Payload())
	}
	// A renewal from the lease, unicast to the server, goes too; DHCP
	// from any other source does not.
	r.write(ip4FrameUDP(lease.Addr(), gw4, 67, []byte("request")))
	r.write(ip4FrameUDP(netip.MustParseAddr("198.18.200.8"), gw4, 67, []byte("forged")))
	if len(r.dhcp) != 2 || string(r.dhcp[1]) != "request" {
		t.Errorf("server got %q", r.dhcp)
	}
	if got := r.seg.Stats().DropsSource.Load(); got != 1 {
		t.Errorf("DropsSource = %d, want 1", got)
	}
	if len(r.inner.takeWritten()) != 0 {
		t.Error("DHCP reached the stack")
	}
}

func ip4FrameUDP(src, dst netip.Addr, dport uint16, payload []byte) []byte {
	return eth(gwMAC, clientMAC, header.IPv4ProtocolNumber, udp4(src, dst, 68, dport, payload))
}

type claimAll struct{ refuse map[netip.Addr]bool }

func (c claimAll) Claim(a netip.Addr) bool { return !c.refuse[a] }

func TestSourceChecks(t *testing.T) {
	taken := netip.MustParseAddr("2001:2::dead")
	r := newRig(t, func(c *Config) {
		c.Claims = claimAll{refuse: map[netip.Addr]bool{taken: true}}
		c.Routed = []netip.Prefix{netip.MustParsePrefix("198.19.128.0/24")}
	})
	slaac := netip.MustParseAddr("2001:2::ff:fe00:42")
	for _, c := range []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"IPv4 from the lease", ip4Frame(lease.Addr(), netip.MustParseAddr("198.19.0.1")), true},
		{"IPv4 from a routed network", ip4Frame(netip.MustParseAddr("198.19.128.9"), netip.MustParseAddr("198.19.0.1")), true},
		{"IPv4 from another address", ip4Frame(netip.MustParseAddr("198.18.200.8"), gw4), false},
		{"IPv4 from 0.0.0.0, not DHCP", ip4Frame(netip.IPv4Unspecified(), gw4), false},
		{"IPv6 from the stable address", ip6Frame(stable6.Addr(), netip.MustParseAddr("2001:2:1::1")), true},
		{"IPv6 from SLAAC", ip6Frame(slaac, netip.MustParseAddr("2001:2:1::1")), true},
		{"IPv6 from another key's", ip6Frame(taken, gw6), false},
		{"IPv6 from the gateway's own", ip6Frame(gw6, gw6), false},
		{"IPv6 outside the prefix", ip6Frame(netip.MustParseAddr("2001:2:9::1"), gw6), false},
		{"link-local to the gateway", ip6Frame(llClient, DefaultLinkLocal), true},
		{"link-local elsewhere", ip6Frame(llClient, netip.MustParseAddr("2001:2:1::1")), false},
		{"unspecified, not ND", ip6Frame(netip.IPv6Unspecified(), gw6), false},
	} {
		before := r.seg.Stats().DropsSource.Load()
		r.write(c.frame)
		got := len(r.inner.takeWritten()) == 1
		if got != c.pass {
			t.Errorf("%s: passed %v, want %v", c.name, got, c.pass)
		}
		if dropped := r.seg.Stats().DropsSource.Load() - before; dropped != map[bool]uint64{true: 0, false: 1}[c.pass] {
			t.Errorf("%s: DropsSource went up by %d", c.name, dropped)
		}
	}
	// The stack receives the IP packet itself, not the frame.
	r.write(ip4Frame(lease.Addr(), gw4))
	w := r.inner.takeWritten()
	if len(w) != 1 || header.IPVersion(w[0]) != 4 || len(w[0]) != header.IPv4MinimumSize+header.TCPMinimumSize {
		t.Errorf("stack got % x", w)
	}
	// Unicast to a MAC not the gateway's, multicast: nowhere.
	f := ip4Frame(lease.Addr(), gw4)
	copy(f[0:6], otherMAC[:])
	r.write(f, eth(mac{0x01, 0, 0x5e, 0, 0, 0xfb}, clientMAC, header.IPv4ProtocolNumber, udp4(lease.Addr(), netip.MustParseAddr("224.0.0.251"), 5353, 5353, nil)))
	if len(r.inner.takeWritten()) != 0 || r.seg.Stats().DropsForeignDst.Load() != 1 || r.seg.Stats().Multicast.Load() != 1 {
		t.Errorf("foreign destination %d, multicast %d", r.seg.Stats().DropsForeignDst.Load(), r.seg.Stats().Multicast.Load())
	}
}

func TestSLAACBound(t *testing.T) {
	r := newRig(t, nil)
	addr := func(i int) netip.Addr {
		b := stable6.Addr().As16()
		b[15], b[14] = byte(i), 0x77
		return netip.AddrFrom16(b)
	}
	for i := range MaxSLAAC + 3 {
		r.write(ip6Frame(addr(i), netip.MustParseAddr("2001:2:1::1")))
	}
	if got := len(r.inner.takeWritten()); got != MaxSLAAC {
		t.Errorf("%d SLAAC sources passed, want %d", got, MaxSLAAC)
	}
	if got := r.seg.Stats().SLAACRefused.Load(); got != 3 {
		t.Errorf("SLAACRefused = %d, want 3", got)
	}
	// Those accepted stay accepted; those refused stay refused, without
	// being counted again.
	r.write(ip6Frame(addr(0), gw6), ip6Frame(addr(MaxSLAAC), gw6))
	if got := len(r.inner.takeWritten()); got != 1 || r.seg.Stats().SLAACRefused.Load() != 3 {
		t.Errorf("again: %d passed, refused %d", got, r.seg.Stats().SLAACRefused.Load())
	}
}

func TestReadFraming(t *testing.T) {
	r := newRig(t, nil)
	put := func(p []byte) { r.inner.q <- p }
	unicast := ipv4Packet(gw4, lease.Addr(), header.TCPProtocolNumber, tcpSYN())
	put(unicast)
	put(ipv4Packet(gw4, bcast, header.UDPProtocolNumber, make([]byte, 8)))
	if fs := r.read(); len(fs) != 1 || lmac(header.Ethernet(fs[0]).DestinationAddress()) != broadcastMAC || r.seg.Stats().DropsNoClientMAC.Load() != 1 {
		t.Fatalf("unicast before the client's MAC: %d frames, DropsNoClientMAC %d", len(fs), r.seg.Stats().DropsNoClientMAC.Load())
	}
	r.write(ip4Frame(lease.Addr(), gw4)) // the client's MAC
	for _, c := range []struct {
		name string
		p    []byte
		dst  mac
		et   uint16
	}{
		{"IPv4 unicast", unicast, clientMAC, 0x0800},
		{"IPv6 unicast", ipv6Raw(gw6, stable6.Addr(), header.TCPProtocolNumber, 64, tcpSYN()), clientMAC, 0x86dd},
		{"IPv4 broadcast", ipv4Packet(gw4, bcast, header.UDPProtocolNumber, make([]byte, 8)), broadcastMAC, 0x0800},
		{"IPv4 subnet broadcast", ipv4Packet(gw4, netip.MustParseAddr("198.18.255.255"), header.UDPProtocolNumber, make([]byte, 8)), broadcastMAC, 0x0800},
		{"IPv4 multicast", ipv4Packet(gw4, netip.MustParseAddr("224.0.0.251"), header.UDPProtocolNumber, make([]byte, 8)), mac{1, 0, 0x5e, 0, 0, 0xfb}, 0x0800},
		{"IPv6 multicast", ipv6Raw(DefaultLinkLocal, netip.MustParseAddr("ff02::1:ff00:42"), header.UDPProtocolNumber, 64, make([]byte, 8)), mac{0x33, 0x33, 0xff, 0, 0, 0x42}, 0x86dd},
	} {
		put(c.p)
		fs := r.read()
		if len(fs) != 1 {
			t.Errorf("%s: %d frames", c.name, len(fs))
			continue
		}
		e := header.Ethernet(fs[0])
		if lmac(e.DestinationAddress()) != c.dst || lmac(e.SourceAddress()) != gwMAC || uint16(e.Type()) != c.et || !bytes.Equal(fs[0][14:], c.p) {
			t.Errorf("%s: %s -> %s type %#x", c.name, e.SourceAddress(), e.DestinationAddress(), e.Type())
		}
	}
	// A batch with a drop in the middle keeps the others, in order.
	put(unicast)
	put([]byte{0x50, 1, 2})
	put(ipv4Packet(gw4, bcast, header.UDPProtocolNumber, make([]byte, 8)))
	if fs := r.read(); len(fs) != 2 || mac(fs[0][0:6]) != clientMAC || mac(fs[1][0:6]) != broadcastMAC {
		t.Errorf("batch with a drop: %d frames", len(fs))
	}
}

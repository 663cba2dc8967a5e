//go:build integration

package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// A second client host, on an underlay link of its own to the gateway.
var (
	underGWB     = netip.MustParsePrefix("198.18.4.1/24")
	underClientB = netip.MustParsePrefix("198.18.4.2/24")
)

// secondClient is another client host: it reaches the gateway's listening
// address through the gateway's end of its own link.
func (h *home) secondClient(t *testing.T) *nstest.NS {
	t.Helper()
	b := nstest.New(t)
	nstest.Link(t, b, underClientB, h.gw, underGWB)
	b.Run(t, "ip", "route", "add", netip.PrefixFrom(underGW.Addr(), 24).Masked().String(), "via", underGWB.Addr().String())
	return b
}

// stockEthernet runs a stock ssh -o Tunnel=ethernet -w 0:any client inside
// ns. It does not wait.
func stockEthernet(t *testing.T, ns *nstest.NS, o nstest.OpenSSH, key string) *nstest.Proc {
	t.Helper()
	return ns.Start(t, o.ClientArgs(t, key, "", "-o", "Tunnel=ethernet", "-w", "0:any", "-o", "ExitOnForwardFailure=yes",
		"-p", "2222", "root@"+underGW.Addr().String())...)
}

// oldestAndNewest are the first and the last OpenSSH present: two
// generations when both are, for the price of one run.
func oldestAndNewest(t *testing.T) (nstest.OpenSSH, nstest.OpenSSH) {
	os := nstest.OpenSSHs(t)
	return os[0], os[len(os)-1]
}

// portTable is the gateway's nftables bridge table, as nft lists it.
func portTable(t *testing.T, h *home, gw *gatewayProc) string {
	t.Helper()
	return h.gw.Run(t, "nft", "list", "table", "bridge", fmt.Sprintf("sshvpn-bridge-%d", gw.PID()))
}

// portSet lists one of the bridge table's sets.
func portSet(h *home, gw *gatewayProc, set string) string {
	out, _ := h.gw.Cmd("nft", "list", "set", "bridge", fmt.Sprintf("sshvpn-bridge-%d", gw.PID()), set).CombinedOutput()
	return string(out)
}

// inSet reports whether set lists a (nft prints an element followed by a
// comma, a space or the closing brace).
func inSet(list string, a netip.Addr) bool {
	return regexp.MustCompile(`[{ ,]` + regexp.QuoteMeta(a.String()) + `[ ,}]`).MatchString(list)
}

// drops sums the packets the drop rules commented why counted, over every
// tap's chain.
func drops(table, why string) int {
	n := 0
	for _, m := range regexp.MustCompile(`counter packets (\d+) bytes \d+ drop comment "`+regexp.QuoteMeta(why)+`"`).FindAllStringSubmatch(table, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// ndMessage is an IPv6 neighbour discovery message with a valid ICMPv6
// checksum, so that a receiver acts on it: its body, then a link-layer
// address option (typ 1 source, 2 target) with lladdr, then the test's tag
// in an option of a type no receiver knows, which each skips.
func ndMessage(src, dst netip.Addr, icmpType byte, body []byte, optType byte, lladdr net.HardwareAddr, name string) []byte {
	body = append(body, optType, 1)
	body = append(body, lladdr...)
	tg := tag(name)
	opt := append([]byte{253, byte((2 + len(tg) + 7) / 8)}, tg...)
	opt = append(opt, make([]byte, int(opt[1])*8-len(opt))...)
	p := icmp6(src, dst, icmpType, append(body, opt...))
	binary.BigEndian.PutUint16(p[42:], icmp6Checksum(p))
	return p
}

// neighAdvert is an unsolicited neighbour advertisement with the override
// flag: lladdr is target's link-layer address from now on.
func neighAdvert(src, target netip.Addr, lladdr net.HardwareAddr, name string) []byte {
	body := append([]byte{0x20, 0, 0, 0}, target.AsSlice()...)
	return ndMessage(src, netip.MustParseAddr("ff02::1"), 136, body, 2, lladdr, name)
}

// neighSolicit is a neighbour solicitation for target from src, which
// gives lladdr as its own.
func neighSolicit(src, target netip.Addr, lladdr net.HardwareAddr, name string) []byte {
	body := append([]byte{0, 0, 0, 0}, target.AsSlice()...)
	return ndMessage(src, target, 135, body, 1, lladdr, name)
}

// icmp6Checksum is the ICMPv6 checksum of the IPv6 packet p, whose
// checksum field is zero.
func icmp6Checksum(p []byte) uint16 {
	var s uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
	}
	add(p[8:40]) // source and destination
	var l [8]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(p)-40))
	l[7] = 58
	add(l[:])
	add(p[40:])
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// arpPacket is an ARP packet of operation op (1 request, 2 reply).
func arpPacket(op byte, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	p := arpReply(sha, spa, tha, tpa)
	p[7] = op
	return p
}

// linkLocal is dev's IPv6 link-local address inside ns.
func linkLocal(t *testing.T, ns *nstest.NS, dev string) netip.Addr {
	t.Helper()
	var ll netip.Addr
	nstest.WaitFor(t, 10*time.Second, "a link-local address on "+dev, func() bool {
		out, _ := ns.Cmd("ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link").CombinedOutput()
		m := regexp.MustCompile(`inet6 (fe80::[0-9a-f:]+)/64 scope link (.*)`).FindStringSubmatch(string(out))
		if m == nil || strings.Contains(m[2], "tentative") {
			return false
		}
		ll = netip.MustParseAddr(m[1])
		return true
	})
	return ll
}

// eventually polls cond until it holds or d is over, and reports which.
func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// neighMAC is the link-layer address ns's neighbour entry for a has, or "".
func neighMAC(t *testing.T, ns *nstest.NS, a netip.Addr) string {
	t.Helper()
	m := regexp.MustCompile(`lladdr ([0-9a-f:]{17})`).FindStringSubmatch(ns.Run(t, "ip", "neigh", "show", a.String()))
	if m == nil {
		return ""
	}
	return m[1]
}

// bridgedPair is the bridged home with two keys: client A (Debian's
// OpenSSH, in home.client) tunnelled on its tap0, and client B (the
// newest OpenSSH present) in a namespace of its own with its key, not yet
// connected.
type bridgedPair struct {
	*home
	gw      *gatewayProc
	oA, oB  nstest.OpenSSH
	sshA    *nstest.Proc
	clientB *nstest.NS
	privB   string
}

func newBridgedPair(t *testing.T) *bridgedPair {
	t.Helper()
	nstest.RequireRoot(t)
	p := &bridgedPair{home: newHome(t)}
	p.oA, p.oB = oldestAndNewest(t)
	p.clientB = p.secondClient(t)
	privA, pubA := p.key(t, p.oA, "client-a")
	privB, pubB := p.key(t, p.oB, "client-b")
	p.privB = privB
	p.gw = p.startGateway(t, pubA+"\n"+pubB+"\n", "--bridge", "br0")
	p.sshA = p.sshTunnel(t, p.oA, privA, "ethernet", "0:any")
	waitTunnel(t, p.client, "tap0", p.sshA, p.gw, 1)
	return p
}

// Port security between two bridged clients: the addresses client A's
// frames used first are A's, and client B's ARP reply, gratuitous ARP and
// unsolicited neighbour advertisement claiming them never reach the LAN,
// while the LAN host keeps A's MAC for them and its transfer with A runs
// on. A runs Debian's OpenSSH and B the newest present.
func TestBridgeClaimsOfAnotherTunnel(t *testing.T) {
	t.Parallel()
	p := newBridgedPair(t)
	h, gw, oB, clientB, privB := p.home, p.gw, p.oB, p.clientB, p.privB
	sshB := stockEthernet(t, clientB, oB, privB)
	waitTunnel(t, clientB, "tap0", sshB, gw, 2)

	// A takes a lease and a static IPv6 address, and the LAN host talks to
	// both: A's replies make them A's.
	v4 := h.dhcp(t)
	v6 := netip.MustParseAddr("2001:2:2::a")
	h.client.Run(t, "ip", "-6", "addr", "add", v6.String()+"/64", "dev", "tap0", "nodad")
	nstest.Ping(t, h.lan, v4.String(), 2)
	nstest.Ping(t, h.lan, v6.String(), 2)
	nstest.WaitFor(t, 5*time.Second, "A's addresses in the held sets", func() bool {
		return inSet(portSet(h, gw, "held4"), v4) && inSet(portSet(h, gw, "held6"), v6)
	})
	macA := ifaceMAC(t, h.client, "tap0")
	clientB.Run(t, "ip", "link", "set", "tap0", "up")
	macB := ifaceMAC(t, clientB, "tap0")
	llB := linkLocal(t, clientB, "tap0")
	lanMAC := ifaceMAC(t, h.lan, "veth0")
	if got := neighMAC(t, h.lan, v4); got != macA.String() {
		t.Fatalf("before the attack, the LAN host has %q for %s, want A's %s", got, v4, macA)
	}

	capture := startCapture(t, h.lan, "veth0")
	transfer := nstest.StartTransfer(t, h.client, v4.String()+":0", h.lan, v4.String(), 64<<20, true)
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodes := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	allRouters := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 2}
	frames := map[string][]byte{
		// B's own address, claimed by B: must arrive, or the capture proves nothing.
		"control":   ether(bcast, macB, 0x0806, append(arpPacket(1, macB, netip.MustParseAddr("198.18.2.77"), make(net.HardwareAddr, 6), lanHost.Addr()), tag("control")...)),
		"arp-reply": ether(lanMAC, macB, 0x0806, append(arpPacket(2, macB, v4, lanMAC, lanHost.Addr()), tag("arp-reply")...)),
		"garp":      ether(bcast, macB, 0x0806, append(arpPacket(1, macB, v4, make(net.HardwareAddr, 6), v4), tag("garp")...)),
		"na":        ether(allNodes, macB, 0x86dd, neighAdvert(llB, v6, macB, "na")),
		// A solicitation's source with a source link-layer address option
		// is a claim too: the receiver's entry for it takes that address
		// (RFC 4861 7.2.3), as a router's does for a router solicitation's.
		"ns": ether(lanMAC, macB, 0x86dd, neighSolicit(v6, homeHost6.Addr(), macB, "ns")),
		"rs": ether(allRouters, macB, 0x86dd, ndMessage(v6, netip.MustParseAddr("ff02::2"), 133, make([]byte, 4), 1, macB, "rs")),
		// Packets from A's addresses: the LAN host would take them for A's.
		"udp-as-a":  ether(lanMAC, macB, 0x0800, udp4(v4, lanHost.Addr(), 9999, 9999, tag("udp-as-a"))),
		"udp6-as-a": ether(lanMAC, macB, 0x86dd, ip6Packet(v6, homeHost6.Addr(), 17, nil, udpHeader(9999, 9999, tag("udp6-as-a")))),
	}
	noneReached(t, capture.send(t, clientB, "tap0", frames), frames, "B's frame claiming A's address ")
	if r, err := transfer.Wait(); err != nil {
		t.Errorf("A's transfer with the LAN host during B's claims: %v", err)
	} else {
		t.Logf("A (OpenSSH %s) → LAN host while B (OpenSSH %s) claimed A's addresses: %v", p.oA.Version, oB.Version, r)
	}
	for _, a := range []netip.Addr{v4, v6} {
		if got := neighMAC(t, h.lan, a); got != macA.String() {
			t.Errorf("the LAN host's neighbour entry for A's %s has %q, want A's %s (B is %s)", a, got, macA, macB)
		}
	}
	// The gateway host routes (radvd), so B's router solicitation would
	// have taught it B's MAC for A's address.
	if got := neighMAC(t, h.gw, v6); got != "" && got != macA.String() {
		t.Errorf("the gateway host's neighbour entry for A's %s has %q, want A's %s (B is %s)", v6, got, macA, macB)
	}
	nstest.Ping(t, h.lan, v4.String(), 2)
	nstest.Ping(t, h.lan, v6.String(), 2)

	table := portTable(t, h, gw)
	for _, why := range []string{"ARP claiming another tunnel's address", "neighbour advertisement claiming another tunnel's address",
		"neighbour or router solicitation claiming another tunnel's address", "IP packet from another tunnel's address"} {
		if drops(table, why) == 0 {
			t.Errorf("no drop counted for %q:\n%s", why, table)
		}
	}
}

// The gateway host's addresses as they change: one it gains while sshvpn
// serves is the host's for port security once the watcher has seen it (a
// client's ARP and neighbour advertisement claiming it are dropped), and
// one it loses is free again, for the LAN's DHCP server or its clients to
// give out: a claim of it is no longer dropped as the host's.
func TestBridgeHostAddressesFollowed(t *testing.T) {
	t.Parallel()
	nstest.RequireRoot(t)
	o, _ := oldestAndNewest(t)
	h := newHome(t)
	gw, _ := h.bridgedClient(t, o, "--bridge", "br0")
	h.client.Run(t, "ip", "link", "set", "tap0", "up")
	mac := ifaceMAC(t, h.client, "tap0")
	ll := linkLocal(t, h.client, "tap0")
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodes := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	gained4, gained6 := netip.MustParseAddr("198.18.2.50"), netip.MustParseAddr("2001:2:2::50")
	claims := func(prefix string) map[string][]byte {
		return map[string][]byte{
			"control":       ether(bcast, mac, 0x0806, append(arpPacket(1, mac, netip.MustParseAddr("198.18.2.77"), make(net.HardwareAddr, 6), lanHost.Addr()), tag("control")...)),
			prefix + "garp": ether(bcast, mac, 0x0806, append(arpPacket(1, mac, gained4, make(net.HardwareAddr, 6), gained4), tag(prefix+"garp")...)),
			prefix + "na":   ether(allNodes, mac, 0x86dd, neighAdvert(ll, gained6, mac, prefix+"na")),
		}
	}
	claim := func(prefix string) map[string]int {
		return startCapture(t, h.lan, "veth0").send(t, h.client, "tap0", claims(prefix))
	}
	const arpHost, naHost = "ARP claiming the gateway host's address", "neighbour advertisement claiming the gateway host's address"

	h.gw.Run(t, "ip", "addr", "add", gained4.String()+"/24", "dev", "br0")
	h.gw.Run(t, "ip", "addr", "add", gained6.String()+"/64", "dev", "br0", "nodad")
	// The watcher has 5 s; past them, the claims below say what it missed.
	if !eventually(5*time.Second, func() bool {
		return inSet(portSet(h, gw, "host4"), gained4) && inSet(portSet(h, gw, "host6"), gained6)
	}) {
		t.Errorf("the host's new addresses %s and %s are not in port security's host sets after 5 s", gained4, gained6)
	}
	seen := claim("gained-")
	for _, name := range []string{"gained-garp", "gained-na"} {
		if seen[name] > 0 {
			t.Errorf("%s, claiming an address the host gained, reached the LAN host %d times", name, seen[name])
		}
	}
	table := portTable(t, h, gw)
	arpBefore, naBefore := drops(table, arpHost), drops(table, naHost)
	if arpBefore == 0 || naBefore == 0 {
		t.Errorf("claims of the host's new addresses not counted as the host's (ARP %d, NA %d):\n%s", arpBefore, naBefore, table)
	}

	h.gw.Run(t, "ip", "addr", "del", gained4.String()+"/24", "dev", "br0")
	h.gw.Run(t, "ip", "addr", "del", gained6.String()+"/64", "dev", "br0")
	if !eventually(5*time.Second, func() bool {
		return !inSet(portSet(h, gw, "host4"), gained4) && !inSet(portSet(h, gw, "host6"), gained6)
	}) {
		t.Errorf("the host's lost addresses %s and %s are still in port security's host sets after 5 s", gained4, gained6)
	}
	seen = claim("lost-")
	for _, name := range []string{"lost-garp", "lost-na"} {
		if seen[name] == 0 {
			t.Errorf("%s, claiming an address the host let go, never reached the LAN host", name)
		}
	}
	table = portTable(t, h, gw)
	if a, n := drops(table, arpHost), drops(table, naHost); a != arpBefore || n != naBefore {
		t.Errorf("claims of addresses the host let go were dropped as the host's: ARP %d → %d, NA %d → %d", arpBefore, a, naBefore, n)
	}
	// Free, the addresses went to the first tunnel to use them.
	if !inSet(portSet(h, gw, "held4"), gained4) || !inSet(portSet(h, gw, "held6"), gained6) {
		t.Errorf("the client does not hold the addresses it claimed once the host let them go:\n%s%s", portSet(h, gw, "held4"), portSet(h, gw, "held6"))
	}
}

// What a bridged client may send that a guard which reads only the
// obvious encoding would let through: DHCP server messages from another
// port than the server's; ARP and neighbour discovery for the client's own
// addresses giving another station's link-layer address; an ICMP
// redirect, IGMP and MLD queries; router advertisements and neighbour
// claims
// behind IPv6 extension headers, and an advertisement split so that its
// first fragment holds no ICMPv6 header; ARP of the IEEE 802 hardware type; the
// LAN's link control protocols (spanning tree, LLDP, 802.1X, MVRP, Cisco's
// DTP and PVST+), and frames of the old 0x9100 service tag. None reaches
// the LAN host. The bridge forwards LLDP and 802.1X here (its group
// forwarding mask says so), as some are set up to, and spanning tree's, as
// every bridge without STP does.
func TestBridgeGuardEvasions(t *testing.T) {
	t.Parallel()
	nstest.RequireRoot(t)
	o, _ := oldestAndNewest(t)
	h := newHome(t)
	h.gw.Run(t, "ip", "link", "set", "br0", "type", "bridge", "group_fwd_mask", "0x4008")
	gw, _ := h.bridgedClient(t, o, "--bridge", "br0")
	h.client.Run(t, "ip", "link", "set", "tap0", "up")
	mac := ifaceMAC(t, h.client, "tap0")
	ll := linkLocal(t, h.client, "tap0")
	lanMAC := ifaceMAC(t, h.lan, "veth0")
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodes := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	own4 := netip.MustParseAddr("198.18.2.77")
	allNodes6 := netip.MustParseAddr("ff02::1")
	hbh := []byte{0, 0, 1, 4, 0, 0, 0, 0} // hop-by-hop options: one PadN
	frames := map[string][]byte{
		"control":    ether(bcast, mac, 0x0806, append(arpPacket(1, mac, own4, make(net.HardwareAddr, 6), lanHost.Addr()), tag("control")...)),
		"dhcp4-port": ether(bcast, mac, 0x0800, udp4(own4, netip.MustParseAddr("255.255.255.255"), 1067, 68, append(dhcpOffer(lanMAC), tag("dhcp4-port")...))),
		// ADVERTISE, from another port than 547 to the clients' 546.
		"dhcp6-adv": ether(allNodes, mac, 0x86dd, ip6Packet(ll, allNodes6, 17, nil,
			udpHeader(5470, 546, append([]byte{2, 0, 0, 1}, tag("dhcp6-adv")...)))),
		"ra-hbh": ether(allNodes, mac, 0x86dd, ip6Packet(ll, allNodes6, 58, hbh,
			append([]byte{134, 0, 0, 0, 64, 0, 0, 0x1e, 0, 0, 0, 0, 0, 0, 0, 0}, tag("ra-hbh")...))),
		"na-hbh": ether(allNodes, mac, 0x86dd, ip6Packet(ll, allNodes6, 58, hbh,
			append(append([]byte{136, 0, 0, 0, 0x20, 0, 0, 0}, homeBr6.Addr().AsSlice()...), tag("na-hbh")...))),
		// The router's (the gateway host's) address as a source: the
		// LAN host trusts it as its router and DNS server.
		"udp-as-router":  ether(lanMAC, mac, 0x0800, udp4(homeBr4.Addr(), lanHost.Addr(), 53, 9999, tag("udp-as-router"))),
		"udp6-as-router": ether(lanMAC, mac, 0x86dd, ip6Packet(homeBr6.Addr(), homeHost6.Addr(), 17, nil, udpHeader(53, 9999, tag("udp6-as-router")))),
		// The client's own addresses, with another station's link-layer
		// address: the LAN's traffic for them would go to it.
		"arp-sha":  ether(bcast, mac, 0x0806, append(arpPacket(1, bcast, own4, make(net.HardwareAddr, 6), lanHost.Addr()), tag("arp-sha")...)),
		"ns-sllao": ether(lanMAC, mac, 0x86dd, neighSolicit(ll, homeHost6.Addr(), lanMAC, "ns-sllao")),
		"na-tlla":  ether(allNodes, mac, 0x86dd, neighAdvert(ll, ll, lanMAC, "na-tlla")),
		// A redirect, and queries that would make the client the LAN's
		// multicast querier.
		"icmp-redirect": ether(lanMAC, mac, 0x0800, ip4Packet(own4, lanHost.Addr(), 1,
			withChecksum(append([]byte{5, 1, 0, 0, 198, 18, 2, 77}, tag("icmp-redirect")...)))),
		"igmp-query": ether(net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1}, mac, 0x0800, ip4Packet(own4, netip.MustParseAddr("224.0.0.1"), 2,
			withChecksum(append([]byte{0x11, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, tag("igmp-query")...)))),
		"mld-query": ether(allNodes, mac, 0x86dd, ip6Packet(ll, allNodes6, 58, nil,
			append(append([]byte{130, 0, 0, 0, 0x27, 0x10, 0, 0}, make([]byte, 16)...), tag("mld-query")...))),
		"arp-ieee802": ether(bcast, mac, 0x0806, append(ieee802ARP(arpPacket(2, mac, homeBr4.Addr(), lanMAC, lanHost.Addr())), tag("arp-ieee802")...)),
		"stp":         ether(net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0}, mac, uint16(3+35+len(tag("stp"))), append(append([]byte{0x42, 0x42, 0x03}, make([]byte, 35)...), tag("stp")...)),
		"lldp":        ether(net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x0e}, mac, 0x88cc, append([]byte{0x02, 0x07, 0x04}, append(mac, tag("lldp")...)...)),
		"eapol":       ether(net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x03}, mac, 0x888e, append([]byte{2, 1, 0, 0}, tag("eapol")...)),
		"mvrp":        ether(net.HardwareAddr{0x01, 0x80, 0xc2, 0, 0, 0x21}, mac, 0x88f5, append([]byte{0}, tag("mvrp")...)),
		"cisco-dtp":   ether(net.HardwareAddr{0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc}, mac, uint16(8+len(tag("cisco-dtp"))), append([]byte{0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x04}, tag("cisco-dtp")...)),
		"cisco-pvst":  ether(net.HardwareAddr{0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcd}, mac, uint16(8+35+len(tag("cisco-pvst"))), append(append([]byte{0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x01, 0x0b}, make([]byte, 35)...), tag("cisco-pvst")...)),
		"tag9100":     ether(bcast, mac, 0x9100, append([]byte{0x00, 0x05, 0x08, 0x06}, append(arpPacket(1, mac, own4, make(net.HardwareAddr, 6), lanHost.Addr()), tag("tag9100")...)...)),
	}

	// A router advertisement in two fragments: the first holds the
	// fragment header and a destination options header, whose next header
	// (ICMPv6) begins only in the second.
	dstOpts := append([]byte{58, 2, 0x1e, 20}, tag("frag-ra1")...) // an option a receiver skips
	dstOpts = append(dstOpts, make([]byte, 24-len(dstOpts))...)
	frames["frag-ra1"] = ether(allNodes, mac, 0x86dd, ip6Packet(ll, allNodes6, 44, fragHeader(60, 0, true, 0x5e12), dstOpts))
	frames["frag-ra2"] = ether(allNodes, mac, 0x86dd, ip6Packet(ll, allNodes6, 44, fragHeader(60, 24, false, 0x5e12),
		append([]byte{134, 0, 0, 0, 64, 0, 0, 0x1e, 0, 0, 0, 0, 0, 0, 0, 0}, tag("frag-ra2")...)))
	capture := startCapture(t, h.lan, "veth0")
	// A later fragment passes: without its first, nothing reassembles it.
	noneReached(t, capture.send(t, h.client, "tap0", frames), frames, "", "frag-ra2")
	table := portTable(t, h, gw)
	for _, why := range []string{"DHCPv4 server message", "DHCPv6 server message", "router advertisement", "ICMP redirect", "IGMP or MLD query",
		"neighbour advertisement claiming the gateway host's address", "ARP claiming the gateway host's address",
		"IP packet from the gateway host's address"} {
		if drops(table, why) == 0 {
			t.Errorf("no drop counted for %q:\n%s", why, table)
		}
	}
}

// ip6Packet is an IPv6 packet from src to dst: an extension header ext
// (whose first byte, its next header, is set to proto) when not nil, then
// payload, whose type is proto. Checksums are left zero: the guard reads
// no checksum.
func ip6Packet(src, dst netip.Addr, proto byte, ext, payload []byte) []byte {
	p := make([]byte, 40, 40+len(ext)+len(payload))
	p[0], p[7] = 0x60, 255
	p[6] = proto
	if ext != nil {
		ext = bytes.Clone(ext)
		if proto != 44 { // a fragment header comes with its next header set
			ext[0] = proto
			p[6] = 0 // hop-by-hop
		}
		p = append(p, ext...)
	}
	binary.BigEndian.PutUint16(p[4:], uint16(len(ext)+len(payload)))
	copy(p[8:], src.AsSlice())
	copy(p[24:], dst.AsSlice())
	return append(p, payload...)
}

// fragHeader is an IPv6 fragment header: next header, byte offset (a
// multiple of 8), more fragments, identification.
func fragHeader(next byte, offset int, more bool, id uint32) []byte {
	h := []byte{next, 0, 0, 0, 0, 0, 0, 0}
	fo := uint16(offset/8) << 3
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(h[2:], fo)
	binary.BigEndian.PutUint32(h[4:], id)
	return h
}

// ip4Packet is an IPv4 packet of protocol proto with a valid header.
func ip4Packet(src, dst netip.Addr, proto byte, payload []byte) []byte {
	p := make([]byte, 20, 20+len(payload))
	p[0], p[8], p[9] = 0x45, 1, proto
	binary.BigEndian.PutUint16(p[2:], uint16(20+len(payload)))
	copy(p[12:], src.AsSlice())
	copy(p[16:], dst.AsSlice())
	binary.BigEndian.PutUint16(p[10:], ipChecksum(p))
	return append(p, payload...)
}

// withChecksum fills an ICMP or IGMP message's checksum, which the bridge
// checks before it forwards an IGMP query.
func withChecksum(m []byte) []byte {
	binary.BigEndian.PutUint16(m[2:], ipChecksum(append(bytes.Clone(m), 0)))
	return m
}

// udpHeader is a UDP header and payload, checksum left zero.
func udpHeader(sport, dport uint16, payload []byte) []byte {
	u := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(u, sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return append(u, payload...)
}

// ieee802ARP is an ARP packet with the IEEE 802 hardware type (6), which
// Linux takes on an Ethernet link as it does Ethernet's (1).
func ieee802ARP(p []byte) []byte {
	p[1] = 6
	return p
}

// A bridged client whose tap takes another station's MAC: client A's, the
// LAN host's, the bridge's own. A bridge learns a source MAC on the port it
// last came from, so it would send B what is for A, for the LAN host or for
// the gateway host; the gateway locks none of B's taps to those MACs and
// passes none of their frames: B's taps receive nothing addressed to them,
// while the LAN host's transfer with A and the gateway host's pings run.
func TestBridgeStolenMAC(t *testing.T) {
	t.Parallel()
	p := newBridgedPair(t)
	h, gw, oB, clientB, privB, sshA := p.home, p.gw, p.oB, p.clientB, p.privB, p.sshA
	v4 := h.dhcp(t)
	nstest.Ping(t, h.lan, v4.String(), 2)
	macA := ifaceMAC(t, h.client, "tap0")
	lanMAC := ifaceMAC(t, h.lan, "veth0")
	brMAC, _ := net.ParseMAC(homeBrMAC)

	// B's three tunnels, their taps given the stolen MACs before they come up.
	stolen := []net.HardwareAddr{macA, lanMAC, brMAC}
	var received []func() int
	for i, mac := range stolen {
		dev := fmt.Sprintf("tap%d", i)
		ssh := clientB.Start(t, oB.ClientArgs(t, privB, "", "-o", "Tunnel=ethernet", "-w", fmt.Sprintf("%d:any", i),
			"-o", "ExitOnForwardFailure=yes", "-p", "2222", "root@"+underGW.Addr().String())...)
		waitTunnel(t, clientB, dev, ssh, gw, 2+i)
		clientB.Run(t, "ip", "link", "set", dev, "address", mac.String())
		clientB.Run(t, "ip", "link", "set", dev, "up")
		received = append(received, countFrames(t, clientB, dev, func(f []byte) bool { return bytes.Equal(f[:6], mac) }))
	}

	h.gw.Start(t, "ping", "-q", "-i", "0.05", "-c", "60", lanHost.Addr().String())
	h.lan.Start(t, "ping", "-q", "-i", "0.05", "-c", "60", homeBr4.Addr().String())
	transfer := nstest.StartTransfer(t, h.client, v4.String()+":0", h.lan, v4.String(), 64<<20, true)
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	own := netip.MustParseAddr("198.18.2.78")
	for range 6 {
		for i, mac := range stolen {
			dev := fmt.Sprintf("tap%d", i)
			sendFrames(t, clientB, dev, map[string][]byte{
				dev: ether(bcast, mac, 0x0806, append(arpPacket(1, mac, own, make(net.HardwareAddr, 6), lanHost.Addr()), tag(dev)...)),
			})
		}
	}
	if r, err := transfer.Wait(); err != nil {
		t.Errorf("A's transfer with the LAN host while B used A's MAC: %v", err)
	} else {
		t.Logf("A → LAN host while B's taps used A's, the LAN host's and the bridge's MACs: %v", r)
	}
	for i, mac := range stolen {
		if n := received[i](); n > 0 {
			t.Errorf("B's tap%d, with %s's MAC %s, received %d frames addressed to it", i, []string{"A", "the LAN host", "the bridge"}[i], mac, n)
		}
	}
	nstest.Ping(t, h.gw, lanHost.Addr().String(), 2)
	nstest.Ping(t, h.lan, v4.String(), 2)
	if n := strings.Count(gw.Log(), "client MAC learnt"); n != 1 {
		t.Errorf("the gateway learnt %d client MACs, want A's alone:\n%s", n, gw.Log())
	}
	for _, whose := range []string{"another bridged tunnel's", "on the bridge's port veth", "on the bridge's port br0"} {
		if !strings.Contains(gw.Log(), "not locking the tap to a MAC that is "+whose) {
			t.Errorf("the gateway did not say it refused a MAC %s:\n%s", whose, gw.Log())
		}
	}

	// A's MAC is free once A's tunnel has gone: B's tap0, which keeps
	// trying it (as a client reconnecting with a fixed MAC would), gets it.
	sshA.Signal(syscall.SIGTERM)
	if !eventually(10*time.Second, func() bool {
		sendFrames(t, clientB, "tap0", map[string][]byte{"tap0": ether(bcast, macA, 0x0806, arpPacket(1, macA, own, make(net.HardwareAddr, 6), lanHost.Addr()))})
		return strings.Count(gw.Log(), "client MAC learnt") == 2
	}) {
		t.Errorf("B's tap0 never got A's MAC after A's tunnel went:\n%s", gw.Log())
	}
}

// countFrames counts the frames arriving on dev inside ns that match, from
// now until the test ends or the returned function is called, which
// returns the count.
func countFrames(t *testing.T, ns *nstest.NS, dev string, match func([]byte) bool) func() int {
	t.Helper()
	var fd int
	ns.Do(t, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			t.Fatal(err)
		}
	})
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	stop, done := make(chan struct{}), make(chan int, 1)
	go func() {
		n, buf := 0, make([]byte, 65536)
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			// Frames the client's own kernel sends show as outgoing.
			m, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || m < 14 {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if match(buf[:m]) {
				n++
			}
		}
	}()
	var once sync.Once
	var n int
	get := func() int {
		once.Do(func() {
			close(stop)
			n = <-done
			unix.Close(fd)
		})
		return n
	}
	t.Cleanup(func() { get() })
	return get
}

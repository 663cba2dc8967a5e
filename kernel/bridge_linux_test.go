package kernel

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// The port security table as nft(8) reads it back: the rules say what the
// brief says, in nft's own words, so a wrong offset or register shows as a
// different rule rather than as a silent miss.
func TestPortSecurityRules(t *testing.T) {
	requireTool(t, "nft")
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "br0", "type", "bridge")
		run(t, "ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1")
		u := newUndo(nil)
		host := []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:2::1")}
		index, err := linkIndex("p0")
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range []error{u.AddPortTable(host), u.AddPort("p0", index),
			lockMAC(index, net.HardwareAddr{2, 0, 0, 0, 0, 1}),
			holdAddr(index, netip.MustParseAddr("198.18.0.7")), holdAddr(index, netip.MustParseAddr("2001:2::7")),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		got := run(t, "nft", "list", "table", "bridge", portTableName())
		idx := strconv.Itoa(index)
		for _, want := range []string{
			"set host4 {\n\t\ttype ipv4_addr\n\t\telements = { 198.18.0.1 }",
			"set host6 {\n\t\ttype ipv6_addr\n\t\telements = { 2001:2::1 }",
			"set held4 {\n\t\ttype ipv4_addr\n\t\telements = { 198.18.0.7 }",
			"set mine6-" + idx + " {\n\t\ttype ipv6_addr\n\t\telements = { 2001:2::7 }",
			"type filter hook prerouting priority 0; policy accept;",
			`iif "p0" jump port-` + idx + ` comment "port-` + idx + `"`,
			`ether saddr != 02:00:00:00:00:01 counter packets 0 bytes 0 drop comment "` + dropOtherMAC + `"`,
			`udp dport 67 @th,288,48 != 0x20000000001 counter packets 0 bytes 0 drop comment "` + dropDHCPChaddr + `"`,
			`icmpv6 type nd-router-advert counter packets 0 bytes 0 drop comment "` + dropRouterAdvert + `"`,
			`icmpv6 type nd-redirect counter packets 0 bytes 0 drop comment "` + dropRedirect + `"`,
			`icmp type redirect counter packets 0 bytes 0 drop comment "` + dropRedirect4 + `"`,
			`igmp type membership-query counter packets 0 bytes 0 drop comment "` + dropQuery + `"`,
			`icmpv6 type mld-listener-query counter packets 0 bytes 0 drop comment "` + dropQuery + `"`,
			`udp sport 67 counter packets 0 bytes 0 drop comment "` + dropDHCPv4Server + `"`,
			`udp dport 68 counter packets 0 bytes 0 drop comment "` + dropDHCPv4Server + `"`,
			`udp sport 547 counter packets 0 bytes 0 drop comment "` + dropDHCPv6Server + `"`,
			`udp dport 546 counter packets 0 bytes 0 drop comment "` + dropDHCPv6Server + `"`,
			`arp saddr ip @host4 counter packets 0 bytes 0 drop comment "` + dropARPHost + `"`,
			`arp saddr ip @held4 arp saddr ip != @mine4-` + idx + ` counter packets 0 bytes 0 drop comment "` + dropARPHeld + `"`,
			`icmpv6 type nd-neighbor-advert @th,64,128 @host6 counter packets 0 bytes 0 drop comment "` + dropNAHost + `"`,
			`icmpv6 type nd-neighbor-advert @th,64,128 @held6 @th,64,128 != @mine6-` + idx + ` counter packets 0 bytes 0 drop comment "` + dropNAHeld + `"`,
			`icmpv6 type 133-135 ip6 saddr @host6 counter packets 0 bytes 0 drop comment "` + dropSolHost + `"`,
			`icmpv6 type 133-135 ip6 saddr @held6 ip6 saddr != @mine6-` + idx + ` counter packets 0 bytes 0 drop comment "` + dropSolHeld + `"`,
			`ip saddr @host4 counter packets 0 bytes 0 drop comment "` + dropSrcHost + `"`,
			`ip saddr @held4 ip saddr != @mine4-` + idx + ` counter packets 0 bytes 0 drop comment "` + dropSrcHeld + `"`,
			`ip6 saddr @host6 counter packets 0 bytes 0 drop comment "` + dropSrcHost + `"`,
			`ip6 saddr @held6 ip6 saddr != @mine6-` + idx + ` counter packets 0 bytes 0 drop comment "` + dropSrcHeld + `"`,
		} {
			if !strings.Contains(got, want) {
				t.Errorf("table lacks\n\t%s\n%s", want, got)
			}
		}
		// The MAC rule comes first: no other rule may accept first. The
		// chaddr rule, which lockMAC adds with it, comes next.
		if i, j, k := strings.Index(got, dropOtherMAC), strings.Index(got, dropDHCPChaddr), strings.Index(got, dropRouterAdvert); i < 0 || i > j || j > k {
			t.Errorf("the MAC and chaddr rules are not the chain's first two:\n%s", got)
		}
		if err := setHostAddrs(portTableName(), []netip.Addr{netip.MustParseAddr("198.18.0.2")}); err != nil {
			t.Fatal(err)
		}
		got = run(t, "nft", "list", "set", "bridge", portTableName(), "host4")
		if !strings.Contains(got, "elements = { 198.18.0.2 }") {
			t.Errorf("host4 after an update:\n%s", got)
		}
		if err := u.Revert(); err != nil {
			t.Fatal(err)
		}
		if out := run(t, "nft", "list", "tables"); strings.Contains(out, portTableName()) {
			t.Errorf("table left after Revert:\n%s", out)
		}
	})
}

// A port's revert takes its addresses out of the held sets and leaves the
// table and every other port as they were.
func TestPortRevertFreesItsAddresses(t *testing.T) {
	requireTool(t, "nft")
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1")
		table := newUndo(nil)
		if err := table.AddPortTable(nil); err != nil {
			t.Fatal(err)
		}
		defer table.Revert()
		i0, _ := linkIndex("p0")
		i1, _ := linkIndex("p1")
		u0, u1 := newUndo(nil), newUndo(nil)
		for _, err := range []error{u0.AddPort("p0", i0), u1.AddPort("p1", i1),
			holdAddr(i0, netip.MustParseAddr("198.18.0.7")), holdAddr(i1, netip.MustParseAddr("198.18.0.8"))} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := u0.Revert(); err != nil {
			t.Fatal(err)
		}
		got := run(t, "nft", "list", "table", "bridge", portTableName())
		if strings.Contains(got, "198.18.0.7") || strings.Contains(got, "port-"+strconv.Itoa(i0)) || strings.Contains(got, "mine4-"+strconv.Itoa(i0)) {
			t.Errorf("p0's port left traces:\n%s", got)
		}
		if !strings.Contains(got, "198.18.0.8") || !strings.Contains(got, "jump port-"+strconv.Itoa(i1)) {
			t.Errorf("p1's port went with p0's:\n%s", got)
		}
	})
}

// linkState is what a bridge swap must put back: links (without the
// kernel's counters and timers), addresses and routes of both families.
func linkState(t *testing.T) string {
	t.Helper()
	link := regexp.MustCompile(`qdisc \S+ `).ReplaceAllString(run(t, "ip", "-o", "-d", "link"), "")
	return strings.Join([]string{link, run(t, "ip", "-o", "addr"), run(t, "ip", "route", "show", "table", "all"),
		run(t, "ip", "-6", "route", "show", "table", "all")}, "\n")
}

// A gateway killed after swapping an interface for a bridge and bridging a
// tap: the journal's replay puts the interface's addresses and routes back,
// deletes the bridge and the port security table.
func TestJournalUndoesABridgeSwap(t *testing.T) {
	requireTool(t, "nft")
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
		run(t, "ip", "link", "set", "lan0", "up")
		run(t, "ip", "link", "set", "lan1", "up")
		run(t, "ip", "addr", "add", "198.18.5.1/24", "dev", "lan0")
		run(t, "ip", "addr", "add", "198.18.5.9/24", "dev", "lan0") // a secondary
		run(t, "ip", "addr", "add", "2001:2:5::1/64", "dev", "lan0", "nodad")
		run(t, "ip", "addr", "add", "2001:2:5::2/64", "dev", "lan0", "nodad")
		run(t, "ip", "route", "add", "default", "via", "198.18.5.254", "metric", "50")
		run(t, "ip", "route", "add", "198.18.6.0/24", "via", "198.18.5.253", "proto", "static", "table", "7")
		run(t, "ip", "-6", "route", "add", "default", "via", "2001:2:5::fe", "metric", "1024", "proto", "boot")
		run(t, "ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1")
		before := linkState(t)
		dir := t.TempDir()
		j, err := OpenJournal(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		u := j.newUndo(nil)
		if err := u.SwapForBridge("lan0", "br-lan0"); err != nil {
			t.Fatal(err)
		}
		index, _ := linkIndex("p0")
		for _, err := range []error{u.AddPortTable(nil), u.AddPort("p0", index), u.SetMaster("p0", "br-lan0")} {
			if err != nil {
				t.Fatal(err)
			}
		}
		swapped := linkState(t)
		for _, want := range []string{"198.18.5.1/24 scope global br-lan0", "198.18.5.9/24 scope global secondary br-lan0",
			"default via 198.18.5.254 dev br-lan0 metric 50", "198.18.6.0/24 via 198.18.5.253 dev br-lan0 table 7 proto static",
			"default via 2001:2:5::fe dev br-lan0 metric 1024", "lan0@lan1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master br-lan0",
			"p0@p1: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 master br-lan0"} {
			if !strings.Contains(swapped, want) {
				t.Errorf("after the swap, no %q in\n%s", want, swapped)
			}
		}
		if strings.Contains(run(t, "ip", "-o", "addr", "show", "dev", "lan0"), "198.18.5.1") {
			t.Error("lan0 kept its address")
		}
		if out := run(t, "ip", "-d", "link", "show", "br-lan0"); !strings.Contains(out, "forward_delay 0") || !strings.Contains(out, "stp_state 0") {
			t.Errorf("bridge timers: %s", out)
		}
		j.f.Close() // die
		n, err := Recover(dir, nil)
		if err != nil || n != 4 {
			t.Fatalf("Recover = %d, %v; want the 4 changes undone", n, err)
		}
		if after := linkState(t); after != before {
			t.Errorf("after recovery, lines gone (-) and new (+):\n%s", lineDiff(before, after))
		}
		if out := run(t, "nft", "list", "tables"); strings.Contains(out, portTableName()) {
			t.Errorf("table left after recovery:\n%s", out)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Errorf("journals left: %v", left)
		}
	})
}

// What a frame claims, and what claims nothing.
func TestClaimedAddr(t *testing.T) {
	eth := func(typ uint16, payload []byte) []byte {
		f := make([]byte, 14, 14+len(payload))
		f[12], f[13] = byte(typ>>8), byte(typ)
		return append(f, payload...)
	}
	ip4 := make([]byte, 20)
	ip4[0] = 0x45
	copy(ip4[12:], []byte{198, 18, 0, 9})
	zero4 := make([]byte, 20)
	zero4[0] = 0x45
	arp := []byte{0, 1, 8, 0, 6, 4, 0, 2, 2, 0, 0, 0, 0, 1, 198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1}
	ip6 := make([]byte, 40)
	ip6[0] = 0x60
	copy(ip6[8:], netip.MustParseAddr("2001:2::9").AsSlice())
	na := make([]byte, 64)
	na[0], na[6], na[40] = 0x60, icmpv6, icmpv6NeighAdv
	copy(na[8:], netip.MustParseAddr("fe80::1").AsSlice())
	copy(na[48:], netip.MustParseAddr("2001:2::10").AsSlice())
	naHBH := make([]byte, 72)
	naHBH[0], naHBH[6] = 0x60, ip6HopByHop
	naHBH[4], naHBH[5] = 0, 32
	copy(naHBH[8:], netip.MustParseAddr("fe80::1").AsSlice())
	copy(naHBH[40:], []byte{icmpv6, 0, 1, 4, 0, 0, 0, 0, icmpv6NeighAdv})
	copy(naHBH[56:], netip.MustParseAddr("2001:2::11").AsSlice())
	for _, c := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"na target behind hop-by-hop", eth(etherIPv6, naHBH), "2001:2::11"},
		{"ipv4 source", eth(etherIPv4, ip4), "198.18.0.9"},
		{"dhcp discover", eth(etherIPv4, zero4), ""},
		{"arp sender", eth(etherARP, arp), "198.18.0.10"},
		{"ipv6 source", eth(etherIPv6, ip6), "2001:2::9"},
		{"na target", eth(etherIPv6, na), "2001:2::10"},
		{"lldp", eth(0x88cc, make([]byte, 40)), ""},
		{"short ipv4", eth(etherIPv4, ip4[:10]), ""},
	} {
		a, ok := claimedAddr(c.frame)
		got := ""
		if ok {
			got = a.String()
		}
		if got != c.want {
			t.Errorf("%s: claimed %q, want %q", c.name, got, c.want)
		}
	}
}

// --bridge names an existing bridge; anything else is refused with what to do.
func TestBridgeMTURefuses(t *testing.T) {
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
		run(t, "ip", "link", "add", "br0", "mtu", "1400", "type", "bridge")
		for dev, want := range map[string]string{"nope0": "no such interface", "v0": "a veth, not a bridge"} {
			if _, err := bridgeMTU(dev); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("bridgeMTU(%s) = %v, want %q", dev, err, want)
			}
		}
		if mtu, err := bridgeMTU("br0"); err != nil || mtu != 1400 {
			t.Errorf("bridgeMTU(br0) = %d, %v", mtu, err)
		}
	})
}

// bridgedTap is a bridged tunnel on a new tap of the test's namespace,
// whose port security table is bridge's and may not exist: what the
// tunnel logs goes to the returned buffer.
func bridgedTap(t *testing.T, bridge string) (*bridgedTunnel, *logBuffer) {
	t.Helper()
	dev := open(t, relay.Ethernet, relay.AnyUnit)
	index, err := linkIndex(dev.Name())
	if err != nil {
		t.Fatal(err)
	}
	var buf logBuffer
	ports := &portSecurity{bridge: bridge, log: slog.New(slog.NewTextHandler(&buf, nil)), warn: relay.NewThrottle(time.Minute),
		host: map[netip.Addr]bool{}, held: map[netip.Addr]*bridgedTunnel{}, macs: map[[6]byte]*bridgedTunnel{}}
	return &bridgedTunnel{Tun: dev, undo: newUndo(ports.log), ports: ports, index: index}, &buf
}

// A MAC the bridge table would not lock the tap to (here: there is no
// table) is refused as one another station has: its frames are dropped,
// and it is tried again after retryRefusedMAC, not on every frame with a
// warning each.
func TestBridgedLockFailureIsARefusal(t *testing.T) {
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "br0", "type", "bridge")
		tn, logs := bridgedTap(t, "br0")
		f := make([]byte, 14+28)
		copy(f[6:], []byte{2, 0, 0, 0, 0, 1})
		f[12], f[13] = 0x08, 0x06
		for range 5 {
			if tn.admit(f) {
				t.Fatal("a frame passed though the tap could not be locked to its MAC")
			}
		}
		if n := strings.Count(logs.String(), whyLockFailed); n != 1 {
			t.Errorf("%d warnings for 5 frames of a MAC that could not be locked, want 1:\n%s", n, logs)
		}
		if tn.refused != 1 || tn.lastRefused != [6]byte(f[6:12]) {
			t.Errorf("refused %d, last %x; want 1 and the frames' MAC", tn.refused, tn.lastRefused)
		}
		if len(tn.ports.macs) != 0 {
			t.Errorf("the MAC stayed taken: %v", tn.ports.macs)
		}
	})
}

// A bridged tunnel's Write after Close fails as a closed device does, not
// with a drop the relay would count and carry on after.
func TestBridgedWriteAfterClose(t *testing.T) {
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "br0", "type", "bridge")
		tn, _ := bridgedTap(t, "br0")
		if err := tn.Close(); err != nil {
			t.Fatal(err)
		}
		f := make([]byte, 14+28)
		copy(f[6:], []byte{2, 0, 0, 0, 0, 1})
		f[12], f[13] = 0x08, 0x06
		if n, err := tn.Write([][]byte{f}, 0); n != 0 || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close = %d, %v; want 0 and net.ErrClosed", n, err)
		}
	})
}

// A swap moves a DHCP or SLAAC address with the lifetime it has left, and
// whatever renews it works on the interface, not the bridge: it warns of
// each such address, and of no permanent one.
func TestSwapWarnsOfExpiringAddresses(t *testing.T) {
	inNewNS(t, func() {
		run(t, "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
		run(t, "ip", "addr", "add", "198.18.5.1/24", "dev", "lan0")
		run(t, "ip", "addr", "add", "198.18.5.7/24", "dev", "lan0", "valid_lft", "600", "preferred_lft", "300")
		run(t, "ip", "addr", "add", "2001:2:5::7/64", "dev", "lan0", "nodad", "valid_lft", "900", "preferred_lft", "900")
		u, logs := testUndo(t)
		if err := u.SwapForBridge("lan0", "br-lan0"); err != nil {
			t.Fatal(err)
		}
		defer u.Revert()
		got := logs.String()
		for _, a := range []string{"198.18.5.7/24", "2001:2:5::7/64"} {
			if !strings.Contains(got, "finite lifetime") || !strings.Contains(got, "address="+a) {
				t.Errorf("no warning that %s will expire on the bridge:\n%s", a, got)
			}
		}
		if strings.Contains(got, "address=198.18.5.1/24") {
			t.Errorf("a warning for the permanent 198.18.5.1/24:\n%s", got)
		}
	})
}

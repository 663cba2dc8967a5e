//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Port security for bridged taps lives in an nftables table of family
// bridge that one gateway process owns whole, "table bridge
// sshvpn-bridge-<pid>": a table per process, so that its journal entry
// removes it after a crash without looking at anyone else's rules.
//
//	table bridge sshvpn-bridge-PID {
//		set host4 { type ipv4_addr; }   # the gateway host's addresses, kept current
//		set host6 { type ipv6_addr; }
//		set held4 { type ipv4_addr; }   # addresses some bridged tunnel holds
//		set held6 { type ipv6_addr; }
//		chain prerouting {
//			type filter hook prerouting priority filter; policy accept;
//			iif TAP jump port-IDX            # one per bridged tap
//		}
//		set mine4-IDX { type ipv4_addr; }  # what tap IDX holds
//		set mine6-IDX { type ipv6_addr; }
//		chain port-IDX { ... portRules ... }
//	}
//
// Prerouting sees every frame a port brings into the bridge, whether the
// bridge forwards it to another port or delivers it to the host, so one
// chain guards both. The tap's chain is keyed by its interface index, which
// the kernel never reuses while the namespace lives.

// portTableName is this process's bridge table.
func portTableName() string { return fmt.Sprintf("sshvpn-bridge-%d", os.Getpid()) }

// tableFamily finds an nftables family by its nft(8) name, for the journal.
func tableFamily(name string) (nftables.TableFamily, bool) {
	switch name {
	case "ip":
		return nftables.TableFamilyIPv4, true
	case "ip6":
		return nftables.TableFamilyIPv6, true
	case "bridge":
		return nftables.TableFamilyBridge, true
	}
	return 0, false
}

// The table's sets.
const (
	setHost4 = "host4"
	setHost6 = "host6"
	setHeld4 = "held4"
	setHeld6 = "held6"
)

func portChainName(index int) string { return "port-" + strconv.Itoa(index) }
func mineSetName(index int, v6 bool) string {
	if v6 {
		return "mine6-" + strconv.Itoa(index)
	}
	return "mine4-" + strconv.Itoa(index)
}

func bridgeTable(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyBridge}
}

func addrSet(table *nftables.Table, name string, v6 bool) *nftables.Set {
	s := &nftables.Set{Table: table, Name: name, KeyType: nftables.TypeIPAddr}
	if v6 {
		s.KeyType = nftables.TypeIP6Addr
	}
	return s
}

// AddPortTable makes this process's bridge table with host's addresses in
// its host sets. A table of the same name is a dead process's that had
// this pid: it goes first. Revert deletes the table.
func (u *undoLog) AddPortTable(host []netip.Addr) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	name := portTableName()
	c := change{Op: opNFTable, Family: "bridge", Tag: name}
	return u.apply(c, func() error {
		conn, err := nftables.New()
		if err != nil {
			return nftError("add "+c.String(), err)
		}
		if _, err := conn.ListTableOfFamily(name, nftables.TableFamilyBridge); err == nil {
			conn.DelTable(bridgeTable(name))
		}
		table := conn.AddTable(bridgeTable(name))
		h4, h6 := addrElements(host)
		for _, s := range []struct {
			name  string
			v6    bool
			elems []nftables.SetElement
		}{{setHost4, false, h4}, {setHost6, true, h6}, {setHeld4, false, nil}, {setHeld6, true, nil}} {
			if err := conn.AddSet(addrSet(table, s.name, s.v6), s.elems); err != nil {
				return nftError("add "+c.String(), err)
			}
		}
		accept := nftables.ChainPolicyAccept
		conn.AddChain(&nftables.Chain{Name: "prerouting", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		return nftError("add "+c.String(), conn.Flush())
	})
}

// addrElements splits addrs into set elements by family.
func addrElements(addrs []netip.Addr) (v4, v6 []nftables.SetElement) {
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if a.Is4() {
			v4 = append(v4, nftables.SetElement{Key: a.AsSlice()})
		} else if a.Is6() {
			v6 = append(v6, nftables.SetElement{Key: a.AsSlice()})
		}
	}
	return v4, v6
}

// setHostAddrs replaces the host sets' contents in one transaction.
func setHostAddrs(tableName string, host []netip.Addr) error {
	conn, err := nftables.New()
	if err != nil {
		return nftError("update the host's addresses in bridge "+tableName, err)
	}
	table := bridgeTable(tableName)
	h4, h6 := addrElements(host)
	for _, s := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{addrSet(table, setHost4, false), h4}, {addrSet(table, setHost6, true), h6}} {
		conn.FlushSet(s.set)
		if len(s.elems) > 0 {
			if err := conn.SetAddElements(s.set, s.elems); err != nil {
				return nftError("update the host's addresses in bridge "+tableName, err)
			}
		}
	}
	return nftError("update the host's addresses in bridge "+tableName, conn.Flush())
}

// Header fields the rules match.
const (
	etherSrcOffset      = 6
	etherTypeOff        = 12
	arpSenderIPOff      = 14 // in the ARP header: htype, ptype, hlen, plen, op, sender MAC
	naTargetOff         = 8  // in the ICMPv6 header: type, code, checksum, flags
	ip6SrcOff           = 8  // in the IPv6 header: version to hop limit
	ip4SrcOff           = 12 // in the IPv4 header
	ipProtoICMP         = 1
	ipProtoIGMP         = 2
	icmpRedirect        = 5    // ICMP type (RFC 792)
	igmpQuery           = 0x11 // IGMP membership query, every version (RFC 3376)
	icmpv6ListenerQuery = 130  // MLD query, both versions (RFC 3810)
	udpHeaderLen        = 8
	dhcpChaddrOff       = 28 // in the BOOTP message: op to giaddr (RFC 2131 2)
)

// portRule is one drop rule: what it drops (its comment) and how.
type portRule struct {
	why   string
	exprs []expr.Any
}

// counted ends a match with a counter and a drop.
func counted(match ...expr.Any) []expr.Any {
	return append(match, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
}

// portRules are a bridged tap's drop rules, each counted and named by its
// comment, in the order they are checked. mine4 and mine6 are the tap's own
// sets: an address the tap holds is not another tunnel's.
func portRules(mine4, mine6 string) []portRule {
	var rules []portRule
	add := func(why string, match ...expr.Any) {
		rules = append(rules, portRule{why, counted(match...)})
	}
	add(dropRouterAdvert, icmpv6Type(icmpv6RouterAdvert)...)
	add(dropRedirect, icmpv6Type(icmpv6Redirect)...)
	add(dropRedirect4, l4Type(ipProtoICMP, icmpRedirect)...)
	// A host never queries for listeners: a client that did would be the
	// LAN's querier (the lowest address wins), and steer its multicast.
	add(dropQuery, l4Type(ipProtoIGMP, igmpQuery)...)
	add(dropQuery, icmpv6Type(icmpv6ListenerQuery)...)
	// A DHCP server or relay sends from its port; a client never sends to
	// another client's, and clients (udhcpc, dhclient) do not look at the
	// port an offer comes from: each alone is a server message.
	add(dropDHCPv4Server, udpPort(0, dhcpServerPort)...)
	add(dropDHCPv4Server, udpPort(2, 68)...)
	add(dropDHCPv6Server, udpPort(0, 547)...)
	add(dropDHCPv6Server, udpPort(2, 546)...)
	arp := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: etherTypeOff, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(etherARP)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: arpSenderIPOff, Len: 4},
	}
	add(dropARPHost, append(clone(arp), &expr.Lookup{SourceRegister: 1, SetName: setHost4})...)
	add(dropARPHeld, append(clone(arp), &expr.Lookup{SourceRegister: 1, SetName: setHeld4},
		&expr.Lookup{SourceRegister: 1, SetName: mine4, Invert: true})...)
	na := append(icmpv6Type(icmpv6NeighAdv),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: naTargetOff, Len: 16})
	add(dropNAHost, append(clone(na), &expr.Lookup{SourceRegister: 1, SetName: setHost6})...)
	add(dropNAHeld, append(clone(na), &expr.Lookup{SourceRegister: 1, SetName: setHeld6},
		&expr.Lookup{SourceRegister: 1, SetName: mine6, Invert: true})...)
	// A solicitation's source claims it as much as an advertisement's
	// target: receivers take its source link-layer address for it. Types
	// 133 to 135 are those two; 134, the advertisement, went above.
	sol := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: etherTypeOff, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(etherIPv6)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{icmpv6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{icmpv6RouterSol}, ToData: []byte{icmpv6NeighSol}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: ip6SrcOff, Len: 16},
	}
	add(dropSolHost, append(clone(sol), &expr.Lookup{SourceRegister: 1, SetName: setHost6})...)
	add(dropSolHeld, append(clone(sol), &expr.Lookup{SourceRegister: 1, SetName: setHeld6},
		&expr.Lookup{SourceRegister: 1, SetName: mine6, Invert: true})...)
	// Nor may its IP packets come from such an address: a LAN host that
	// trusts the gateway host's address (its router's, its DNS server's),
	// or talks with another client, would take them for theirs.
	for _, f := range []struct {
		etherType        uint16
		srcOff, srcLen   uint32
		host, held, mine string
	}{{etherIPv4, ip4SrcOff, 4, setHost4, setHeld4, mine4}, {etherIPv6, ip6SrcOff, 16, setHost6, setHeld6, mine6}} {
		src := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: etherTypeOff, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(f.etherType)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.srcOff, Len: f.srcLen},
		}
		add(dropSrcHost, append(clone(src), &expr.Lookup{SourceRegister: 1, SetName: f.host})...)
		add(dropSrcHeld, append(clone(src), &expr.Lookup{SourceRegister: 1, SetName: f.held},
			&expr.Lookup{SourceRegister: 1, SetName: f.mine, Invert: true})...)
	}
	return rules
}

// macRule drops frames from any source MAC but mac.
func macRule(mac net.HardwareAddr) portRule {
	return portRule{dropOtherMAC, counted(
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: etherSrcOffset, Len: 6},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(mac)},
	)}
}

func clone(e []expr.Any) []expr.Any { return append([]expr.Any(nil), e...) }

// icmpv6Type matches ICMPv6 messages of type typ.
func icmpv6Type(typ byte) []expr.Any { return l4Type(icmpv6, typ) }

// l4Type matches messages of protocol proto (ICMP, IGMP, ICMPv6) whose
// first byte, their type, is typ.
func l4Type(proto, typ byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{typ}},
	}
}

// udpPort matches UDP datagrams whose port at off (0 source, 2
// destination) is port.
func udpPort(off uint32, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{ipProtoUDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func commentData(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

// AddPort gives the bridged tap dev (interface index) its chain in the
// bridge table and the jump to it. Revert deletes both, and takes the
// tap's addresses out of the held sets.
func (u *undoLog) AddPort(dev string, index int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	tableName := portTableName()
	chainName := portChainName(index)
	c := change{Op: opBridgePort, Family: "bridge", Tag: tableName, Dev: dev, Index: index, Value: chainName}
	return u.apply(c, func() error {
		conn, err := nftables.New()
		if err != nil {
			return nftError("add "+c.String(), err)
		}
		table := bridgeTable(tableName)
		mine4, mine6 := mineSetName(index, false), mineSetName(index, true)
		for _, s := range []*nftables.Set{addrSet(table, mine4, false), addrSet(table, mine6, true)} {
			if err := conn.AddSet(s, nil); err != nil {
				return nftError("add "+c.String(), err)
			}
		}
		chain := conn.AddChain(&nftables.Chain{Name: chainName, Table: table})
		for _, r := range portRules(mine4, mine6) {
			conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: r.exprs, UserData: commentData(r.why)})
		}
		pre := &nftables.Chain{Name: "prerouting", Table: table}
		conn.AddRule(&nftables.Rule{Table: table, Chain: pre, UserData: commentData(chainName), Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(uint32(index))},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: chainName},
		}})
		return nftError("add "+c.String(), conn.Flush())
	})
}

// chaddrRule drops DHCPv4 requests (UDP to port 67) whose client hardware
// address is not mac: a client asks for its own MAC alone, and one that
// asked in many MACs' names would take the LAN's pool from the others. A
// request too short to hold a chaddr matches no rule, and no server takes
// it; a fragmented one the tap's Write drops (dhcpFragment).
func chaddrRule(mac net.HardwareAddr) portRule {
	return portRule{dropDHCPChaddr, counted(append(udpPort(2, dhcpServerPort),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: udpHeaderLen + dhcpChaddrOff, Len: 6},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(mac)},
	)...)}
}

// lockMAC puts the rule that drops every other source MAC first in the
// tap's chain, and the rule that drops DHCPv4 requests for another MAC
// second, in one transaction. They are part of the chain, which AddPort's
// change removes.
func lockMAC(index int, mac net.HardwareAddr) error {
	what := fmt.Sprintf("port security: lock port %d to %s", index, mac)
	conn, err := nftables.New()
	if err != nil {
		return nftError(what, err)
	}
	table := bridgeTable(portTableName())
	chain := &nftables.Chain{Name: portChainName(index), Table: table}
	// Each insert goes before the chain's first rule: the last is first.
	for _, r := range []portRule{chaddrRule(mac), macRule(mac)} {
		conn.InsertRule(&nftables.Rule{Table: table, Chain: chain, Exprs: r.exprs, UserData: commentData(r.why)})
	}
	return nftError(what, conn.Flush())
}

// holdAddr records that tap index holds a: in its own set and in the held
// set, in one transaction.
func holdAddr(index int, a netip.Addr) error {
	what := fmt.Sprintf("port security: port %d holds %s", index, a)
	conn, err := nftables.New()
	if err != nil {
		return nftError(what, err)
	}
	table := bridgeTable(portTableName())
	held := setHeld4
	if a.Is6() {
		held = setHeld6
	}
	elem := []nftables.SetElement{{Key: a.AsSlice()}}
	for _, s := range []*nftables.Set{addrSet(table, mineSetName(index, a.Is6()), a.Is6()), addrSet(table, held, a.Is6())} {
		if err := conn.SetAddElements(s, elem); err != nil {
			return nftError(what, err)
		}
	}
	return nftError(what, conn.Flush())
}

// portCounters reads the drop counters of tap index's chain, by reason.
func portCounters(index int) (map[string]uint64, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, err
	}
	table := bridgeTable(portTableName())
	rules, err := conn.GetRules(table, &nftables.Chain{Name: portChainName(index), Table: table})
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(rules))
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				out[comment(r)] += c.Packets
			}
		}
	}
	return out, nil
}

// removePortChain deletes a tap's jump, chain and sets from table, and its
// addresses from the held sets. What is gone already is fine.
func removePortChain(tableName, chainName string) error {
	what := "remove port security chain " + chainName + " from bridge " + tableName
	index, err := strconv.Atoi(strings.TrimPrefix(chainName, "port-"))
	if err != nil || !strings.HasPrefix(chainName, "port-") {
		return fmt.Errorf("%s: not a port chain", what)
	}
	conn, err := nftables.New()
	if err != nil {
		return nftError(what, err)
	}
	table := bridgeTable(tableName)
	if _, err := conn.ListTableOfFamily(tableName, nftables.TableFamilyBridge); errors.Is(err, unix.ENOENT) {
		return nil
	}
	pre, err := conn.GetRules(table, &nftables.Chain{Name: "prerouting", Table: table})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return nftError(what, err)
	}
	for _, r := range pre {
		if comment(r) == chainName {
			if err := conn.DelRule(r); err != nil {
				return nftError(what, err)
			}
		}
	}
	chain := &nftables.Chain{Name: chainName, Table: table}
	if _, err := conn.GetRules(table, chain); err == nil {
		conn.FlushChain(chain)
		conn.DelChain(chain)
	}
	sets, err := conn.GetSets(table)
	if err != nil {
		return nftError(what, err)
	}
	for _, v6 := range []bool{false, true} {
		name := mineSetName(index, v6)
		for _, s := range sets {
			if s.Name != name {
				continue
			}
			elems, err := conn.GetSetElements(s)
			if err != nil {
				return nftError(what, err)
			}
			held := setHeld4
			if v6 {
				held = setHeld6
			}
			if len(elems) > 0 {
				if err := conn.SetDeleteElements(addrSet(table, held, v6), elems); err != nil {
					return nftError(what, err)
				}
			}
			conn.DelSet(s)
		}
	}
	return nftError(what, conn.Flush())
}

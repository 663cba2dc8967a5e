//go:build linux

package kernel

import (
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// natFamily is where an address family's addresses sit in its network
// header, for rules that match them.
type natFamily struct {
	family       nftables.TableFamily
	name         string // as nft(8) spells the family
	saddr, daddr uint32 // offsets of the source and destination addresses
	size         uint32 // address length
}

var (
	natIPv4 = natFamily{nftables.TableFamilyIPv4, "ip", 12, 16, 4}
	natIPv6 = natFamily{nftables.TableFamilyIPv6, "ip6", 8, 24, 16}
)

// natFamilies finds a family by its nft(8) name, for the journal.
var natFamilies = map[string]natFamily{natIPv4.name: natIPv4, natIPv6.name: natIPv6}

func familyOf(a netip.Addr) natFamily {
	if a.Is4() {
		return natIPv4
	}
	return natIPv6
}

func (fam natFamily) table() *nftables.Table {
	return &nftables.Table{Name: natTable, Family: fam.family}
}

// addRules queues the table, its chains (adding either again is harmless)
// and the three rules for src, each tagged with udata.
func (fam natFamily) addRules(c *nftables.Conn, src netip.Prefix, udata []byte) {
	table := c.AddTable(fam.table())
	accept := nftables.ChainPolicyAccept
	nat := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	fwd := c.AddChain(&nftables.Chain{
		Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	masq := append(fam.match(fam.saddr, src, expr.CmpOpEq), fam.match(fam.daddr, src, expr.CmpOpNeq)...)
	c.AddRule(&nftables.Rule{Table: table, Chain: nat, Exprs: append(masq, &expr.Masq{}), UserData: udata})
	for _, off := range []uint32{fam.saddr, fam.daddr} {
		exprs := append(fam.match(off, src, expr.CmpOpEq), &expr.Verdict{Kind: expr.VerdictAccept})
		c.AddRule(&nftables.Rule{Table: table, Chain: fwd, Exprs: exprs, UserData: udata})
	}
}

// match compares the address at offset off with prefix p, as
// "ip saddr 198.18.0.0/24" does: load, mask unless p is one host, compare.
func (fam natFamily) match(off uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	exprs := []expr.Any{&expr.Payload{
		DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: fam.size,
	}}
	if bits := p.Addr().BitLen(); p.Bits() < bits {
		exprs = append(exprs, &expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: fam.size,
			Mask: net.CIDRMask(p.Bits(), bits), Xor: make([]byte, fam.size),
		})
	}
	return append(exprs, &expr.Cmp{Op: op, Register: 1, Data: p.Addr().AsSlice()})
}

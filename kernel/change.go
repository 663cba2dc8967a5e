package kernel

import (
	"fmt"
	"net/netip"
	"strings"
)

// change is one host change, described well enough that a later process
// can reverse it: the journal stores these, so that a gateway killed with
// SIGKILL is undone by the next start or by sshvpn cleanup.
type change struct {
	Op     op           `json:"op"`
	Dev    string       `json:"dev,omitempty"`    // for messages
	Index  int          `json:"index,omitempty"`  // the link, by index: a name can be reused, an index not while the namespace lives
	Prefix netip.Prefix `json:"prefix,omitempty"` // an address or a route's destination
	Scope  int          `json:"scope,omitempty"`  // a route's scope
	Via    netip.Addr   `json:"via,omitzero"`     // a route's next hop, on an ethernet tunnel
	Path   string       `json:"path,omitempty"`   // a sysctl's /proc/sys path
	Value  string       `json:"value,omitempty"`  // what a sysctl was set to
	Old    string       `json:"old,omitempty"`    // what it was before; the old MTU
	Family string       `json:"family,omitempty"` // an nftables family: ip or ip6
	Tag    string       `json:"tag,omitempty"`    // the comment on sshvpn's nftables rules
	// A routing rule, and the table of a route outside the main one.
	Rule *rule `json:"rule,omitempty"`
	// Table is a route's table, for opTableRoute.
	Table int `json:"table,omitempty"`
	// Link is the target of a symlink that a file replaced, for opDNS.
	Link string `json:"link,omitempty"`
	// Swap is an interface swapped for a bridge, for opBridgeSwap.
	Swap *bridgeSwap `json:"swap,omitempty"`
}

// rule is a policy routing rule, as ip-rule(8) writes it:
//
//	priority Priority [not] [fwmark Mark] lookup Table [suppress_prefixlength N]
//
// V6 picks the family. Suppress is suppress_prefixlength plus one, so
// that 0 is "none" and the rule's JSON stays small.
type rule struct {
	V6       bool   `json:"v6,omitempty"`
	Priority int    `json:"priority"`
	Table    int    `json:"table"`
	Mark     uint32 `json:"mark,omitempty"`
	Invert   bool   `json:"invert,omitempty"`
	Suppress int    `json:"suppress,omitempty"`
}

func (r rule) String() string {
	var b strings.Builder
	if r.V6 {
		b.WriteString("-6 ")
	}
	fmt.Fprintf(&b, "rule priority %d ", r.Priority)
	if r.Invert {
		b.WriteString("not ")
	}
	if r.Mark != 0 {
		fmt.Fprintf(&b, "fwmark %#x ", r.Mark)
	}
	fmt.Fprintf(&b, "lookup %d", r.Table)
	if r.Suppress > 0 {
		fmt.Fprintf(&b, " suppress_prefixlength %d", r.Suppress-1)
	}
	return b.String()
}

// op is the kind of a change.
type op string

const (
	opLinkUp      op = "link-up"     // set a link up; revert sets it down
	opMTU         op = "mtu"         // set a link's MTU; revert restores Old
	opAddress     op = "address"     // add an address; revert deletes it
	opRoute       op = "route"       // add a route through a link; revert deletes it
	opUnreachable op = "unreachable" // add an unreachable route; revert deletes it
	opSysctl      op = "sysctl"      // set a sysctl; revert restores Old if it still holds Value
	opNAT         op = "nat"         // add tagged nftables rules; revert deletes them
	opRule        op = "rule"        // add a policy routing rule; revert deletes it
	opTableRoute  op = "table-route" // add a route through a link in Table; revert deletes it
	opNFTable     op = "nft-table"   // add a whole nftables table, Family Tag; revert deletes it
	opDNS         op = "dns"         // set a link's name servers, or rewrite resolv.conf; revert takes them back
	opMaster      op = "master"      // enslave link Dev to bridge Value; revert releases it
	opBridgePort  op = "bridge-port" // add port security chain Value for Dev to bridge table Tag; revert deletes it
	opBridgeSwap  op = "bridge-swap" // swap an interface for a bridge with its addresses and routes; revert swaps back
)

func (c change) String() string {
	switch c.Op {
	case opLinkUp:
		return "link " + c.Dev + " up"
	case opMTU:
		return fmt.Sprintf("link %s mtu %s (was %s)", c.Dev, c.Value, c.Old)
	case opAddress:
		return fmt.Sprintf("address %s on %s", c.Prefix, c.Dev)
	case opRoute:
		return fmt.Sprintf("route %s%s dev %s", c.Prefix, c.via(), c.Dev)
	case opUnreachable:
		return fmt.Sprintf("route unreachable %s", c.Prefix)
	case opSysctl:
		return fmt.Sprintf("sysctl %s=%s (was %s)", c.Path, c.Value, c.Old)
	case opNAT:
		return fmt.Sprintf("nftables %s sshvpn: %s", c.Family, c.Tag)
	case opRule:
		if c.Rule == nil {
			return "rule (empty)"
		}
		return c.Rule.String()
	case opTableRoute:
		return fmt.Sprintf("route %s%s dev %s table %d", c.Prefix, c.via(), c.Dev, c.Table)
	case opNFTable:
		return fmt.Sprintf("nftables table %s %s", c.Family, c.Tag)
	case opDNS:
		return c.dnsString()
	case opMaster:
		return fmt.Sprintf("link %s master %s", c.Dev, c.Value)
	case opBridgePort:
		return fmt.Sprintf("nftables %s %s chain %s (port %s)", c.Family, c.Tag, c.Value, c.Dev)
	case opBridgeSwap:
		if c.Swap == nil {
			return "bridge swap (empty)"
		}
		return fmt.Sprintf("bridge %s in place of %s (%d addresses, %d routes)", c.Swap.Bridge, c.Swap.Dev, len(c.Swap.Addrs), len(c.Swap.Routes))
	}
	return string(c.Op)
}

// via is " via ADDR" for a route with a next hop, as ip route prints it.
func (c change) via() string {
	if !c.Via.IsValid() {
		return ""
	}
	return " via " + c.Via.String()
}

package kernel

import (
	"fmt"
	"net/netip"
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
	Path   string       `json:"path,omitempty"`   // a sysctl's /proc/sys path
	Value  string       `json:"value,omitempty"`  // what a sysctl was set to
	Old    string       `json:"old,omitempty"`    // what it was before; the old MTU
	Family string       `json:"family,omitempty"` // an nftables family: ip or ip6
	Tag    string       `json:"tag,omitempty"`    // the comment on sshvpn's nftables rules
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
		return fmt.Sprintf("route %s dev %s", c.Prefix, c.Dev)
	case opUnreachable:
		return fmt.Sprintf("route unreachable %s", c.Prefix)
	case opSysctl:
		return fmt.Sprintf("sysctl %s=%s (was %s)", c.Path, c.Value, c.Old)
	case opNAT:
		return fmt.Sprintf("nftables %s sshvpn: %s", c.Family, c.Tag)
	}
	return string(c.Op)
}

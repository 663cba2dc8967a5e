package kernel

import (
	"fmt"
	"log/slog"
	"strconv"

	"github.com/vishvananda/netlink"
)

// revert reverses c. What is already gone (a link deleted with its
// addresses and routes) counts as reversed.
func (c change) revert(log *slog.Logger) error {
	switch c.Op {
	case opLinkUp:
		return onLink(c.Index, "set "+c.Dev+" down", netlink.LinkSetDown)
	case opMTU:
		old, err := strconv.Atoi(c.Old)
		if err != nil {
			return fmt.Errorf("restore %s mtu %q: %w", c.Dev, c.Old, err)
		}
		return onLink(c.Index, fmt.Sprintf("restore %s mtu %d", c.Dev, old), func(l netlink.Link) error {
			return netlink.LinkSetMTU(l, old)
		})
	case opAddress:
		err := netlink.AddrDel(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: c.Index}}, &netlink.Addr{IPNet: ipNet(c.Prefix)})
		if err != nil && !gone(err) {
			return fmt.Errorf("delete %s from %s: %w", c.Prefix, c.Dev, err)
		}
		return nil
	case opRoute, opUnreachable:
		if err := netlink.RouteDel(c.route()); err != nil && !gone(err) {
			return fmt.Errorf("delete %s: %w", c, err)
		}
		return nil
	case opSysctl:
		return c.revertSysctl(log)
	case opNAT:
		fam, ok := natFamilies[c.Family]
		if !ok {
			return fmt.Errorf("remove %s: unknown nftables family", c)
		}
		return fam.removeRules(c.Tag)
	}
	return fmt.Errorf("undo %q: unknown kind of change (written by another sshvpn version?)", c.Op)
}

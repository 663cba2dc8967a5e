package kernel

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// revert reverses c. What is already gone (a link deleted with its
// addresses and routes) counts as reversed.
func (c change) revert(log *slog.Logger) error {
	switch c.Op {
	case opLinkUp:
		return c.onOwnLink("set "+c.Dev+" down", netlink.LinkSetDown)
	case opMTU:
		old, err := strconv.Atoi(c.Old)
		if err != nil {
			return fmt.Errorf("restore %s mtu %q: %w", c.Dev, c.Old, err)
		}
		return c.onOwnLink(fmt.Sprintf("restore %s mtu %d", c.Dev, old), func(l netlink.Link) error {
			return netlink.LinkSetMTU(l, old)
		})
	case opAddress:
		return c.onOwnLink(fmt.Sprintf("delete %s from %s", c.Prefix, c.Dev), func(l netlink.Link) error {
			if err := netlink.AddrDel(l, &netlink.Addr{IPNet: ipNet(c.Prefix)}); err != nil && !gone(err) {
				return err
			}
			return nil
		})
	case opRoute, opUnreachable:
		if err := netlink.RouteDel(c.route()); err != nil && !gone(err) {
			return fmt.Errorf("delete %s: %w", c, err)
		}
		return nil
	case opSysctl:
		// Only network parameters are sshvpn's to change.
		if !strings.HasPrefix(c.Path, "/proc/sys/net/") || strings.Contains(c.Path, "..") {
			return fmt.Errorf("undo %s: not a network parameter", c)
		}
		return c.revertSysctl(log)
	case opNAT:
		fam, ok := natFamilies[c.Family]
		if !ok {
			return fmt.Errorf("remove %s: unknown nftables family", c)
		}
		return fam.removeRules(c.Tag)
	case opRule:
		if c.Rule == nil {
			return fmt.Errorf("undo %s: the journal lost the rule", c)
		}
		if err := netlink.RuleDel(c.Rule.netlink()); err != nil && !gone(err) {
			return fmt.Errorf("delete %s: %w", c, err)
		}
		return nil
	case opNFTable:
		// Only sshvpn's own tables, whatever the journal says.
		if !strings.HasPrefix(c.Tag, "sshvpn-") {
			return fmt.Errorf("undo %s: not an sshvpn table", c)
		}
		return deleteNFTable(c.Family, c.Tag)
	case opTableRoute:
		if err := netlink.RouteDel(c.tableRoute()); err != nil && !gone(err) {
			return fmt.Errorf("delete %s: %w", c, err)
		}
		return nil
	case opDNS:
		return c.revertDNS(log)
	case opMaster:
		return c.onOwnLink("release "+c.Dev+" from "+c.Value, func(l netlink.Link) error {
			return releaseFrom(l, c.Value)
		})
	case opBridgePort:
		if !strings.HasPrefix(c.Tag, "sshvpn-") {
			return fmt.Errorf("undo %s: not an sshvpn table", c)
		}
		return removePortChain(c.Tag, c.Value)
	case opBridgeSwap:
		if c.Swap == nil {
			return fmt.Errorf("undo %s: the journal lost the swap", c)
		}
		return c.Swap.revert(log)
	}
	return fmt.Errorf("undo %q: unknown kind of change (written by another sshvpn version?)", c.Op)
}

// onOwnLink applies fn to the change's link if it is still the one the
// change was made on: same index and name. Another device that took the
// index since (a journal replayed long after) is left alone.
func (c change) onOwnLink(what string, fn func(netlink.Link) error) error {
	return onLink(c.Index, what, func(l netlink.Link) error {
		if l.Attrs().Name != c.Dev {
			return nil
		}
		return fn(l)
	})
}

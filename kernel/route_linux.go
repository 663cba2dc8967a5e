//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Reversals find a link by index, not name: the index is never reused while
// the namespace lives, so a reversal cannot touch a different device that
// took the name after ours went away.

// LinkUp sets dev up. Revert sets it down again only if it was down before.
func (u *undoLog) LinkUp(dev string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("set %s up: %w", dev, err)
	}
	if link.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	c := change{Op: opLinkUp, Dev: dev, Index: link.Attrs().Index}
	return u.apply(c, func() error {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", dev, err)
		}
		return nil
	})
}

// SetMTU sets dev's MTU. Revert restores the old one.
func (u *undoLog) SetMTU(dev string, mtu int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("set %s mtu %d: %w", dev, mtu, err)
	}
	old := link.Attrs().MTU
	if old == mtu {
		return nil
	}
	c := change{Op: opMTU, Dev: dev, Index: link.Attrs().Index, Value: strconv.Itoa(mtu), Old: strconv.Itoa(old)}
	return u.apply(c, func() error {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set %s mtu %d: %w", dev, mtu, err)
		}
		return nil
	})
}

// onLink applies fn to the link with index; a link that is gone is fine.
func onLink(index int, what string, fn func(netlink.Link) error) error {
	link, err := netlink.LinkByIndex(index)
	if gone(err) {
		return nil
	}
	if err == nil {
		err = fn(link)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// AddAddress adds p (the host address and its prefix length) to dev. With
// noPrefixRoute the kernel adds no route for the prefix (IFA_F_NOPREFIXROUTE).
// An IPv6 address skips duplicate address detection (IFA_F_NODAD) and, on an
// up link, AddAddress returns once the kernel delivers packets for it, so it
// is usable at once. Revert deletes the address.
//
// Linux flushes IPv6 addresses when a link goes down, so add them after
// LinkUp.
func (u *undoLog) AddAddress(dev string, p netip.Prefix, noPrefixRoute bool) error {
	return u.addAddress(dev, p, noPrefixRoute, netip.Addr{})
}

// AddLeasedAddress adds p, an IPv4 address a DHCP server leased with its
// subnet, to dev with the broadcast address brd, as the lease says. Revert
// deletes it.
func (u *undoLog) AddLeasedAddress(dev string, p netip.Prefix, brd netip.Addr) error {
	return u.addAddress(dev, p, false, brd)
}

func (u *undoLog) addAddress(dev string, p netip.Prefix, noPrefixRoute bool, brd netip.Addr) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("add %s to %s: %w", p, dev, err)
	}
	addr := &netlink.Addr{IPNet: ipNet(p), Flags: addrFlags(p, noPrefixRoute)}
	if brd.IsValid() {
		addr.Broadcast = brd.AsSlice()
	}
	c := change{Op: opAddress, Dev: dev, Index: link.Attrs().Index, Prefix: p}
	err = u.apply(c, func() error {
		err := netlink.AddrAdd(link, addr)
		if errors.Is(err, unix.EEXIST) {
			return &causeError{fmt.Sprintf("add %s to %s: address in use (already on %s)", p, dev, holders(p.Addr(), dev)), err}
		}
		if err != nil {
			return fmt.Errorf("add %s to %s: %w", p, dev, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if p.Addr().Is6() && link.Attrs().Flags&net.FlagUp != 0 {
		u.waitLocal(p.Addr(), dev)
	}
	return nil
}

// waitLocal waits until the kernel delivers packets for ip locally. An IPv6
// address, even with IFA_F_NODAD, gets its local route from a workqueue a
// moment after the add returns, and a packet arriving before that is
// forwarded or dropped as if the address were elsewhere. (On a down link the
// route waits for the link to come up, so only an up link is waited for.)
func (u *undoLog) waitLocal(ip netip.Addr, dev string) {
	deadline := time.Now().Add(localRouteWait)
	for time.Now().Before(deadline) {
		routes, err := netlink.RouteGet(ip.AsSlice())
		if err == nil && len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
			return
		}
		time.Sleep(time.Millisecond)
	}
	u.log().Warn("address added but not yet usable", "addr", ip, "dev", dev, "waited", localRouteWait)
}

// localRouteWait bounds waitLocal; the kernel takes microseconds.
const localRouteWait = 2 * time.Second

func addrFlags(p netip.Prefix, noPrefixRoute bool) int {
	var f int
	if noPrefixRoute {
		f |= unix.IFA_F_NOPREFIXROUTE
	}
	if p.Addr().Is6() {
		f |= unix.IFA_F_NODAD
	}
	return f
}

// holders names the devices that carry ip, falling back to dev: the kernel
// refuses a duplicate only on the same device, so dev is always one of them.
func holders(ip netip.Addr, dev string) string {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(nil, family)
	if err != nil {
		return dev
	}
	var names []string
	for _, a := range addrs {
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
			names = append(names, linkName(a.LinkIndex))
		}
	}
	if len(names) == 0 {
		return dev
	}
	return strings.Join(names, ", ")
}

func linkName(index int) string {
	link, err := netlink.LinkByIndex(index)
	if err != nil {
		return fmt.Sprintf("link %d", index)
	}
	return link.Attrs().Name
}

// AddRoute routes dst through dev in the main table. Revert deletes the route.
func (u *undoLog) AddRoute(dst netip.Prefix, dev string) error {
	return u.addRoute(dst, netip.Addr{}, dev, false)
}

// AddRouteVia routes dst via the next hop via on dev in the main table, as
// ip route add DST via VIA dev DEV onlink: the next hop is on the link by
// the link's nature (an ethernet tunnel's far end), whatever addresses
// the device holds. Revert deletes the route.
func (u *undoLog) AddRouteVia(dst netip.Prefix, via netip.Addr, dev string) error {
	return u.addRoute(dst, via, dev, false)
}

// ReplaceRoute routes dst through dev in the main table, in place of a
// route another device had for it. Revert deletes the route, if it is
// still through dev.
func (u *undoLog) ReplaceRoute(dst netip.Prefix, dev string) error {
	return u.addRoute(dst, netip.Addr{}, dev, true)
}

func (u *undoLog) addRoute(dst netip.Prefix, via netip.Addr, dev string, replace bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := change{Op: opRoute, Dev: dev, Prefix: dst.Masked(), Via: via}
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("add %s: %w", c, err)
	}
	c.Index = link.Attrs().Index
	if dst.Addr().Is4() && !via.IsValid() {
		// What "ip route add ... dev X" does for a route without a gateway.
		c.Scope = int(netlink.SCOPE_LINK)
	}
	add := netlink.RouteAdd
	if replace {
		add = netlink.RouteReplace
	}
	return u.apply(c, func() error {
		if err := add(c.route()); err != nil {
			return fmt.Errorf("add %s: %w", c, err)
		}
		return nil
	})
}

// AddUnreachable makes dst unreachable in the main table, so that a packet
// for an address in it that no more specific route claims is refused with
// an ICMP error instead of following some other route. Revert deletes it.
func (u *undoLog) AddUnreachable(dst netip.Prefix) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := change{Op: opUnreachable, Prefix: dst.Masked()}
	return u.apply(c, func() error {
		if err := netlink.RouteAdd(c.route()); err != nil {
			return fmt.Errorf("add route unreachable %s: %w", dst.Masked(), err)
		}
		return nil
	})
}

// route is the kernel route an opRoute or opUnreachable change adds.
func (c change) route() *netlink.Route {
	r := &netlink.Route{Dst: ipNet(c.Prefix), Protocol: unix.RTPROT_STATIC}
	if c.Op == opUnreachable {
		r.Type = unix.RTN_UNREACHABLE
		return r
	}
	r.LinkIndex, r.Scope = c.Index, netlink.Scope(c.Scope)
	c.setVia(r)
	return r
}

// setVia gives r the change's next hop, if it has one, flagged on-link.
func (c change) setVia(r *netlink.Route) {
	if c.Via.IsValid() {
		r.Gw = c.Via.AsSlice()
		r.Flags |= int(netlink.FLAG_ONLINK)
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := p.Addr().BitLen()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// gone reports whether err says the object to undo no longer exists,
// typically because the kernel deleted it along with its device.
func gone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) ||
		errors.Is(err, unix.ENODEV) ||
		errors.Is(err, unix.ESRCH) ||
		errors.Is(err, unix.EADDRNOTAVAIL) ||
		errors.Is(err, unix.ENOENT)
}

// deleteAddress removes p from dev, for a client whose gateway handed it a
// new address on reconnect. An undoLog that added p treats it as already gone.
func deleteAddress(dev string, p netip.Prefix) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("delete %s from %s: %w", p, dev, err)
	}
	if err := netlink.AddrDel(link, &netlink.Addr{IPNet: ipNet(p)}); err != nil && !gone(err) {
		return fmt.Errorf("delete %s from %s: %w", p, dev, err)
	}
	return nil
}

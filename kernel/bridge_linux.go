//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// bridgeMTU returns the MTU of the existing bridge name, or says why it
// cannot take taps: it does not exist, or it is not a bridge.
func bridgeMTU(name string) (int, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return 0, fmt.Errorf("--bridge %s: no such interface; make it first (ip link add %s type bridge), or let sshvpn swap an interface for one with --create-bridge", name, name)
		}
		return 0, fmt.Errorf("--bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return 0, fmt.Errorf("--bridge %s: a %s, not a bridge; use --create-bridge %s to put it on a bridge", name, l.Type(), name)
	}
	return l.Attrs().MTU, nil
}

// hostAddresses lists every address of every interface.
func hostAddresses() ([]netip.Addr, error) {
	as, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if p, ok := prefixOfNet(a.IPNet); ok {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

// fdbPort is the name of the port of bridge whose forwarding database
// entry has mac, the bridge itself for its own, or "" when only the port
// except has it, or none does.
func fdbPort(bridge string, mac [6]byte, except int) (string, error) {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return "", fmt.Errorf("read bridge %s's forwarding database: %w", bridge, err)
	}
	bi := br.Attrs().Index
	entries, err := netlink.NeighList(0, unix.AF_BRIDGE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return "", fmt.Errorf("read bridge %s's forwarding database: %w", bridge, err)
	}
	for _, e := range entries {
		if len(e.HardwareAddr) != 6 || [6]byte(e.HardwareAddr) != mac || e.LinkIndex == except {
			continue
		}
		if e.MasterIndex == bi || e.LinkIndex == bi {
			return linkName(e.LinkIndex), nil
		}
	}
	return "", nil
}

// linkIndex is dev's interface index.
func linkIndex(dev string) (int, error) {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", dev, err)
	}
	return l.Attrs().Index, nil
}

// SetMaster enslaves dev to bridge. Revert releases it, if it is still
// on that bridge.
func (u *undoLog) SetMaster(dev, bridge string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("attach %s to bridge %s: %w", dev, bridge, err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("attach %s to bridge %s: %w", dev, bridge, err)
	}
	c := change{Op: opMaster, Dev: dev, Index: link.Attrs().Index, Value: bridge}
	return u.apply(c, func() error {
		if err := netlink.LinkSetMasterByIndex(link, br.Attrs().Index); err != nil {
			return fmt.Errorf("attach %s to bridge %s: %w", dev, bridge, err)
		}
		return nil
	})
}

// releaseFrom takes l off the bridge named bridge; a link on another
// bridge, or on none, is left alone.
func releaseFrom(l netlink.Link, bridge string) error {
	m := l.Attrs().MasterIndex
	if m == 0 {
		return nil
	}
	br, err := netlink.LinkByIndex(m)
	if err != nil || br.Attrs().Name != bridge {
		return nil
	}
	return netlink.LinkSetNoMaster(l)
}

// bridgeSwap is an interface whose addresses and routes moved to a bridge
// made for it, with the interface as the bridge's port: enough to put it all
// back after a crash.
type bridgeSwap struct {
	Bridge string `json:"bridge"`
	// Alias marks the bridge as this swap's (IFLA_IFALIAS): a revert
	// deletes no bridge of that name that someone else made since.
	Alias  string       `json:"alias"`
	Dev    string       `json:"dev"`
	Index  int          `json:"index"`
	Addrs  []movedAddr  `json:"addrs,omitempty"`
	Routes []movedRoute `json:"routes,omitempty"`
}

// movedAddr is an interface address as netlink lists it.
type movedAddr struct {
	Prefix    netip.Prefix `json:"prefix"`
	Peer      netip.Prefix `json:"peer,omitzero"`
	Broadcast netip.Addr   `json:"broadcast,omitzero"`
	Label     string       `json:"label,omitempty"`
	Flags     int          `json:"flags,omitempty"`
	Scope     int          `json:"scope,omitempty"`
	Valid     int          `json:"valid,omitempty"`     // lifetime in seconds; 0: forever
	Preferred int          `json:"preferred,omitempty"` // lifetime in seconds; 0: forever
}

// movedRoute is a route through the interface as netlink lists it.
type movedRoute struct {
	V6       bool         `json:"v6,omitempty"`
	Dst      netip.Prefix `json:"dst,omitzero"` // zero: a default route
	Src      netip.Addr   `json:"src,omitzero"`
	Gw       netip.Addr   `json:"gw,omitzero"`
	Table    int          `json:"table"`
	Protocol int          `json:"protocol"`
	Priority int          `json:"priority,omitempty"`
	Scope    int          `json:"scope,omitempty"`
	Type     int          `json:"type,omitempty"`
	Tos      int          `json:"tos,omitempty"`
	Flags    int          `json:"flags,omitempty"`
	MTU      int          `json:"mtu,omitempty"`
	AdvMSS   int          `json:"advmss,omitempty"`
	Hoplimit int          `json:"hoplimit,omitempty"`
	// Hops are a multipath route's next hops; Link 0 is the swapped
	// interface, any other a link the route shares.
	Hops []movedHop `json:"hops,omitempty"`
}

type movedHop struct {
	Link  int        `json:"link,omitempty"`
	Gw    netip.Addr `json:"gw,omitzero"`
	Hops  int        `json:"hops,omitempty"`
	Flags int        `json:"flags,omitempty"`
}

// The address flags a process may set (the kernel keeps the others itself).
const settableAddrFlags = unix.IFA_F_NODAD | unix.IFA_F_OPTIMISTIC | unix.IFA_F_HOMEADDRESS |
	unix.IFA_F_NOPREFIXROUTE | unix.IFA_F_MANAGETEMPADDR | unix.IFA_F_MCAUTOJOIN

// SwapForBridge puts iface on a new bridge, the manual swap in one step: a
// bridge named bridge with iface's MAC (so the LAN's DHCP leases and
// neighbour caches stay right) and MTU, STP off and no forwarding delay,
// then iface enslaved to it and its addresses and routes (every one but the
// kernel's own and IPv6 link-local addresses, which each link makes for
// itself) moved to the bridge. Traffic through iface stops from the
// enslaving until the routes are back on the bridge: a few netlink calls,
// milliseconds. Revert deletes the bridge and puts every address and
// route back on iface.
func (u *undoLog) SwapForBridge(iface, bridge string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	what := fmt.Sprintf("--create-bridge %s", iface)
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if link.Attrs().MasterIndex != 0 {
		return fmt.Errorf("%s: %s is already a port of %s", what, iface, linkName(link.Attrs().MasterIndex))
	}
	switch link.Type() {
	case "bridge", "tuntap", "loopback":
		return fmt.Errorf("%s: a %s cannot be a bridge port; use --bridge for an existing bridge", what, link.Type())
	}
	if _, err := netlink.LinkByName(bridge); err == nil {
		return fmt.Errorf("%s: an interface named %s exists already", what, bridge)
	}
	sw := &bridgeSwap{Bridge: bridge, Alias: fmt.Sprintf("sshvpn pid %d: bridge for %s", os.Getpid(), iface),
		Dev: iface, Index: link.Attrs().Index}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("%s: list its addresses: %w", what, err)
	}
	for _, a := range addrs {
		if m, ok := moveAddr(a); ok {
			sw.Addrs = append(sw.Addrs, m)
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("%s: list routes: %w", what, err)
	}
	for _, r := range routes {
		if m, ok := moveRoute(r, sw.Index); ok {
			sw.Routes = append(sw.Routes, m)
		}
	}
	err = u.apply(change{Op: opBridgeSwap, Dev: iface, Index: sw.Index, Swap: sw}, func() error {
		if err := sw.apply(link); err != nil {
			// Half a swap is worse than none: put iface back now.
			return errors.Join(fmt.Errorf("%s: %w", what, err), sw.revert(slog.Default()))
		}
		return nil
	})
	if err == nil {
		sw.warnExpiring(u.log())
	}
	return err
}

// warnExpiring warns of each moved address with a finite lifetime: a DHCP
// lease or a SLAAC address, which a DHCP client or the kernel keeps alive
// on the interface, not on the bridge. The bridge's copy runs out with its
// lifetime while the interface may be given the address again, and the
// gateway loses its LAN address mid-run.
func (sw *bridgeSwap) warnExpiring(log *slog.Logger) {
	for _, a := range sw.Addrs {
		if a.Valid == 0 {
			continue
		}
		log.Warn("--create-bridge: an address with a finite lifetime (a DHCP lease or SLAAC) moved to the bridge with what it had left; "+
			"whatever renews it (a DHCP client, router advertisements) does so on the interface, so the bridge's copy will expire "+
			"and the host lose it: give the interface static addresses, or run its DHCP client on the bridge",
			"interface", sw.Dev, "bridge", sw.Bridge, "address", a.Prefix, "valid_lft", a.Valid)
	}
}

// moveAddr is what of a moves; IPv6 link-local addresses stay.
func moveAddr(a netlink.Addr) (movedAddr, bool) {
	p, ok := prefixOfNet(a.IPNet)
	if !ok || (p.Addr().Is6() && p.Addr().IsLinkLocalUnicast()) {
		return movedAddr{}, false
	}
	m := movedAddr{Prefix: p, Label: a.Label, Flags: a.Flags, Scope: a.Scope}
	if a.Peer != nil {
		m.Peer, _ = prefixOfNet(a.Peer)
	}
	if b, ok := netip.AddrFromSlice(a.Broadcast); ok {
		m.Broadcast = b.Unmap()
	}
	// The kernel reports forever as 0xffffffff; 0 says the same here.
	if a.ValidLft > 0 && uint32(a.ValidLft) != ^uint32(0) {
		m.Valid, m.Preferred = a.ValidLft, a.PreferedLft
	}
	return m, true
}

// moveRoute is what of r moves: a route through the interface index
// (directly or as a next hop), except the kernel's own (local table,
// prefix routes of addresses, which move with them).
func moveRoute(r netlink.Route, index int) (movedRoute, bool) {
	if r.Table == unix.RT_TABLE_LOCAL || r.Protocol == unix.RTPROT_KERNEL {
		return movedRoute{}, false
	}
	through := r.LinkIndex == index
	for _, h := range r.MultiPath {
		through = through || h.LinkIndex == index
	}
	if !through {
		return movedRoute{}, false
	}
	m := movedRoute{V6: r.Family == netlink.FAMILY_V6, Table: r.Table, Protocol: int(r.Protocol), Priority: r.Priority,
		Scope: int(r.Scope), Type: r.Type, Tos: r.Tos, Flags: r.Flags, MTU: r.MTU, AdvMSS: r.AdvMSS, Hoplimit: r.Hoplimit}
	if r.Dst != nil {
		m.Dst, _ = prefixOfNet(r.Dst)
	}
	if a, ok := netip.AddrFromSlice(r.Src); ok {
		m.Src = a.Unmap()
	}
	if a, ok := netip.AddrFromSlice(r.Gw); ok {
		m.Gw = a.Unmap()
	}
	for _, h := range r.MultiPath {
		mh := movedHop{Hops: h.Hops, Flags: h.Flags}
		if h.LinkIndex != index {
			mh.Link = h.LinkIndex
		}
		if a, ok := netip.AddrFromSlice(h.Gw); ok {
			mh.Gw = a.Unmap()
		}
		m.Hops = append(m.Hops, mh)
	}
	return m, true
}

func prefixOfNet(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, _ := n.Mask.Size()
	if a.Is4() && len(n.Mask) == net.IPv6len {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones), true
}

// apply makes the bridge and moves iface onto it.
func (sw *bridgeSwap) apply(iface netlink.Link) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.HardwareAddr, attrs.MTU = sw.Bridge, iface.Attrs().HardwareAddr, iface.Attrs().MTU
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		return fmt.Errorf("add bridge %s: %w", sw.Bridge, err)
	}
	br, err := netlink.LinkByName(sw.Bridge)
	if err != nil {
		return fmt.Errorf("add bridge %s: %w", sw.Bridge, err)
	}
	if err := netlink.LinkSetAlias(br, sw.Alias); err != nil {
		return fmt.Errorf("mark bridge %s as sshvpn's: %w", sw.Bridge, err)
	}
	if err := noSpanningTree(br.Attrs().Index); err != nil {
		return fmt.Errorf("bridge %s: stp off, forward delay 0: %w", sw.Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("set %s up: %w", sw.Bridge, err)
	}
	// From here until the routes are on the bridge, nothing reaches iface's addresses.
	if err := netlink.LinkSetMaster(iface, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", sw.Dev, sw.Bridge, err)
	}
	for i := len(sw.Routes) - 1; i >= 0; i-- {
		if err := netlink.RouteDel(sw.Routes[i].netlink(sw.Index)); err != nil && !gone(err) {
			return fmt.Errorf("delete %s from %s: %w", sw.Routes[i], sw.Dev, err)
		}
	}
	// Secondary IPv4 addresses go before their primary, which would take them along.
	for i := len(sw.Addrs) - 1; i >= 0; i-- {
		a := sw.Addrs[i]
		if err := netlink.AddrDel(iface, &netlink.Addr{IPNet: ipNet(a.Prefix)}); err != nil && !gone(err) {
			return fmt.Errorf("delete %s from %s: %w", a.Prefix, sw.Dev, err)
		}
	}
	for _, a := range sw.Addrs {
		// The address was the host's a moment ago: no duplicate detection.
		na := a.netlink(sw.Bridge)
		na.Label = ""
		if a.Prefix.Addr().Is6() {
			na.Flags |= unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(br, na); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", a.Prefix, sw.Bridge, err)
		}
	}
	for _, r := range sw.Routes {
		if err := netlink.RouteAdd(r.netlink(br.Attrs().Index)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", r, sw.Bridge, err)
		}
	}
	return nil
}

// noSpanningTree turns STP off and the forwarding delay to zero on the
// bridge index (IFLA_BR_STP_STATE, IFLA_BR_FORWARD_DELAY), which
// vishvananda/netlink's Bridge does not carry: a port forwards at once.
func noSpanningTree(index int) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(unix.IFLA_BR_STP_STATE, nl.Uint32Attr(0))
	data.AddRtAttr(unix.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(0))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// revert deletes the bridge, if it is still this swap's, and puts every
// address and route back on the interface. What is there already counts as
// back: a revert after a swap that stopped half way, or a second revert,
// does no harm.
func (sw *bridgeSwap) revert(log *slog.Logger) error {
	var errs []error
	iface, err := netlink.LinkByIndex(sw.Index)
	if gone(err) || (err == nil && iface.Attrs().Name != sw.Dev) {
		iface = nil // the interface is gone: its addresses and routes with it
	} else if err != nil {
		return fmt.Errorf("swap %s back: %w", sw.Dev, err)
	}
	if br, err := netlink.LinkByName(sw.Bridge); err == nil {
		if br.Attrs().Alias != sw.Alias {
			log.Warn("not deleting a bridge sshvpn did not make", "bridge", sw.Bridge, "alias", br.Attrs().Alias)
		} else {
			if iface != nil {
				if err := releaseFrom(iface, sw.Bridge); err != nil {
					errs = append(errs, fmt.Errorf("release %s from %s: %w", sw.Dev, sw.Bridge, err))
				}
			}
			if err := netlink.LinkDel(br); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("delete bridge %s: %w", sw.Bridge, err))
			}
		}
	}
	if iface == nil {
		return errors.Join(errs...)
	}
	// IPv4 addresses in their order (primaries first); IPv6 ones newest
	// first, as the kernel lists them, so that both list as they did.
	var v4, v6 []movedAddr
	for _, a := range sw.Addrs {
		if a.Prefix.Addr().Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append([]movedAddr{a}, v6...)
		}
	}
	for _, a := range append(v4, v6...) {
		if err := netlink.AddrAdd(iface, a.netlink(sw.Dev)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("put %s back on %s: %w", a.Prefix, sw.Dev, err))
		}
	}
	for _, r := range sw.Routes {
		if err := netlink.RouteAdd(r.netlink(sw.Index)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("put %s back on %s: %w", r, sw.Dev, err))
		}
	}
	return errors.Join(errs...)
}

// netlink is the address as AddrAdd takes it, for the link named dev.
func (a movedAddr) netlink(dev string) *netlink.Addr {
	na := &netlink.Addr{IPNet: ipNet(a.Prefix), Flags: a.Flags & settableAddrFlags, Scope: a.Scope,
		ValidLft: a.Valid, PreferedLft: a.Preferred}
	if a.Label != "" && a.Label != dev {
		na.Label = a.Label
	}
	if a.Peer.IsValid() {
		na.Peer = ipNet(a.Peer)
	}
	switch {
	case a.Broadcast.IsValid():
		na.Broadcast = a.Broadcast.AsSlice()
	case a.Prefix.Addr().Is4():
		na.Broadcast = net.IPv4zero // none, as it had: netlink would make one up
	}
	return na
}

// netlink is the route through the link index.
func (r movedRoute) netlink(index int) *netlink.Route {
	nr := &netlink.Route{Table: r.Table, Protocol: netlink.RouteProtocol(r.Protocol), Priority: r.Priority,
		Scope: netlink.Scope(r.Scope), Type: r.Type, Tos: r.Tos, Flags: r.Flags, MTU: r.MTU, AdvMSS: r.AdvMSS, Hoplimit: r.Hoplimit}
	nr.Family = netlink.FAMILY_V4
	if r.V6 {
		nr.Family = netlink.FAMILY_V6
	}
	if r.Dst.IsValid() {
		nr.Dst = ipNet(r.Dst)
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	}
	if len(r.Hops) == 0 {
		nr.LinkIndex = index
	}
	for _, h := range r.Hops {
		nh := &netlink.NexthopInfo{LinkIndex: index, Hops: h.Hops, Flags: h.Flags}
		if h.Link != 0 {
			nh.LinkIndex = h.Link
		}
		if h.Gw.IsValid() {
			nh.Gw = h.Gw.AsSlice()
		}
		nr.MultiPath = append(nr.MultiPath, nh)
	}
	return nr
}

func (r movedRoute) String() string {
	dst := "default"
	if r.Dst.IsValid() {
		dst = r.Dst.String()
	}
	s := "route " + dst
	if r.Gw.IsValid() {
		s += " via " + r.Gw.String()
	}
	if r.Table != unix.RT_TABLE_MAIN {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	return s
}

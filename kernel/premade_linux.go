package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/kernel/tun"
	"github.com/sshvpn/sshvpn/relay"
)

// NeedsPremade reports whether this process lacks CAP_NET_ADMIN, so that a
// client can only attach a device root prepared for its user (FindPremade,
// LocalConfig.Premade).
func NeedsPremade() bool { return !hasNetAdmin() }

// FindPremade picks the device a client without CAP_NET_ADMIN attaches for
// the local unit of -w (relay.AnyUnit: the one free persistent device of
// the mode root made for this user), or fails with a *PremadeError that
// says how root prepares one. Netlink lists devices to anyone, and a named
// device is attached once and let go, so the kernel's own owner check
// speaks before the SSH connection is made.
func FindPremade(mode relay.Mode, unit uint32) (PremadeDevice, error) {
	devs, err := listTuntaps()
	if err != nil {
		return PremadeDevice{}, err
	}
	me, err := whoAmI()
	if err != nil {
		return PremadeDevice{}, err
	}
	d, err := choosePremade(mode, unit, devs, me)
	if err != nil {
		return d, err
	}
	t, err := tun.Open(tun.Config{Mode: mode, Unit: d.Unit})
	if ae, ok := errors.AsType[*tun.AccessError](err); ok {
		return d, &PremadeError{Spec: unitSpec(unit), Why: fmt.Sprintf("the kernel refuses %s to %s: %v", d.Name, me.user, ae.Err), Name: d.Name, Mode: mode, User: me.user}
	}
	if err != nil {
		return d, err
	}
	return d, t.Close()
}

// listTuntaps lists the namespace's tun and tap devices.
func listTuntaps() ([]tuntapInfo, error) {
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list network devices: %w", err)
	}
	var devs []tuntapInfo
	for _, l := range links {
		tt, ok := l.(*netlink.Tuntap)
		if !ok {
			continue
		}
		mode := relay.PointToPoint
		if tt.Mode == netlink.TUNTAP_MODE_TAP {
			mode = relay.Ethernet
		}
		devs = append(devs, tuntapInfo{name: tt.Name, mode: mode, persistent: !tt.NonPersist,
			attached: tt.Queues > 0, owner: tt.Owner, group: tt.Group})
	}
	return devs, nil
}

// whoAmI is the caller as the tun driver sees it: effective uid and groups.
func whoAmI() (identity, error) {
	me := identity{uid: uint32(os.Geteuid()), groups: []uint32{uint32(os.Getegid())}}
	gs, err := os.Getgroups()
	if err != nil {
		return me, fmt.Errorf("list my groups: %w", err)
	}
	for _, g := range gs {
		me.groups = append(me.groups, uint32(g))
	}
	me.user = strconv.Itoa(int(me.uid))
	if u, err := user.LookupId(me.user); err == nil {
		me.user = u.Username
	}
	return me, nil
}

// openPremade attaches the device root prepared, as it is, and reports what
// it lacks. Nothing is changed on the host, so nothing goes into the undo
// log, and the journal is not needed.
//
// The tun driver lets the owner attach with IFF_VNET_HDR and set offloads
// (TestPremadeUnprivileged shows it), yet the device is attached plain, as
// every persistent device is (tun.Open): a persistent device keeps the
// virtio-net header flag and its offloads after we let go, or after we are
// killed, and its owner's next ssh -w would read what it never asked for.
// Without offloads, super-packets are not carried whole (relay.GSO).
func openPremade(cfg LocalConfig, gw *relay.TunnelConfig) (*Local, error) {
	if cfg.DHCP {
		return nil, errors.New("--dhcp puts the lease's address on the tap, which needs CAP_NET_ADMIN: run as root, or have root address the tap")
	}
	dev, err := tun.Open(tun.Config{Mode: cfg.Mode, Unit: cfg.Unit})
	if err != nil {
		return nil, err
	}
	l := &Local{Tun: dev, undo: newUndo(cfg.Log), cfg: cfg, premade: true}
	if err := l.reportPremade(gw); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// readLinkState reads dev's state: link flags, MTU, addresses and the
// main table's routes through it. Netlink answers it without privileges.
func readLinkState(dev string) (deviceState, error) {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return deviceState{}, fmt.Errorf("read %s: %w", dev, err)
	}
	a := link.Attrs()
	s := deviceState{up: a.Flags&net.FlagUp != 0, mtu: a.MTU}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return s, fmt.Errorf("read %s addresses: %w", dev, err)
	}
	for _, x := range addrs {
		ip, ok := netip.AddrFromSlice(x.IP)
		if !ok || ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := x.Mask.Size()
		s.addrs = append(s.addrs, netip.PrefixFrom(ip.Unmap(), ones))
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: a.Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return s, fmt.Errorf("read %s routes: %w", dev, err)
	}
	for _, r := range routes {
		dst := r.Dst
		if dst == nil { // a default route, as netlink reads one
			dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
			if r.Family == netlink.FAMILY_V6 {
				dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			}
		}
		ip, ok := netip.AddrFromSlice(dst.IP)
		if !ok || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		ones, _ := dst.Mask.Size()
		s.routes = append(s.routes, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return s, nil
}

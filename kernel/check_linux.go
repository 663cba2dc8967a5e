package kernel

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/kernel/tun"
)

// CheckAccess fails early, before any client connects, when this process
// cannot create tun/tap devices or configure the network: the gateway would
// otherwise accept clients only to refuse every tunnel.
func CheckAccess() error {
	if err := tun.CheckAccess(); err != nil {
		return err
	}
	if !hasNetAdmin() {
		return &tun.AccessError{Op: "configure tunnel devices", Err: unix.EPERM, Cure: "needs CAP_NET_ADMIN: run as root"}
	}
	return nil
}

// hasNetAdmin reports whether CAP_NET_ADMIN is in the effective set.
func hasNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}

// addressOwner names the interface that holds a, or "" when none does.
func addressOwner(a netip.Addr) (string, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", fmt.Errorf("list addresses: %w", err)
	}
	for _, x := range addrs {
		got, ok := netip.AddrFromSlice(x.IP)
		if !ok || got.Unmap() != a.Unmap() {
			continue
		}
		link, err := netlink.LinkByIndex(x.LinkIndex)
		if err != nil {
			return fmt.Sprintf("interface %d", x.LinkIndex), nil
		}
		return link.Attrs().Name, nil
	}
	return "", nil
}

// networkOverlap names an interface address whose network overlaps n, as
// "198.18.0.1/16 on eth0", or "" when none does: a tunnel network inside a
// network the host already has would route that network's hosts into
// tunnels.
func networkOverlap(n netip.Prefix) (string, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", fmt.Errorf("list addresses: %w", err)
	}
	for _, x := range addrs {
		ip, ok := netip.AddrFromSlice(x.IP)
		if !ok {
			continue
		}
		ones, _ := x.Mask.Size()
		p := netip.PrefixFrom(ip.Unmap(), ones)
		if ip.Unmap().Is4() != n.Addr().Is4() || ip.IsLinkLocalUnicast() || !p.Masked().Overlaps(n.Masked()) {
			continue
		}
		return fmt.Sprintf("%s on %s", p, linkName(x.LinkIndex)), nil
	}
	return "", nil
}

// forwardDrops names the nftables base chains, other than sshvpn's, that
// drop forwarded packets by default ("inet filter forward"): sshvpn's
// accept rules cannot override them, so NAT would pass nothing. iptables-nft
// rules show here too; legacy iptables does not.
func forwardDrops() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, nftError("list nftables chains", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, nftError("list nftables chains", err)
	}
	var drops []string
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name == natTable || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward ||
			ch.Policy == nil || *ch.Policy != nftables.ChainPolicyDrop {
			continue
		}
		drops = append(drops, fmt.Sprintf("%s %s %s", familyName(ch.Table.Family), ch.Table.Name, ch.Name))
	}
	return drops, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return fmt.Sprintf("family(%d)", f)
}

// acceptRAInterfaces lists the interfaces that take IPv6 router
// advertisements only while not forwarding (accept_ra=1): turning IPv6
// forwarding on would lose the host its own default route through them.
func acceptRAInterfaces() []string {
	dirs, _ := filepath.Glob("/proc/sys/net/ipv6/conf/*")
	var names []string
	for _, d := range dirs {
		name := filepath.Base(d)
		if name == "all" || name == "default" || name == "lo" {
			continue
		}
		if v, err := os.ReadFile(filepath.Join(d, "accept_ra")); err == nil && strings.TrimSpace(string(v)) == "1" {
			names = append(names, name)
		}
	}
	return names
}

// deviceNetworks lists the networks of dev's own addresses, link-local ones
// aside: the tunnel network of a device the operator addressed by hand.
func deviceNetworks(dev string) []netip.Prefix {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return nil
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	var nets []netip.Prefix
	for _, x := range addrs {
		ip, ok := netip.AddrFromSlice(x.IP)
		if !ok || ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := x.Mask.Size()
		nets = append(nets, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return nets
}

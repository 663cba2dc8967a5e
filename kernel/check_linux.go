package kernel

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CheckAccess fails early, before any client connects, when this process
// cannot create tun/tap devices or configure the network: the gateway would
// otherwise accept clients only to refuse every tunnel.
func CheckAccess() error {
	fd, err := openClone()
	if err != nil {
		return err
	}
	unix.Close(fd)
	if !hasNetAdmin() {
		return fmt.Errorf("configure tunnel devices: %w: needs CAP_NET_ADMIN: run as root or use --backend netstack", unix.EPERM)
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

// AddressOwner names the interface that holds a, or "" when none does.
func AddressOwner(a netip.Addr) (string, error) {
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

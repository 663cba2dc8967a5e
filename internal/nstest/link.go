package nstest

import (
	"fmt"
	"net/netip"
	"testing"
)

// Link joins a and b with a veth pair, gives each end its address (IPv4 or
// IPv6; IPv6 with nodad so it is usable at once) and sets both ends up. It
// returns the interface names in a and in b ("veth0", "veth1", ... counted per
// namespace). The pair goes away with either namespace.
func Link(t testing.TB, a *NS, aAddr netip.Prefix, b *NS, bAddr netip.Prefix) (aDev, bDev string) {
	t.Helper()
	if a == b {
		t.Fatalf("Link: %s to itself", a.Name)
	}
	aDev, bDev = a.nextDev(), b.nextDev()
	// Create both ends straight inside their namespaces: the names only have
	// to be unique there, never in the host namespace.
	a.Run(t, "ip", "link", "add", "name", aDev, "type", "veth", "peer", "name", bDev, "netns", b.Name)
	a.addAddr(t, aDev, aAddr)
	b.addAddr(t, bDev, bAddr)
	a.Run(t, "ip", "link", "set", aDev, "up")
	b.Run(t, "ip", "link", "set", bDev, "up")
	return aDev, bDev
}

// nextDev returns a fresh interface name for this namespace.
func (n *NS) nextDev() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := fmt.Sprintf("veth%d", n.links)
	n.links++
	return d
}

// addAddr adds p to dev, skipping IPv6 duplicate address detection.
func (n *NS) addAddr(t testing.TB, dev string, p netip.Prefix) {
	t.Helper()
	if !p.IsValid() {
		return
	}
	args := []string{"ip", "addr", "add", p.String(), "dev", dev}
	if p.Addr().Is6() {
		args = append(args, "nodad")
	}
	n.Run(t, args...)
}

// AddRoute routes dst via the gateway via inside the namespace.
func (n *NS) AddRoute(t testing.TB, dst netip.Prefix, via netip.Addr) {
	t.Helper()
	n.Run(t, "ip", "route", "add", dst.String(), "via", via.String())
}

// EnableForwarding turns on IPv4 and IPv6 forwarding inside the namespace, for
// a namespace that routes between two others.
func (n *NS) EnableForwarding(t testing.TB) {
	t.Helper()
	n.Run(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
}

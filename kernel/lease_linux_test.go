package kernel

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/kernel/dhcp4"
	"github.com/sshvpn/sshvpn/relay"
)

// A lease whose subnet holds an address the SSH transport goes to is
// refused: its prefix route on the tap would take the connection into its
// own tunnel.
func TestLeaseUsable(t *testing.T) {
	l := &Local{cfg: LocalConfig{Transport: []netip.Addr{netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("2001:2::1")}}}
	for lease, ok := range map[string]bool{
		"198.18.2.120/24": true,
		"198.18.1.120/24": false, // the SSH server's subnet
		"198.18.0.9/15":   false, // wide enough to hold it
		"198.18.1.2/31":   true,
	} {
		err := l.leaseUsable(&dhcp4.Lease{Addr: netip.MustParsePrefix(lease)})
		if (err == nil) != ok {
			t.Errorf("lease %s: %v, want usable %v", lease, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "198.18.1.1") {
			t.Errorf("lease %s: %v does not name the transport's address", lease, err)
		}
	}
}

// A DHCP lease's name servers are not the gateway's: a reconnect to a
// gateway that names none (a bridged tap) changes nothing; one that names
// some takes over, and when it names none again the lease's come back.
func TestLeaseDNSApartFromGateway(t *testing.T) {
	requireTool(t, "ip")
	// No system bus: the test must not reach a systemd-resolved on the
	// host with this namespace's link indexes.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/sshvpn-test")
	inNewNS(t, func() {
		u, log := testUndo(t)
		l, err := OpenLocal(LocalConfig{Mode: relay.Ethernet, Unit: 6, Log: u.log()}, &relay.TunnelConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		// As startDHCP leaves it, without a client: the lease is handed in.
		l.dhcp, l.awaitingLease = &leaseKeeper{}, true
		defer func() { l.dhcp = nil }()
		leaseDNS := netip.MustParseAddr("198.18.2.53")
		if err := l.applyLease(&dhcp4.Lease{Addr: netip.MustParsePrefix("198.18.2.120/24"), DNS: []netip.Addr{leaseDNS}, Domains: []string{"lan.test"}}); err != nil {
			t.Fatal(err)
		}
		offered := func() int { return strings.Count(log.String(), "the tunnel offers name servers") }
		if offered() != 1 || !strings.Contains(log.String(), "dns=["+leaseDNS.String()+"]") {
			t.Fatalf("the lease's name servers were not set:\n%s", log)
		}

		if err := l.Update(&relay.TunnelConfig{}); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(log.String(), "announces other name servers") {
			t.Errorf("a reconnect to the same gateway, naming no name servers, was taken for a change:\n%s", log)
		}
		gwDNS := netip.MustParseAddr("198.18.3.53")
		if err := l.Update(&relay.TunnelConfig{DNS: []netip.Addr{gwDNS}}); err != nil {
			t.Fatal(err)
		}
		if offered() != 2 || !strings.Contains(log.String(), "dns=["+gwDNS.String()+"]") {
			t.Errorf("the gateway's new name servers were not set:\n%s", log)
		}
		if err := l.Update(&relay.TunnelConfig{}); err != nil {
			t.Fatal(err)
		}
		if offered() != 3 || strings.Count(log.String(), "dns=["+leaseDNS.String()+"]") < 2 {
			t.Errorf("the lease's name servers did not come back when the gateway dropped its own:\n%s", log)
		}
	})
}

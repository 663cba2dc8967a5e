package kernel

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/kernel/dhcp4"
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

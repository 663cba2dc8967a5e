package kernel

import (
	"net"
	"testing"
)

// The link control group addresses a bridged client may not send to, and
// their neighbours, which it may.
func TestLinkControl(t *testing.T) {
	for _, c := range []struct {
		dst  string
		want bool
	}{
		{"01:80:c2:00:00:00", true}, // spanning tree
		{"01:80:c2:00:00:02", true}, // slow protocols: LACP
		{"01:80:c2:00:00:03", true}, // 802.1X
		{"01:80:c2:00:00:0e", true}, // LLDP
		{"01:80:c2:00:00:0f", true},
		{"01:80:c2:00:00:10", false},
		{"01:80:c2:00:00:21", true}, // MVRP
		{"01:80:c2:00:00:2f", true},
		{"01:80:c2:00:00:30", false}, // CFM: no switch acts on it for a port
		{"01:00:0c:cc:cc:cc", true},  // CDP, VTP, DTP
		{"01:00:0c:cc:cc:cd", true},  // PVST+
		{"01:00:0c:cc:cc:ce", false},
		{"01:00:5e:00:00:01", false}, // IPv4 all hosts
		{"33:33:00:00:00:01", false}, // IPv6 all nodes
		{"ff:ff:ff:ff:ff:ff", false},
		{"02:80:c2:00:00:00", false},
	} {
		mac, err := net.ParseMAC(c.dst)
		if err != nil {
			t.Fatal(err)
		}
		if got := linkControl(mac); got != c.want {
			t.Errorf("linkControl(%s) = %v, want %v", c.dst, got, c.want)
		}
	}
}

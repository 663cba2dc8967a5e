package kernel

import (
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// A key's egress rules cannot be enforced on a kernel tunnel: the tunnel
// is refused rather than opened without them.
func TestOpenRefusesKeyRules(t *testing.T) {
	g := &Gateway{}
	_, err := g.Open(t.Context(), relay.TunnelRequest{Mode: relay.PointToPoint, KeySource: "keys:3",
		KeyRules: []relay.KeyRule{{Rule: "198.18.2.0/24"}}})
	if err == nil || !strings.Contains(err.Error(), "keys:3 has SSHVPN_ALLOW or SSHVPN_DENY") {
		t.Fatalf("Open = %v", err)
	}
}

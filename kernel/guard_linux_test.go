package kernel

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// Two tunnels share the gateway's network: each client's address is routed
// to its own device, and neither may use the other's.
func TestSourceGuardRoutesAndRefusesSpoofing(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		nets := []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24")}
		claims := NewClaims()
		var guards [2]*SourceGuard
		var undos [2]*Undo
		for i := range guards {
			tun := open(t, relay.PointToPoint, relay.AnyUnit)
			undos[i] = NewUndo(slog.New(slog.DiscardHandler))
			if err := undos[i].LinkUp(tun.Name()); err != nil {
				t.Fatal(err)
			}
			guards[i] = NewSourceGuard(claims, undos[i], tun.Name(), relay.PointToPoint, nets, slog.New(slog.DiscardHandler))
		}
		if !guards[0].Check(ipv4From("198.18.3.2")) || !guards[1].Check(ipv4From("198.18.3.3")) {
			t.Fatal("first packets refused")
		}
		if guards[1].Check(ipv4From("198.18.3.2")) {
			t.Fatal("tunnel 1 used tunnel 0's address")
		}
		if !guards[0].Check(ipv4From("198.18.3.2")) || !guards[1].Check(ipv4From("203.0.113.9")) {
			t.Fatal("an owned address or one outside the tunnel network was refused")
		}
		if guards[0].Check(ipv4From("198.18.3.1")) == false {
			t.Fatal("the gateway's own address is not a client's to claim, but passes")
		}
		routes := run(t, "ip", "route")
		for _, want := range []string{"198.18.3.2 dev tun0", "198.18.3.3 dev tun1"} {
			if !strings.Contains(routes, want) {
				t.Errorf("routes lack %q:\n%s", want, routes)
			}
		}
		guards[0].Release()
		if err := undos[0].Revert(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(run(t, "ip", "route"), "198.18.3.2 ") {
			t.Error("a released claim's route remained")
		}
		if !guards[1].Check(ipv4From("198.18.3.2")) {
			t.Error("a released address could not be claimed again")
		}
		if guards[0].Check(ipv4From("198.18.3.4")) {
			t.Error("a released guard claimed a new address")
		}
		undos[1].Revert()
	})
}

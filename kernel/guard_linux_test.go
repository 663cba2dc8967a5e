package kernel

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// guardOn opens a tun, sets it up and guards it for key.
func guardOn(t *testing.T, claims *claimTable, key string, allowed ...netip.Prefix) (*sourceGuard, *undoLog, string) {
	t.Helper()
	tun := open(t, relay.PointToPoint, relay.AnyUnit)
	u := newUndo(slog.New(slog.DiscardHandler))
	if err := u.LinkUp(tun.Name()); err != nil {
		t.Fatal(err)
	}
	g := newSourceGuard(claims, u, guardConfig{Dev: tun.Name(), Mode: relay.PointToPoint, Key: key,
		Nets: []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24")}, AllowedIPs: allowed})
	return g, u, tun.Name()
}

// Two tunnels share the gateway's network: each client's address is routed
// to its own device, neither may use the other's, and nobody sends from an
// address outside what it was given, claimed, or allowed.
func TestSourceGuardRoutesAndRefusesSpoofing(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		claims := newClaimTable(2)
		site := netip.MustParsePrefix("198.19.50.0/24")
		g0, u0, dev0 := guardOn(t, claims, "key0")
		g1, u1, dev1 := guardOn(t, claims, "key1", site)
		if !g0.Check(ipv4From("198.18.3.2")) || !g1.Check(ipv4From("198.18.3.3")) {
			t.Fatal("first packets refused")
		}
		if g1.Check(ipv4From("198.18.3.2")) {
			t.Fatal("tunnel 1 used tunnel 0's address")
		}
		if !g0.Check(ipv4From("198.18.3.2")) {
			t.Fatal("an owned address was refused")
		}
		if g0.Check(ipv4From("198.19.0.9")) {
			t.Fatal("a source outside the tunnel network (a LAN host's, say) passed")
		}
		if g0.Check(ipv4From("198.18.3.1")) {
			t.Fatal("a client sent in the gateway's own name")
		}
		if !g1.Check(ipv4From("198.19.50.7")) || g0.Check(ipv4From("198.19.50.7")) {
			t.Fatal("the site network passes for its key, and only for it")
		}
		// Claims per key: key0 holds .2 and may claim one more.
		if !g0.Check(ipv4From("198.18.3.20")) || g0.Check(ipv4From("198.18.3.21")) {
			t.Fatal("the per-key claim limit of 2 does not hold")
		}
		// sshvpn status shows what each tunnel claimed by sending.
		if got := g0.Claimed(); len(got) != 2 || got[0] != netip.MustParseAddr("198.18.3.2") || got[1] != netip.MustParseAddr("198.18.3.20") {
			t.Errorf("tunnel 0 claimed %v, want 198.18.3.2 and 198.18.3.20", got)
		}
		routes := run(t, "ip", "route")
		for _, want := range []string{"198.18.3.2 dev " + dev0, "198.18.3.3 dev " + dev1, "198.18.3.20 dev " + dev0} {
			if !strings.Contains(routes, want) {
				t.Errorf("routes lack %q:\n%s", want, routes)
			}
		}
		g0.Close()
		if err := u0.Revert(); err != nil {
			t.Fatal(err)
		}
		g0.Release()
		if strings.Contains(run(t, "ip", "route"), "198.18.3.2 ") {
			t.Error("a released claim's route remained")
		}
		if g0.Check(ipv4From("198.18.3.4")) {
			t.Error("a released guard claimed a new address")
		}
		if !g1.Check(ipv4From("198.18.3.2")) {
			t.Error("a released address could not be claimed again")
		}
		u1.Revert()
	})
}

// A key's address is stable, and a newer tunnel of the same key takes it
// over from an older one, whose packets from it are then dropped.
func TestSourceGuardStableAddressAndTakeover(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		claims := newClaimTable(0)
		old, uOld, _ := guardOn(t, claims, "SHA256:roaming")
		a, err := old.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		other, uOther, _ := guardOn(t, claims, "SHA256:someone-else")
		b, err := other.Reserve()
		if err != nil || b[0] == a[0] {
			t.Fatalf("another key got %v, %v; want an address other than %v", b, err, a)
		}
		again, uNew, devNew := guardOn(t, claims, "SHA256:roaming")
		c, err := again.Reserve()
		if err != nil || c[0] != a[0] {
			t.Fatalf("the same key reconnecting got %v, %v; want its address %v", c, err, a)
		}
		src := ipv4From(a[0].Addr().String())
		if old.Check(src) {
			t.Error("the older tunnel still sends from the address taken over")
		}
		if !again.Check(src) {
			t.Error("the newer tunnel cannot send from its address")
		}
		if got := again.Claimed(); len(got) != 0 {
			t.Errorf("a reserved address counts as claimed: %v", got)
		}
		if r := run(t, "ip", "route", "get", a[0].Addr().String()); !strings.Contains(r, "dev "+devNew) {
			t.Errorf("the address is not routed to the newer tunnel: %s", r)
		}
		old.Close()
		uOld.Revert() // must not take the newer tunnel's route with it
		old.Release()
		if r := run(t, "ip", "route", "get", a[0].Addr().String()); !strings.Contains(r, "dev "+devNew) {
			t.Errorf("the older tunnel's teardown removed the newer one's route: %s", r)
		}
		for _, u := range []*undoLog{uOther, uNew} {
			u.Revert()
		}
	})
}

// A client that picked its own address and reconnects before its old
// tunnel is reaped keeps it: the same key takes the claim over; another key
// still cannot.
func TestSourceGuardClaimTakeover(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		claims := newClaimTable(0)
		old, uOld, _ := guardOn(t, claims, "SHA256:same")
		if !old.Check(ipv4From("198.18.3.2")) {
			t.Fatal("first claim refused")
		}
		other, uOther, _ := guardOn(t, claims, "SHA256:other")
		if other.Check(ipv4From("198.18.3.2")) {
			t.Fatal("another key took a claimed address")
		}
		again, uNew, devNew := guardOn(t, claims, "SHA256:same")
		if !again.Check(ipv4From("198.18.3.2")) {
			t.Fatal("the same key reconnecting could not take its address over")
		}
		if old.Check(ipv4From("198.18.3.2")) {
			t.Error("the older tunnel still sends from the address taken over")
		}
		if r := run(t, "ip", "route", "get", "198.18.3.2"); !strings.Contains(r, "dev "+devNew) {
			t.Errorf("the address is not routed to the newer tunnel: %s", r)
		}
		old.Close()
		uOld.Revert()
		old.Release()
		if !again.Check(ipv4From("198.18.3.2")) || other.Check(ipv4From("198.18.3.2")) {
			t.Error("the older tunnel's teardown freed the address taken over")
		}
		uOther.Revert()
		uNew.Revert()
	})
}

// When the newer tunnel of a key goes, the older one still sending from
// the address gets it back, routed to it again: a second client of the
// same key that failed must not leave the first one's tunnel dead.
func TestSourceGuardReclaimsWhenTheNewerGoes(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		claims := newClaimTable(0)
		old, uOld, devOld := guardOn(t, claims, "SHA256:same")
		if !old.Check(ipv4From("198.18.3.2")) {
			t.Fatal("first claim refused")
		}
		newer, uNew, _ := guardOn(t, claims, "SHA256:same")
		if !newer.Check(ipv4From("198.18.3.2")) || old.Check(ipv4From("198.18.3.2")) {
			t.Fatal("no takeover")
		}
		newer.Close()
		uNew.Revert()
		newer.Release()
		if !old.Check(ipv4From("198.18.3.2")) {
			t.Fatal("the older tunnel did not get its address back once the newer one was gone")
		}
		if r := run(t, "ip", "route", "get", "198.18.3.2"); !strings.Contains(r, "dev "+devOld) {
			t.Errorf("the address is not routed to the older tunnel again: %s", r)
		}
		other, uOther, _ := guardOn(t, claims, "SHA256:other")
		if other.Check(ipv4From("198.18.3.2")) {
			t.Error("another key took the reclaimed address")
		}
		uOther.Revert()
		uOld.Revert()
	})
}

// The check of a packet from an address the tunnel holds allocates nothing.
func TestSourceGuardCheckAllocs(t *testing.T) {
	c := &claim{addr: netip.MustParseAddr("198.18.3.2")}
	g := newSourceGuard(newClaimTable(0), newUndo(nil), guardConfig{Dev: "tun0", Mode: relay.PointToPoint,
		Nets: []netip.Prefix{netip.MustParsePrefix("198.18.3.1/24")}, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.19.50.0/24")}})
	g.mine = []*claim{c}
	own, site := ipv4From("198.18.3.2"), ipv4From("198.19.50.7")
	if n := testing.AllocsPerRun(1000, func() { g.Check(own); g.Check(site) }); n != 0 {
		t.Fatalf("%v allocations per check, want 0", n)
	}
}

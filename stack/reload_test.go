package stack

import (
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sshvpn/sshvpn/stack/egress"
)

// A deny put in force by SetRules refuses the next flow of a tunnel that
// was open before it, while a flow established before it goes on.
func TestSetRulesAppliesToOpenTunnels(t *testing.T) {
	dst := tcpListener(t, "tcp4", "127.0.0.1:0")
	dst = netip.AddrPortFrom(gw4, dst.Port())
	g := newGateway(t, "127.0.0.1/tcp")
	tun := open(t, g, "SHA256:reload")
	p := newPeer(t, tun)
	before, err := p.dialTCP(t, dst)
	if err != nil {
		t.Fatalf("allowed before the reload: %v", err)
	}
	deny, err := egress.ParseRule("127.0.0.1/tcp", false)
	if err != nil {
		t.Fatal(err)
	}
	g.SetRules([]egress.Rule{deny})
	if c, err := p.dialTCP(t, dst); err == nil {
		c.Close()
		t.Fatal("a new flow after a deny was put in force connected")
	}
	if n := tun.(*tunnel).Stats().TCPDenied.Load(); n != 1 {
		t.Errorf("TCPDenied = %d, want 1", n)
	}
	// The flow opened before the deny still carries data both ways.
	if _, err := before.Write([]byte("still here")); err != nil {
		t.Fatalf("the established flow after the reload: %v", err)
	}
	before.CloseWrite()
	got, err := io.ReadAll(before)
	if err != nil || len(got) == 0 {
		t.Errorf("the established flow's answer: %q, %v", got, err)
	}
	// A tunnel opened after the reload is denied too.
	p2 := newPeer(t, open(t, g, "SHA256:reload2"))
	if c, err := p2.dialTCP(t, dst); err == nil {
		c.Close()
		t.Fatal("a new tunnel's flow after the deny connected")
	}
}

// SetDNS changes what tunnels opened next are told; one open before
// goes on saying what it was told.
func TestSetDNSAppliesToNewTunnels(t *testing.T) {
	g := newGateway(t)
	old := open(t, g, "SHA256:dns1")
	before := old.Config()
	ns := netip.MustParseAddr("198.18.0.53")
	if err := g.SetDNS([]netip.Addr{ns}, []string{"corp.example"}, true); err != nil {
		t.Fatal(err)
	}
	cfg := open(t, g, "SHA256:dns2").Config()
	if len(cfg.DNS) != 1 || cfg.DNS[0] != ns || len(cfg.Domains) != 1 || cfg.Domains[0] != "corp.example" {
		t.Errorf("a new tunnel is told DNS %v %v, want [%s] [corp.example]", cfg.DNS, cfg.Domains, ns)
	}
	if after := old.Config(); !slices.Equal(after.DNS, before.DNS) || !slices.Equal(after.Domains, before.Domains) ||
		strings.Contains(old.Status(), ns.String()) {
		t.Errorf("a tunnel opened before the change now says DNS %v %v (was %v %v), status:\n%s", after.DNS, after.Domains, before.DNS, before.Domains, old.Status())
	}
}

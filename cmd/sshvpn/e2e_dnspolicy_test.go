//go:build integration

package main

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The rootless gateway judges DNS by each key's egress rules, as it judges
// every other destination: the destination is its DNS address and port 53,
// over UDP or TCP, as the client addressed it. A key whose authorized_keys
// line says environment="SSHVPN_DENY=any" gets REFUSED from the gateway's
// DNS over UDP and TCP, and the LAN's DNS server is asked nothing for it,
// through the gateway or directly; another key in the same run resolves.
// A gateway run with --deny of its DNS address refuses every key.
func TestRootlessDNSDeniedKey(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	lanDNSAddr := netip.AddrPortFrom(lanHost.Addr(), 53)

	t.Run("SSHVPN_DENY=any", func(t *testing.T) {
		tp := newTopo(t)
		lan := startLANDNS(t, tp, 60)
		privD, pubD := tp.key(t, o, "denied")
		privA, pubA := tp.key(t, o, "allowed")
		tp.startRootless(t, `environment="SSHVPN_DENY=any" `+pubD+"\n"+pubA+"\n")
		addrs := rootlessClients(t, tp, o, privD, privA)
		denied, allowed := addrs[0], addrs[1]
		for _, network := range []string{"udp", "tcp"} {
			name := "denied-" + network + ".lan.test."
			r, err := askDNS(t, tp.client, denied, gatewayDNS, network, name, dns.TypeA)
			if err != nil || r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
				t.Errorf("the denied key's %s over %s through the gateway's DNS: %v %v; want REFUSED and no records", name, network, r, err)
			}
			direct := "denied-direct-" + network + ".lan.test."
			if r, err := askDNS(t, tp.client, denied, lanDNSAddr, network, direct, dns.TypeA); err == nil {
				t.Errorf("the denied key asked the LAN's DNS directly over %s and got %v", network, r)
			}
			checkResolves(t, tp, allowed, "allowed-"+network+".lan.test.")
		}
		if n := lan.countSuffix("denied-udp.lan.test.") + lan.countSuffix("denied-tcp.lan.test."); n != 0 {
			t.Errorf("the LAN's DNS server was asked %d times for the denied key's names", n)
		}
	})

	t.Run("--deny", func(t *testing.T) {
		tp := newTopo(t)
		lan := startLANDNS(t, tp, 60)
		priv, pub := tp.key(t, o, "client")
		tp.startRootless(t, pub+"\n", "--deny", gatewayDNS.String())
		src := rootlessClients(t, tp, o, priv)[0]
		for _, network := range []string{"udp", "tcp"} {
			name := "refused-" + network + ".lan.test."
			r, err := askDNS(t, tp.client, src, gatewayDNS, network, name, dns.TypeA)
			if err != nil || r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
				t.Errorf("%s over %s through a gateway that denies its DNS address: %v %v; want REFUSED", name, network, r, err)
			}
			if n := lan.count(name); n != 0 {
				t.Errorf("the LAN's DNS server was asked %d times for %s", n, name)
			}
		}
		// The rest of the LAN is not denied: the key reaches its DNS
		// server directly.
		if r, err := askDNS(t, tp.client, src, lanDNSAddr, "udp", "direct.lan.test.", dns.TypeA); err != nil || len(r.Answer) != 1 {
			t.Errorf("the LAN's DNS directly, past a gateway that denies only its own DNS address: %v %v", r, err)
		}
	})
}

package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/sshvpn/sshvpn/relay"
)

// The gateway's name servers go where the host resolves names. A per-link
// resolver (systemd-resolved) takes them for the tunnel's link alone and
// forgets them when sshvpn reverts the link or the link goes; without one,
// only --dns-global lets sshvpn rewrite /etc/resolv.conf for the tunnel's
// life, because that file is the whole host's and often another program's.

// resolvConfPath is the one file sshvpn may rewrite, and so the only one a
// journal replay restores.
const resolvConfPath = "/etc/resolv.conf"

// maxResolvConfNS is how many nameserver lines glibc and musl read
// (MAXNS); later ones are ignored.
const maxResolvConfNS = 3

// errNoLinkResolver says the host has no per-link resolver to ask.
var errNoLinkResolver = errors.New("no per-link resolver")

// dnsPlan is what the client puts in its resolver for one tunnel.
type dnsPlan struct {
	Servers []netip.Addr
	Domains []string // the gateway's domains: lookups under them go to Servers
	// Default: a full tunnel, so every lookup goes through it too, as
	// every packet does; otherwise only those under Domains.
	Default bool
}

// planDNS is the plan for the gateway's config and the routes the client
// puts through the tunnel.
func planDNS(gw *relay.TunnelConfig, routes []netip.Prefix) dnsPlan {
	if gw == nil {
		return dnsPlan{}
	}
	return dnsPlan{Servers: gw.DNS, Domains: gw.Domains, Default: fullTunnel(routes)}
}

// fullTunnel reports whether routes send all traffic, or what stands for
// it (defaultLike), through the tunnel.
func fullTunnel(routes []netip.Prefix) bool {
	return slices.ContainsFunc(routes, func(r netip.Prefix) bool { return defaultLike(r.Masked()) })
}

// linkAddr is one entry of systemd-resolved's SetLinkDNS argument, a(iay):
// a Linux address family and the address's bytes.
type linkAddr struct {
	Family  int32
	Address []byte
}

// Linux's address families, as resolved wants them whatever GOOS builds.
const (
	afInet  = 2
	afInet6 = 10
)

// linkServers is SetLinkDNS's argument.
func (p dnsPlan) linkServers() []linkAddr {
	out := make([]linkAddr, 0, len(p.Servers))
	for _, a := range p.Servers {
		a = a.WithZone("") // the link is the zone
		if a.Is4In6() {
			a = a.Unmap()
		}
		fam := int32(afInet6)
		if a.Is4() {
			fam = afInet
		}
		out = append(out, linkAddr{fam, a.AsSlice()})
	}
	return out
}

// linkDomain is one entry of SetLinkDomains's argument, a(sb).
type linkDomain struct {
	Domain      string
	RoutingOnly bool
}

// linkDomains is SetLinkDomains's argument. Every domain is routing-only
// ("~corp.example"): lookups under it go to the tunnel's servers, and
// single-label names are not searched in it, which would change what
// "host" means on the client. A full tunnel adds "~.", which makes the
// link the one for every name no other link claims more specifically.
func (p dnsPlan) linkDomains() []linkDomain {
	out := []linkDomain{}
	if p.Default {
		out = append(out, linkDomain{".", true})
	}
	for _, d := range p.Domains {
		out = append(out, linkDomain{d, true})
	}
	return out
}

// scope says in words which lookups the plan sends through the tunnel.
func (p dnsPlan) scope() string {
	switch {
	case p.Default:
		return "every name (the tunnel carries the default route)"
	case len(p.Domains) > 0:
		return "names under " + strings.Join(p.Domains, ", ")
	}
	return "none"
}

// renderResolvConf is /etc/resolv.conf for the plan, which it holds while
// the tunnel on dev is up. resolv.conf routes nothing by domain, so every
// lookup goes to the tunnel's servers, and its domains are searched. It
// returns the servers past glibc's three, which the file leaves out.
func renderResolvConf(dev string, p dnsPlan) (content []byte, dropped []netip.Addr) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by sshvpn (--dns-global) for the tunnel on %s: the file it replaced\n", dev)
	b.WriteString("# comes back when the tunnel ends, or with sshvpn cleanup.\n")
	servers := p.Servers
	if len(servers) > maxResolvConfNS {
		servers, dropped = servers[:maxResolvConfNS], slices.Clone(servers[maxResolvConfNS:])
	}
	for _, a := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", a.WithZone(""))
	}
	if len(p.Domains) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(p.Domains, " "))
	}
	return []byte(b.String()), dropped
}

// dnsString describes an opDNS change.
func (c change) dnsString() string {
	if c.Path != "" {
		return fmt.Sprintf("name servers for %s in %s", c.Dev, c.Path)
	}
	return "name servers of link " + c.Dev + " in systemd-resolved"
}

// setDNS hands the gateway's name servers to the host's resolver for the
// tunnel's life: to systemd-resolved for this link when it runs; else, with
// --dns-global, in /etc/resolv.conf; else nowhere, with one warning.
func (l *Local) setDNS(gw *relay.TunnelConfig, routes []netip.Prefix) error {
	p := planDNS(gw, routes)
	if len(p.Servers) == 0 {
		return nil
	}
	log := l.cfg.Log.With("device", l.Name(), "dns", p.Servers)
	err := l.undo.setLinkDNS(l.Name(), p)
	if err == nil {
		log.Info("name servers set for the tunnel in systemd-resolved", "lookups", p.scope())
		if p.scope() == "none" {
			log.Info("the gateway names no DNS domains and the tunnel is not the default route: systemd-resolved knows the servers " +
				"but sends them no lookups (only `resolvectl query -i " + l.Name() + "`); use --route default for every name, " +
				"or ask the gateway for --dns-domain")
		}
		return nil
	}
	if !errors.Is(err, errNoLinkResolver) {
		return err
	}
	if !l.cfg.DNSGlobal {
		log.Warn("the tunnel offers name servers (the gateway's, or a DHCP lease's), but this host has no per-link resolver: /etc/resolv.conf is left alone "+
			"and the tunnel's servers are not used; run systemd-resolved, or pass --dns-global to write them to /etc/resolv.conf "+
			"while the tunnel is up", "why", err)
		return nil
	}
	content, dropped := renderResolvConf(l.Name(), p)
	if len(dropped) > 0 {
		log.Warn("resolv.conf takes three name servers; the rest are left out", "left_out", dropped)
	}
	if err := l.undo.writeResolvConf(l.Name(), content); err != nil {
		return err
	}
	log.Info("name servers written to " + resolvConfPath + " (--dns-global): every lookup goes through the tunnel until it ends")
	return nil
}

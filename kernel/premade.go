package kernel

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/sshvpn/sshvpn/relay"
)

// A client without CAP_NET_ADMIN can still do what `ssh -w 7:any` does for
// a user root prepared once with `ip tuntap add tun7 mode tun user alice`:
// attach that persistent device (the kernel lets its owner) and carry
// packets. It cannot change the device, so it changes nothing: it reports
// what the device lacks and the command root would run for each piece.

// PremadeDevice is the tun or tap root made for this user that a client
// without CAP_NET_ADMIN attaches (LocalConfig.Premade).
type PremadeDevice struct {
	Name   string // tun7
	Unit   uint32 // 7
	Picked bool   // chosen for -w any, as the only free device of the caller's
}

// PremadeError is a -w unit a client without CAP_NET_ADMIN cannot use, and
// how root would prepare one once for the user.
type PremadeError struct {
	Spec   string // the local -w unit as given: "7", "any"
	Why    string // tun7 does not exist; tun7 belongs to uid 1000
	Name   string // the device root would make: tun7
	Mode   relay.Mode
	User   string   // the caller's user name, for `ip tuntap add … user`
	Others []string // devices root made for this user that could serve
}

func (e *PremadeError) Error() string {
	kind := "tun"
	if e.Mode == relay.Ethernet {
		kind = "tap"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "-w %s: %s; without CAP_NET_ADMIN sshvpn attaches only a persistent %s device that root made for you, as ssh -w does", e.Spec, e.Why, kind)
	if len(e.Others) > 0 {
		fmt.Fprintf(&b, "; yours: %s (name one with -w N:any)", strings.Join(e.Others, ", "))
	}
	unit := strings.TrimPrefix(e.Name, kind)
	fmt.Fprintf(&b, "; or root runs once: ip tuntap add %s mode %s user %s && ip link set %s up, then connect with -w %s:any "+
		"(sshvpn then names the addresses and routes the tunnel needs)", e.Name, kind, e.User, e.Name, unit)
	return b.String()
}

// tuntapInfo is one tun or tap device as the kernel lists it.
type tuntapInfo struct {
	name       string
	mode       relay.Mode
	persistent bool
	attached   bool // a process holds it (its queue count is not zero)
	// owner and group are 0 when unset: the kernel does not report an
	// unset owner, and netlink reads the missing attribute as 0, the same
	// as root. So a device of root's or nobody's is not one "of the
	// caller's" for -w any; named with -w N, the kernel decides.
	owner, group uint32
}

// identity is who asks: the effective uid and every group of the process.
type identity struct {
	uid    uint32
	groups []uint32 // effective gid and supplementary groups
	user   string   // name of uid, for the advice
}

// ownedBy reports whether d was made for me: its owner is my uid, or its
// group is one of mine.
func (d tuntapInfo) ownedBy(me identity) bool {
	return (d.owner != 0 && d.owner == me.uid) || (d.group != 0 && slices.Contains(me.groups, d.group))
}

// refuses reports whether the kernel would refuse me d, as tun_not_capable
// does: an owner that is not me, or a group I am not in.
func (d tuntapInfo) refuses(me identity) bool {
	return (d.owner != 0 && d.owner != me.uid) || (d.group != 0 && !slices.Contains(me.groups, d.group))
}

func kindPrefix(mode relay.Mode) string {
	if mode == relay.Ethernet {
		return "tap"
	}
	return "tun"
}

// choosePremade decides which device a client without CAP_NET_ADMIN
// attaches for the local unit of -w: the named one if it is a persistent
// device of the mode that the kernel gives me, or for any the one free
// device root made for me. It names the device, and the kernel still has
// the last word when it is attached.
func choosePremade(mode relay.Mode, unit uint32, devs []tuntapInfo, me identity) (PremadeDevice, error) {
	prefix := kindPrefix(mode)
	var mine, free []string
	for _, d := range devs {
		if d.mode == mode && d.persistent && d.ownedBy(me) {
			mine = append(mine, d.name)
			if !d.attached {
				free = append(free, d.name)
			}
		}
	}
	fail := func(name, why string) error {
		return &PremadeError{Spec: unitSpec(unit), Why: why, Name: name, Mode: mode, User: me.user, Others: slices.DeleteFunc(slices.Clone(free), func(n string) bool { return n == name })}
	}
	if unit == relay.AnyUnit {
		switch len(free) {
		case 1:
			var u uint32
			fmt.Sscanf(strings.TrimPrefix(free[0], prefix), "%d", &u)
			return PremadeDevice{Name: free[0], Unit: u, Picked: true}, nil
		case 0:
			why := fmt.Sprintf("no persistent %s device of %s's is free", prefix, me.user)
			if len(mine) > 0 {
				why += fmt.Sprintf(" (%s in use)", strings.Join(mine, ", "))
			}
			return PremadeDevice{}, fail(freeName(prefix, devs), why)
		}
		return PremadeDevice{}, fmt.Errorf("-w any: several persistent %s devices are yours and free (%s): name one with -w N:any", prefix, strings.Join(free, ", "))
	}
	name := fmt.Sprintf("%s%d", prefix, unit)
	i := slices.IndexFunc(devs, func(d tuntapInfo) bool { return d.name == name })
	if i < 0 {
		return PremadeDevice{}, fail(name, name+" does not exist")
	}
	d := devs[i]
	switch {
	case d.mode != mode:
		return PremadeDevice{}, fail(name, fmt.Sprintf("%s is a %s device, not a %s", name, kindPrefix(d.mode), prefix))
	case !d.persistent:
		return PremadeDevice{}, fail(name, name+" is not persistent: another program made it for as long as it runs")
	case d.refuses(me):
		return PremadeDevice{}, fail(name, name+" belongs to "+ownerText(d))
	case d.attached:
		return PremadeDevice{}, fmt.Errorf("-w %d: %s is in use: another process (an ssh -w, another sshvpn) holds it", unit, name)
	}
	return PremadeDevice{Name: name, Unit: unit}, nil
}

func unitSpec(unit uint32) string {
	if unit == relay.AnyUnit {
		return "any"
	}
	return fmt.Sprint(unit)
}

// ownerText names who a device is for: "uid 1000", "group 27".
func ownerText(d tuntapInfo) string {
	var s []string
	if d.owner != 0 {
		s = append(s, fmt.Sprintf("uid %d", d.owner))
	}
	if d.group != 0 {
		s = append(s, fmt.Sprintf("group %d", d.group))
	}
	return strings.Join(s, " and ")
}

// freeName is the first tunN (or tapN) name no device has, for the advice.
func freeName(prefix string, devs []tuntapInfo) string {
	for u := 0; ; u++ {
		name := fmt.Sprintf("%s%d", prefix, u)
		if !slices.ContainsFunc(devs, func(d tuntapInfo) bool { return d.name == name }) {
			return name
		}
	}
}

// deviceState is a device as the kernel has it: what root configured.
type deviceState struct {
	up     bool
	mtu    int
	addrs  []netip.Prefix // with their peers' stripped: the local address and its length
	routes []netip.Prefix // main-table destinations through the device
}

// premadeWant is what the flags and the gateway ask of the device.
type premadeWant struct {
	mtu     int
	addrs   []netip.Prefix
	peer    netip.Addr
	routes  []netip.Prefix
	hops    nextHops
	dns     []netip.Addr
	domains []string
}

// premadeGaps lists, for a device sshvpn may not change, each piece of
// want the device lacks as a line that says what is missing and the
// command root runs for it. The first line, if any, is the link being down.
func premadeGaps(dev string, mode relay.Mode, have deviceState, want premadeWant) []string {
	var gaps []string
	if !have.up {
		gaps = append(gaps, fmt.Sprintf("%s is down: packets will not flow until root runs: ip link set %s up", dev, dev))
	}
	missing := func(cmd string) { gaps = append(gaps, fmt.Sprintf("missing on %s: root runs: %s", dev, cmd)) }
	if want.mtu != 0 && want.mtu != have.mtu {
		missing(fmt.Sprintf("ip link set %s mtu %d", dev, want.mtu))
	}
	var onDev []netip.Prefix
	for _, a := range want.addrs {
		toPeer := want.peer.IsValid() && a.Addr().Is4() == want.peer.Is4()
		if toPeer {
			a = netip.PrefixFrom(a.Addr(), a.Addr().BitLen())
		}
		onDev = append(onDev, a)
		if slices.Contains(have.addrs, a) {
			continue
		}
		if toPeer {
			missing(fmt.Sprintf("ip addr add %s peer %s dev %s", a, want.peer, dev))
		} else {
			missing(fmt.Sprintf("ip addr add %s dev %s", a, dev))
		}
	}
	for i, r := range want.routes {
		r = r.Masked()
		if slices.ContainsFunc(want.routes[:i], func(o netip.Prefix) bool { return o.Masked() == r }) || slices.Contains(have.routes, r) {
			continue
		}
		if cmd, ok := routeCommand(dev, mode, r, onDev, want.hops); ok {
			missing(cmd)
		}
	}
	if len(want.dns) > 0 {
		gaps = append(gaps, fmt.Sprintf("not applied on %s, the gateway's name servers: root runs: %s", dev, dnsCommand(dev, want.dns, want.domains)))
	}
	return gaps
}

// routeCommand is the ip route command that carries r through dev, or
// false when the kernel's prefix route for an address on the link does.
func routeCommand(dev string, mode relay.Mode, r netip.Prefix, onDev []netip.Prefix, hops nextHops) (string, bool) {
	if slices.ContainsFunc(onDev, func(a netip.Prefix) bool { return a.Masked() == r }) {
		return "", false // the address brings its prefix route
	}
	p, ok := planRoute(mode, r, onDev, hops)
	switch {
	case !ok:
		return fmt.Sprintf("ip route add %s via <a router on the link> dev %s", r, dev), true
	case p.Via.IsValid():
		return fmt.Sprintf("ip route add %s via %s dev %s", r, p.Via, dev), true
	}
	cmd := fmt.Sprintf("ip route add %s dev %s", r, dev)
	if defaultLike(r) {
		cmd += " (a full tunnel: first route the SSH server outside it, or it carries its own connection)"
	}
	return cmd, true
}

func dnsCommand(dev string, servers []netip.Addr, domains []string) string {
	s := make([]string, len(servers))
	for i, a := range servers {
		s[i] = a.String()
	}
	cmd := "resolvectl dns " + dev + " " + strings.Join(s, " ")
	if len(domains) > 0 {
		d := make([]string, len(domains))
		for i, x := range domains {
			d[i] = "~" + strings.TrimPrefix(x, "~")
		}
		cmd += " && resolvectl domain " + dev + " " + strings.Join(d, " ")
	}
	return cmd
}

// premadeWanted is what the flags, then the gateway, ask of the device.
func (l *Local) premadeWanted(gw *relay.TunnelConfig) premadeWant {
	w := premadeWant{mtu: l.cfg.MTU, addrs: l.cfg.Addrs, peer: l.cfg.Peer, routes: slices.Clone(l.cfg.Routes), hops: l.nextHops(gw)}
	if gw == nil {
		return w
	}
	if w.mtu == 0 {
		w.mtu = gw.MTU
	}
	if len(w.addrs) == 0 {
		w.addrs = gw.Addresses
	}
	w.routes = append(w.routes, gw.Routes...)
	w.dns, w.domains = gw.DNS, gw.Domains
	return w
}

// reportPremade says what the device lacks of what gw and the flags want,
// each gap once: on a reconnect only what changed.
func (l *Local) reportPremade(gw *relay.TunnelConfig) error {
	have, err := readLinkState(l.Name())
	if err != nil {
		return err
	}
	gaps := premadeGaps(l.Name(), l.cfg.Mode, have, l.premadeWanted(gw))
	log := l.cfg.Log.With("device", l.Name())
	if l.gaps == nil {
		log.Info("attached the device root prepared; sshvpn changes nothing on it",
			"up", have.up, "mtu", have.mtu, "addresses", have.addrs, "routes", have.routes)
	}
	for _, g := range gaps {
		if !slices.Contains(l.gaps, g) {
			log.Warn(g)
		}
	}
	for _, g := range l.gaps {
		if !slices.Contains(gaps, g) {
			log.Info("no longer missing: " + g)
		}
	}
	l.gaps = append(gaps[:0:0], gaps...)
	if l.gaps == nil {
		l.gaps = []string{} // reported
	}
	return nil
}

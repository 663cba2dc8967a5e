//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A full tunnel is policy routing, as wg-quick does it: the default-like
// routes go into a table of sshvpn's own, and two rules per family send
// every packet there except those of sockets that carry sshvpn's mark,
// the SSH transport's:
//
//	priority P   lookup main suppress_prefixlength 0   (the main table, but not its default route)
//	priority P+1 not fwmark M lookup T                 (everything unmarked: the tunnel)
//
// A marked socket falls through to the main table's rule and takes the
// path it took before the tunnel. Unlike a host route to the server via the
// old next hop, this needs no per-dial state: a server whose address
// changes, a next hop that roams, a name resolved again, a ProxyJump's first
// hop, all keep working, because the rules ask only "is it the transport".

// bypassTableBase is the first table sshvpn tries; the mark is the table's
// number, as wg-quick uses its port for both.
const bypassTableBase = 0x5356 // "SV"

// bypassTables is how many tables past the base NewBypass tries.
const bypassTables = 64

// bypassPriority is the priority of the first rule sshvpn tries, below
// wg-quick's (32764 and 32765, what the kernel picks for rules without
// one) and above the main table's 32766: a wg-quick tunnel, added later
// or earlier, keeps its own pair intact.
const bypassPriority = 32760

// NewBypass picks a routing table and mark that no rule and no route uses
// yet. Call it before the first dial: the transport's sockets must carry
// the mark from the start, since the tunnel's routes come once that first
// connection is up and it must keep working.
func NewBypass() (Bypass, error) {
	used := map[int]bool{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := netlink.RuleList(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return Bypass{}, fmt.Errorf("full tunnel: list routing rules: %w", err)
		}
		for _, r := range rules {
			used[r.Table], used[int(r.Mark)] = true, true
		}
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return Bypass{}, fmt.Errorf("full tunnel: list routes: %w", err)
		}
		for _, r := range routes {
			used[r.Table] = true
		}
	}
	for t := bypassTableBase; t < bypassTableBase+bypassTables; t++ {
		if !used[t] {
			return Bypass{Table: t, Mark: uint32(t)}, nil
		}
	}
	return Bypass{}, fmt.Errorf("full tunnel: routing tables %d to %d are all in use", bypassTableBase, bypassTableBase+bypassTables-1)
}

// Control sets the mark on a socket before it connects, the shape of
// net.Dialer.Control. SO_MARK needs CAP_NET_ADMIN, which the kernel client
// has anyway.
func (b Bypass) Control(network, address string, c syscall.RawConn) error {
	if b.Mark == 0 {
		return nil
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(b.Mark))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("mark the %s socket for %s with %#x (keeps it out of a full tunnel): %w", network, address, b.Mark, err)
	}
	return nil
}

// fullTunnel routes the default-like routes through the device in the
// bypass table and adds the rules, per family, routes first: a rule never
// points at a table without them.
func (l *Local) fullTunnel(routes []routePlan) error {
	b := l.cfg.Bypass
	if b.Table == 0 {
		return fmt.Errorf("route %s through the tunnel: a full tunnel needs a routing table and mark of its own, and none was found at start", routes[0].Dst)
	}
	for _, v6 := range []bool{false, true} {
		var fam []netip.Prefix
		for _, r := range routes {
			if r.Dst.Addr().Is6() == v6 {
				fam = append(fam, r.Dst)
				if err := l.undo.AddTableRoute(r.Dst, r.Via, l.Name(), b.Table); err != nil {
					return err
				}
			}
		}
		if len(fam) == 0 {
			continue
		}
		prio, err := freePriorities(v6)
		if err != nil {
			return err
		}
		if err := l.undo.addRule(rule{V6: v6, Priority: prio, Table: unix.RT_TABLE_MAIN, Suppress: 1 /* suppress_prefixlength 0 */}); err != nil {
			return err
		}
		if err := l.undo.addRule(rule{V6: v6, Priority: prio + 1, Table: b.Table, Mark: b.Mark, Invert: true}); err != nil {
			return err
		}
		l.cfg.Log.Info("full tunnel: all traffic but the SSH connection's goes through the tunnel",
			"device", l.Name(), "routes", fam, "table", b.Table, "mark", fmt.Sprintf("%#x", b.Mark), "priorities", fmt.Sprintf("%d,%d", prio, prio+1))
	}
	if slices.ContainsFunc(routes, func(r routePlan) bool { return r.Dst.Addr().Is4() }) && strictReversePath() {
		return l.markReplies()
	}
	return nil
}

// freePriorities returns the first P, counting down from bypassPriority,
// such that no rule of the family has priority P or P+1.
func freePriorities(v6 bool) (int, error) {
	fam := netlink.FAMILY_V4
	if v6 {
		fam = netlink.FAMILY_V6
	}
	rules, err := netlink.RuleList(fam)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return 0, fmt.Errorf("full tunnel: list routing rules: %w", err)
	}
	used := map[int]bool{}
	for _, r := range rules {
		used[r.Priority] = true
	}
	for p := bypassPriority; p > 1000; p -= 2 {
		if !used[p] && !used[p+1] {
			return p, nil
		}
	}
	return 0, errors.New("full tunnel: no two free rule priorities below 32760")
}

// strictReversePath reports whether strict reverse path filtering
// (rp_filter=1) is on anywhere: for "all", for new interfaces ("default")
// or for one interface. The effective value is the larger of "all" and the
// interface's, and the transport may leave by any interface, now or after
// roaming. IPv6 has no such filter in the kernel.
func strictReversePath() bool {
	paths, _ := filepath.Glob("/proc/sys/net/ipv4/conf/*/rp_filter")
	for _, p := range paths {
		if v, _ := os.ReadFile(p); strings.TrimSpace(string(v)) == "1" {
			return true
		}
	}
	return false
}

// markReplies makes strict reverse path filtering check the SSH server's
// replies with the transport's mark, as wg-quick does: without it, the
// kernel checks a reply's source against the routes an unmarked packet
// takes, finds the tunnel, and drops the reply. Conntrack carries the mark
// from the transport's packets to their replies, and src_valid_mark makes
// the check use it:
//
//	table ip sshvpn-bypass-T {
//		chain postmangle { type filter hook postrouting priority mangle; meta mark M ct mark set meta mark }
//		chain premangle { type filter hook prerouting priority mangle; ct mark M meta mark set ct mark }
//	}
func (l *Local) markReplies() error {
	if err := l.undo.SetSysctl("net.ipv4.conf.all.src_valid_mark", "1"); err != nil {
		return err
	}
	if err := l.undo.addMarkTable(l.cfg.Bypass); err != nil {
		return err
	}
	l.cfg.Log.Info("full tunnel: strict reverse path filtering is on; the SSH server's replies carry the transport's mark through conntrack",
		"nftables", "ip "+bypassNFTable(l.cfg.Bypass))
	return nil
}

func bypassNFTable(b Bypass) string { return fmt.Sprintf("sshvpn-bypass-%d", b.Table) }

// addMarkTable adds markReplies' nftables table. Revert deletes it.
func (u *undoLog) addMarkTable(b Bypass) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := change{Op: opNFTable, Family: natIPv4.name, Tag: bypassNFTable(b)}
	return u.apply(c, func() error {
		conn, err := nftables.New()
		if err != nil {
			return nftError("add "+c.String(), err)
		}
		table := conn.AddTable(&nftables.Table{Name: c.Tag, Family: nftables.TableFamilyIPv4})
		mark := binaryutil.NativeEndian.PutUint32(b.Mark)
		post := conn.AddChain(&nftables.Chain{Name: "postmangle", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityMangle})
		conn.AddRule(&nftables.Rule{Table: table, Chain: post, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mark},
			&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
		}})
		pre := conn.AddChain(&nftables.Chain{Name: "premangle", Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
		conn.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: []expr.Any{
			&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mark},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
		}})
		return nftError("add "+c.String(), conn.Flush())
	})
}

// deleteNFTable deletes an nftables table sshvpn made whole; one that is
// gone is fine.
func deleteNFTable(family, name string) error {
	fam, ok := tableFamily(family)
	if !ok {
		return fmt.Errorf("delete nftables table %s %s: unknown family", family, name)
	}
	conn, err := nftables.New()
	if err != nil {
		return nftError("delete nftables table "+family+" "+name, err)
	}
	if _, err := conn.ListTableOfFamily(name, fam); errors.Is(err, unix.ENOENT) {
		return nil
	}
	conn.DelTable(&nftables.Table{Name: name, Family: fam})
	return nftError("delete nftables table "+family+" "+name, conn.Flush())
}

// AddTableRoute routes dst through dev, via the next hop via if valid, in
// routing table table. Revert deletes the route.
func (u *undoLog) AddTableRoute(dst netip.Prefix, via netip.Addr, dev string, table int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := change{Op: opTableRoute, Dev: dev, Prefix: dst.Masked(), Via: via, Table: table}
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("add %s: %w", c, err)
	}
	c.Index = link.Attrs().Index
	return u.apply(c, func() error {
		if err := netlink.RouteAdd(c.tableRoute()); err != nil {
			return fmt.Errorf("add %s: %w", c, err)
		}
		return nil
	})
}

// tableRoute is the kernel route an opTableRoute change adds.
func (c change) tableRoute() *netlink.Route {
	r := &netlink.Route{Dst: ipNet(c.Prefix), LinkIndex: c.Index, Table: c.Table, Protocol: unix.RTPROT_STATIC}
	if c.Prefix.Addr().Is4() && !c.Via.IsValid() {
		r.Scope = netlink.SCOPE_LINK // what "ip route add ... dev X" does for a route without a gateway
	}
	c.setVia(r)
	return r
}

// addRule adds a policy routing rule. Revert deletes it.
func (u *undoLog) addRule(r rule) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := change{Op: opRule, Rule: &r}
	return u.apply(c, func() error {
		if err := netlink.RuleAdd(r.netlink()); err != nil {
			return fmt.Errorf("add %s: %w", c, err)
		}
		return nil
	})
}

// netlink is the rule as vishvananda/netlink spells it: -1 for what is
// not set.
func (r rule) netlink() *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = netlink.FAMILY_V4
	if r.V6 {
		nr.Family = netlink.FAMILY_V6
	}
	nr.Priority, nr.Table, nr.Mark, nr.Invert = r.Priority, r.Table, r.Mark, r.Invert
	nr.SuppressPrefixlen = r.Suppress - 1
	return nr
}

//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// natTable is the one nftables table sshvpn owns, in family ip for IPv4
// prefixes and family ip6 for IPv6 prefixes: "table ip sshvpn" and
// "table ip6 sshvpn". Two plain families, rather than one inet table, keep the
// IPv4 rules readable by iptables-nft users and work on kernels before 5.2,
// which lack NAT in inet tables.
//
// Each table holds two base chains:
//
//	chain postrouting { type nat hook postrouting priority srcnat; }
//	chain forward { type filter hook forward priority filter; policy accept; }
//
// Every rule carries a comment "sshvpn pid <pid> #<n>: ...", which is how
// Revert finds its own rules and how a later run tells a table left by a
// dead process (stale, deleted) from one a live sshvpn still uses (shared).
const natTable = "sshvpn"

const ownerPrefix = "sshvpn pid "

// Masquerade makes the host masquerade packets from src that leave for
// anywhere outside src, and accept forwarded packets from and to src:
//
//	ip saddr SRC ip daddr != SRC masquerade
//	ip saddr SRC accept
//	ip daddr SRC accept
//
// The accept rules open sshvpn's own forward chain; they cannot override a
// drop in another table's forward chain (a firewall's), which the operator
// has to open. The first call for each family deletes an sshvpn table left by
// a dead run, and logs that. Revert deletes the rules, and the table once no
// rules are left in it.
func (u *undoLog) Masquerade(src netip.Prefix) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if src.Addr().Is4In6() {
		src = netip.PrefixFrom(src.Addr().Unmap(), src.Bits()-96)
	}
	if !src.IsValid() {
		return fmt.Errorf("masquerade %s: not a valid prefix", src)
	}
	src = src.Masked()
	fam := familyOf(src.Addr())
	c, err := nftables.New()
	if err != nil {
		return nftError("masquerade "+src.String(), err)
	}
	if err := u.clearStale(c, fam); err != nil {
		return fmt.Errorf("masquerade %s: %w", src, err)
	}
	u.nat.seq++
	tag := fmt.Sprintf("%s%d #%d: masquerade %s", ownerPrefix, os.Getpid(), u.nat.seq, src)
	return u.apply(change{Op: opNAT, Family: fam.name, Tag: tag}, func() error {
		fam.addRules(c, src, userdata.AppendString(nil, userdata.TypeComment, tag))
		return nftError("masquerade "+src.String(), c.Flush())
	})
}

// clearStale deletes this family's sshvpn table if no live process owns a
// rule in it, once per undoLog and family.
func (u *undoLog) clearStale(c *nftables.Conn, fam natFamily) error {
	if u.nat.checked[byte(fam.family)] {
		return nil
	}
	table := fam.table()
	rules, err := tableRules(c, table)
	if err != nil {
		return nftError("look for stale table "+fam.name+" "+natTable, err)
	}
	if rules == nil {
		u.markChecked(fam)
		return nil
	}
	if pids := liveOwners(rules); len(pids) > 0 {
		u.log().Info("sharing nftables table with a running sshvpn", "table", fam.name+" "+natTable, "pids", pids)
		u.markChecked(fam)
		return nil
	}
	c.DelTable(table)
	if err := c.Flush(); err != nil {
		return nftError("delete stale table "+fam.name+" "+natTable, err)
	}
	u.log().Warn("deleted stale nftables table left by a dead sshvpn run", "table", fam.name+" "+natTable, "rules", len(rules))
	u.markChecked(fam)
	return nil
}

func (u *undoLog) markChecked(fam natFamily) {
	if u.nat.checked == nil {
		u.nat.checked = make(map[uint8]bool)
	}
	u.nat.checked[byte(fam.family)] = true
}

// tableRules lists the rules in every chain of table. It returns nil, and no
// error, when the table does not exist, and a non-nil empty slice when it
// exists without rules.
func tableRules(c *nftables.Conn, table *nftables.Table) ([]*nftables.Rule, error) {
	if _, err := c.ListTableOfFamily(table.Name, table.Family); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, err
	}
	chains, err := c.ListChainsOfTableFamily(table.Family)
	if err != nil {
		return nil, err
	}
	rules := []*nftables.Rule{}
	for _, ch := range chains {
		if ch.Table.Name != table.Name {
			continue
		}
		rs, err := c.GetRules(table, ch)
		if err != nil {
			return nil, err
		}
		rules = append(rules, rs...)
	}
	return rules, nil
}

// liveOwners returns the pids named by the rules' comments whose process is
// alive (this one included: another undoLog may share the table).
func liveOwners(rules []*nftables.Rule) []int {
	seen := map[int]bool{}
	var pids []int
	for _, r := range rules {
		pid, ok := owner(r)
		if !ok || seen[pid] {
			continue
		}
		seen[pid] = true
		if err := unix.Kill(pid, 0); err == nil || errors.Is(err, unix.EPERM) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func comment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

func owner(r *nftables.Rule) (int, bool) {
	rest, ok := strings.CutPrefix(comment(r), ownerPrefix)
	if !ok {
		return 0, false
	}
	digits, _, _ := strings.Cut(rest, " ")
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// removeRules deletes the rules tagged tag, and the table when nothing else
// is left in it. A table that is already gone is fine.
func (fam natFamily) removeRules(tag string) error {
	what := fmt.Sprintf("remove masquerade from %s %s", fam.name, natTable)
	c, err := nftables.New()
	if err != nil {
		return nftError(what, err)
	}
	table := fam.table()
	rules, err := tableRules(c, table)
	if err != nil || rules == nil {
		return nftError(what, err)
	}
	others := 0
	for _, r := range rules {
		if comment(r) != tag {
			others++
		} else if err := c.DelRule(r); err != nil {
			return nftError(what, err)
		}
	}
	if others == 0 {
		c.DelTable(table)
	}
	return nftError(what, c.Flush())
}

// nftError adds advice to an nftables failure; it returns nil for nil.
func nftError(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%s: %w: run as root (CAP_NET_ADMIN) or use --backend netstack", what, err)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%s: %w: the kernel lacks nftables NAT (modules nf_tables, nft_masq)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

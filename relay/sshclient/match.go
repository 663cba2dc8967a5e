package sshclient

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// matchVersion is what "Match version" compares with. sshvpn reads the
// ssh_config grammar of OpenSSH 10.0 (the newer of the two generations it
// is tested against), so it answers as that ssh does.
const matchVersion = "OpenSSH_10.0p2"

// matchLine evaluates a Match line like OpenSSH 10.0's match_cfg_line: all
// criteria must hold; "all" may stand alone or after one other criterion
// ("Match final all", "Match canonical all"); criteria take their argument
// as the next word or after "=" ("host=x"). Where 9.2 and 10.0 differ
// (9.2 has no localnetwork, tagged, command, sessiontype or version, and
// splits Match arguments without single quotes), sshvpn follows 10.0.
func (r *resolver) matchLine(args []string, where string) (bool, error) {
	result := true
	attributes := 0
	for i := 0; i < len(args); i++ {
		oattrib := args[i]
		if strings.HasPrefix(oattrib, "#") {
			break
		}
		attrib := oattrib
		neg := strings.HasPrefix(attrib, "!")
		if neg {
			attrib = attrib[1:]
		}
		if strings.EqualFold(attrib, "all") {
			next := i + 1
			if attributes > 1 || (next < len(args) && args[next] != "" && args[next][0] != '#') {
				return false, fmt.Errorf("%s: '%s' cannot be combined with other Match attributes", where, oattrib)
			}
			if next+1 < len(args) && args[next] == "" {
				return false, fmt.Errorf("%s: keyword match extra arguments at end of line", where)
			}
			if result {
				result = !neg
			}
			return result, nil
		}
		attributes++
		if strings.EqualFold(attrib, "canonical") || strings.EqualFold(attrib, "final") {
			if strings.EqualFold(attrib, "final") {
				r.wantFinal = true
			}
			if r.final == neg {
				result = false
			}
			continue
		}
		var arg string
		if k, v, ok := strings.Cut(attrib, "="); ok && takesEquals(k) {
			attrib, arg = k, v
		} else if i+1 < len(args) {
			i++
			arg = args[i]
		} else {
			return false, fmt.Errorf("%s: missing argument for Match '%s'", where, oattrib)
		}
		a := strings.ToLower(attrib)
		if (arg == "" && a != "tagged" && a != "command") || strings.HasPrefix(arg, "#") {
			return false, fmt.Errorf("%s: missing Match criteria for %s", where, attrib)
		}
		var ok bool
		switch a {
		case "host":
			ok = matchHostname(r.matchHost(), arg) == 1 // knownhosts.go
		case "originalhost":
			ok = matchHostname(r.originalHost, arg) == 1
		case "user":
			ok = matchPatternList(r.str("user", r.env.localUser), arg, false) == 1
		case "localuser":
			ok = matchPatternList(r.env.localUser, arg, false) == 1
		case "localnetwork":
			prefixes, err := parseCIDRList(arg)
			if err != nil {
				return false, fmt.Errorf("%s: Match localnetwork: %w", where, err)
			}
			ok = localNetworkMatches(prefixes)
		case "version":
			ok = matchPatternList(matchVersion, arg, false) == 1
		case "tagged":
			ok = matchEmptyOr(r.str("tag", ""), arg)
		case "command":
			ok = matchEmptyOr("", arg) // sshvpn runs no remote command
		case "sessiontype":
			ok = matchPatternList("none", arg, false) == 1 // like ssh -N
		case "exec":
			cmd, err := r.matchTokens().expand(arg)
			if err != nil {
				return false, fatalError{fmt.Errorf("%s: failed to expand match exec '%s': %w", where, arg, err)}
			}
			if !result {
				continue // ssh skips the command once a criterion failed
			}
			if ok, err = r.runExec(cmd); err != nil {
				return false, fatalError{fmt.Errorf("%s: match exec '%s': %w", where, cmd, err)}
			}
		default:
			return false, fmt.Errorf("%s: unsupported Match attribute %s", where, attrib)
		}
		if ok == neg {
			result = false
		}
	}
	if attributes == 0 {
		return false, fmt.Errorf("%s: one or more attributes required for Match", where)
	}
	return result, nil
}

// takesEquals lists the criteria 10.0 accepts as "name=value".
func takesEquals(attrib string) bool {
	switch strings.ToLower(attrib) {
	case "host", "originalhost", "user", "localuser", "localnetwork", "version", "tagged", "command", "exec":
		return true
	}
	return false
}

// matchEmptyOr is the tagged/command rule: an empty value matches only an
// empty argument.
func matchEmptyOr(value, arg string) bool {
	if value == "" {
		return arg == ""
	}
	return matchPatternList(value, arg, false) == 1
}

// runExec runs a Match exec command as ssh does: with $SHELL (or /bin/sh)
// -c, stdin and stdout on /dev/null, stderr passed through; exit status 0
// matches. The final pass asks again for the same command, and ssh would
// run it again; sshvpn remembers the answer instead so a command with side
// effects runs once per line.
func (r *resolver) runExec(cmd string) (bool, error) {
	if ok, seen := r.execCache[cmd]; seen {
		return ok, nil
	}
	run := r.exec
	if run == nil {
		run = execInShell
	}
	ok, err := run(cmd)
	if err != nil {
		return false, err
	}
	if r.execCache == nil {
		r.execCache = map[string]bool{}
	}
	r.execCache[cmd] = ok
	return ok, nil
}

func execInShell(cmd string) (bool, error) {
	shell := os.Getenv("SHELL")
	if shell == "" {
		shell = "/bin/sh"
	}
	c := exec.Command(shell, "-c", cmd)
	c.Stdin, c.Stdout, c.Stderr = nil, nil, os.Stderr // nil is /dev/null
	err := c.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit) && exit.Exited():
		return false, nil
	case errors.As(err, &exit):
		return false, fmt.Errorf("command exited abnormally: %w", err)
	}
	return false, fmt.Errorf("shell %q: %w", shell, err)
}

// parseCIDRList is addrmatch.c addr_match_cidr_list's syntax check: a
// comma-separated list of addresses or networks with no host bits set.
func parseCIDRList(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range strings.Split(list, ",") {
		if e == "" {
			return nil, fmt.Errorf("empty entry in list %q", list)
		}
		if len(e) > 46+3 {
			return nil, fmt.Errorf("list entry %q too long", e)
		}
		if strings.Trim(e, "0123456789abcdefABCDEF.:/") != "" {
			return nil, fmt.Errorf("list entry %q contains invalid characters", e)
		}
		var p netip.Prefix
		if strings.Contains(e, "/") {
			var err error
			if p, err = netip.ParsePrefix(e); err != nil {
				return nil, fmt.Errorf("invalid network entry %q", e)
			}
			if p.Masked() != p {
				return nil, fmt.Errorf("inconsistent mask length for network %q", e)
			}
		} else {
			a, err := netip.ParseAddr(e)
			if err != nil {
				return nil, fmt.Errorf("invalid network entry %q", e)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}

// localNetworkMatches reports whether an address of an interface that is
// up lies in one of the prefixes (readconf.c check_match_ifaddrs).
func localNetworkMatches(prefixes []netip.Prefix) bool {
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			for _, p := range prefixes {
				if p.Contains(ip) {
					return true
				}
			}
		}
	}
	return false
}

// matchHost is the host Match host sees: on the final pass the HostName;
// before, the HostName obtained so far with %h expanded, or the host
// itself (readconf.c match_cfg_line).
func (r *resolver) matchHost() string {
	if r.final {
		return r.host
	}
	if s, ok := r.vals["hostname"]; ok {
		if h, err := expandHostName(s.args[0], r.host); err == nil {
			return h
		}
	}
	return r.host
}

// matchPatternList is match.c's match_pattern_list: 1 when some entry of
// the comma-separated list matches, -1 when a negated entry does (a veto),
// 0 otherwise. lower lower-cases the patterns.
func matchPatternList(s, list string, lower bool) int {
	positive := false
	for i := 0; i < len(list); {
		neg := list[i] == '!'
		if neg {
			i++
		}
		j := strings.IndexByte(list[i:], ',')
		var sub string
		if j < 0 {
			sub, i = list[i:], len(list)
		} else {
			sub, i = list[i:i+j], i+j+1
		}
		if len(sub) >= 1023 {
			return 0 // match.c: a subpattern too long fails the match
		}
		if lower {
			sub = strings.ToLower(sub)
		}
		if matchPattern(s, sub) {
			if neg {
				return -1
			}
			positive = true
		}
	}
	if positive {
		return 1
	}
	return 0
}

// matchPattern is match.c's match_pattern: "*" matches any run, "?" one
// byte, everything else itself. It backtracks only to the last "*", so a
// hostile pattern cannot make it exponential (match.c's recursion can be);
// for these two wildcards the answer is the same.
func matchPattern(s, p string) bool {
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			si++
			pi++
		case star >= 0:
			mark++
			si, pi = mark, star+1
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

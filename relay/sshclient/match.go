package sshclient

import (
	"fmt"
	"strings"
)

// hostLineMatches evaluates a Host line like readconf.c: the block applies
// when some pattern matches host and no negated pattern does.
func hostLineMatches(host string, patterns []string) bool {
	matched := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		if neg {
			p = p[1:]
		}
		if matchPattern(host, p) {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}

// matchLine evaluates a Match line like readconf.c's match_cfg_line. All
// criteria must hold. "exec" is never run: the block does not match and a
// note says so. Criteria sshvpn cannot evaluate (localnetwork, tagged,
// command, sessiontype, version) likewise do not match, with a note.
func (r *resolver) matchLine(args []string, where string) (bool, error) {
	if len(args) == 0 {
		return false, fmt.Errorf("%s: missing Match criteria", where)
	}
	result := true
	for i := 0; i < len(args); i++ {
		attr := strings.ToLower(args[i])
		neg := strings.HasPrefix(attr, "!")
		attr = strings.TrimPrefix(attr, "!")
		if attr == "all" {
			if len(args) > 1 {
				return false, fmt.Errorf("%s: 'all' cannot be combined with other Match attributes", where)
			}
			return !neg, nil
		}
		var ok bool
		switch attr {
		case "canonical", "final":
			if attr == "final" && !neg {
				r.wantFinal = true
			}
			ok = r.final
		default:
			var arg string
			if k, v, found := strings.Cut(args[i], "="); found {
				attr, arg = strings.ToLower(strings.TrimPrefix(k, "!")), v
			} else if i+1 < len(args) {
				i++
				arg = args[i]
			}
			if arg == "" {
				return false, fmt.Errorf("%s: missing argument for Match '%s'", where, attr)
			}
			var err error
			ok, err = r.matchCriterion(attr, arg, where)
			if err != nil {
				return false, err
			}
			if !ok && (attr == "exec" || !knownCriterion(attr)) {
				result = false // never true, even negated
				continue
			}
		}
		if ok == neg {
			result = false
		}
	}
	return result, nil
}

func knownCriterion(attr string) bool {
	switch attr {
	case "host", "originalhost", "user", "localuser":
		return true
	}
	return false
}

func (r *resolver) matchCriterion(attr, arg, where string) (bool, error) {
	switch attr {
	case "host":
		return matchPatternList(strings.ToLower(r.matchHost()), arg, true), nil
	case "originalhost":
		return matchPatternList(r.originalHost, arg, true), nil
	case "user":
		return matchPatternList(r.str("user", r.env.localUser), arg, false), nil
	case "localuser":
		return matchPatternList(r.env.localUser, arg, false), nil
	case "exec":
		r.note("%s: ignored Match exec %q (not run; the block does not match)", where, arg)
		return false, nil
	case "localnetwork", "tagged", "command", "sessiontype", "version":
		r.note("%s: ignored Match %s %q (not evaluated; the block does not match)", where, attr, arg)
		return false, nil
	}
	return false, fmt.Errorf("%s: unsupported Match attribute %s", where, attr)
}

// matchHost is the host Match host sees: the HostName obtained so far
// with %h expanded, or the host itself (readconf.c).
func (r *resolver) matchHost() string {
	if r.final {
		return r.host
	}
	if s, ok := r.vals["hostname"]; ok {
		h, err := expandHostName(s.args[0], r.host)
		if err == nil {
			return h
		}
	}
	return r.host
}

// matchPatternList is match.c's match_pattern_list: a comma-separated list
// where a matching negated entry vetoes and any positive match suffices.
func matchPatternList(s, list string, lower bool) bool {
	matched := false
	for _, p := range strings.Split(list, ",") {
		neg := strings.HasPrefix(p, "!")
		if neg {
			p = p[1:]
		}
		if lower {
			p = strings.ToLower(p)
		}
		if matchPattern(s, p) {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}

// matchPattern is match.c's match_pattern: "*" matches any run, "?" one
// byte, everything else itself.
func matchPattern(s, p string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			if p == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if matchPattern(s[i:], p) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != p[0] {
				return false
			}
		}
		s, p = s[1:], p[1:]
	}
	return s == ""
}

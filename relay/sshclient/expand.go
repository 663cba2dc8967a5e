package sshclient

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// tokens are the %-tokens of ssh_config(5) TOKENS for IdentityFile and
// UserKnownHostsFile.
type tokens map[byte]string

func (r *resolver) tokens(c *Config) tokens {
	short, _, _ := strings.Cut(r.env.localHost, ".")
	return tokens{
		'%': "%",
		'd': r.env.home,
		'h': c.HostName,
		'i': r.env.uid,
		'j': r.str("proxyjump", ""),
		'k': firstNonEmpty(c.HostKeyAlias, c.HostName),
		'L': short,
		'l': r.env.localHost,
		'n': r.originalHost,
		'p': strconv.Itoa(c.Port),
		'r': c.User,
		'u': r.env.localUser,
	}
}

// expand replaces %x tokens; an unknown token is an error, as in ssh.
func (t tokens) expand(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("%q: invalid format (%% at end)", s)
		}
		i++
		v, ok := t[s[i]]
		if !ok {
			return "", fmt.Errorf("%q: unknown token %%%c", s, s[i])
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// expandPath expands ~ then %-tokens, as ssh does for IdentityFile and
// UserKnownHostsFile.
func (t tokens) expandPath(s string) (string, error) {
	if s == "~" || strings.HasPrefix(s, "~/") {
		s = t['d'] + s[1:]
	}
	return t.expand(s)
}

func (r *resolver) expandTilde(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		return filepath.Join(r.env.home, p[1:])
	}
	return p
}

// expandHostName expands HostName, where only %h and %% are allowed.
func expandHostName(s, host string) (string, error) {
	return tokens{'%': "%", 'h': host}.expand(s)
}

func lowerHost(h string) string {
	if _, err := netip.ParseAddr(h); err == nil {
		return h
	}
	return strings.ToLower(h)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// convTime parses OpenSSH time intervals (misc.c convtime): seconds, or
// runs of number+unit with units s, m, h, d, w.
func convTime(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty time interval")
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("invalid time interval %q", s)
		}
		n, err := strconv.ParseInt(s[:i], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("invalid time interval %q", s)
		}
		unit := time.Second
		if i < len(s) {
			switch s[i] {
			case 's', 'S':
			case 'm', 'M':
				unit = time.Minute
			case 'h', 'H':
				unit = time.Hour
			case 'd', 'D':
				unit = 24 * time.Hour
			case 'w', 'W':
				unit = 7 * 24 * time.Hour
			default:
				return 0, fmt.Errorf("invalid time interval %q", s)
			}
			i++
		}
		total += time.Duration(n) * unit
		s = s[i:]
	}
	return total, nil
}

// ParseDestination splits ssh's destination argument: [user@]host (the
// last "@" separates the user) or ssh://[user@]host[:port]. port is 0 when
// absent.
func ParseDestination(s string) (user, host string, port int, err error) {
	if strings.HasPrefix(s, "ssh://") {
		return parseSSHURI(s)
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		user, s = s[:i], s[i+1:]
		if user == "" {
			return "", "", 0, fmt.Errorf("destination %q: empty user name", s)
		}
	}
	if s == "" {
		return "", "", 0, errors.New("destination: empty host name")
	}
	return user, s, 0, nil
}

func parseSSHURI(s string) (user, host string, port int, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", "", 0, fmt.Errorf("destination %q: bad ssh:// URI", s)
	}
	if u.User != nil {
		user = u.User.Username()
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port <= 0 || port > 65535 {
			return "", "", 0, fmt.Errorf("destination %q: bad port", s)
		}
	}
	return user, u.Hostname(), port, nil
}

// JumpHost is one ProxyJump hop. Port 0 means "let the hop's config decide".
type JumpHost struct {
	User string
	Host string
	Port int
}

// Options returns the Options that resolve this hop: like the ssh that
// ProxyJump runs, with the hop's user and port on the command line, the
// same -F file, and the earlier hops as its -J.
func (j JumpHost) Options(configFile, rest string) Options {
	dest := j.Host
	if j.User != "" {
		dest = j.User + "@" + j.Host
	}
	return Options{Destination: dest, Port: j.Port, ConfigFile: configFile, Jump: rest}
}

// ParseJump parses a ProxyJump/-J chain: comma-separated hops, each
// [user@]host[:port] ([v6addr]:port for IPv6) or ssh://[user@]host[:port].
// "" and "none" give no hops.
func ParseJump(s string) ([]JumpHost, error) {
	if s == "" || strings.EqualFold(s, "none") {
		return nil, nil
	}
	var hops []JumpHost
	for _, part := range strings.Split(s, ",") {
		h, err := parseJumpHop(part)
		if err != nil {
			return nil, err
		}
		hops = append(hops, h)
	}
	return hops, nil
}

func parseJumpHop(s string) (JumpHost, error) {
	if strings.HasPrefix(s, "ssh://") {
		u, h, p, err := parseSSHURI(s)
		return JumpHost{u, h, p}, err
	}
	var j JumpHost
	if i := strings.LastIndex(s, "@"); i >= 0 {
		j.User, s = s[:i], s[i+1:]
	}
	j.Host = s
	if host, port, err := net.SplitHostPort(s); err == nil {
		p, err := strconv.Atoi(port)
		if err != nil || p <= 0 || p > 65535 {
			return JumpHost{}, fmt.Errorf("jump host %q: bad port", s)
		}
		j.Host, j.Port = host, p
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		j.Host = s[1 : len(s)-1]
	}
	if j.Host == "" || strings.ContainsAny(j.Host, " \t'\"/") {
		return JumpHost{}, fmt.Errorf("jump host %q: invalid host name", s)
	}
	return j, nil
}

// TunnelAny is OpenSSH's SSH_TUNID_ANY: let the server pick the unit.
const TunnelAny = 0x7fffffff

const tunnelMax = TunnelAny - 2 // SSH_TUNID_MAX

// ParseTunnelDevice parses -w / TunnelDevice "local[:remote]" like misc.c
// a2tun: each side is a unit number or "any" (TunnelAny); a missing remote
// is "any".
func ParseTunnelDevice(s string) (local, remote int, err error) {
	l, r, found := strings.Cut(s, ":")
	remote = TunnelAny
	if found {
		if remote, err = parseTunnelUnit(r); err != nil {
			return 0, 0, fmt.Errorf("bad tunnel device %q: %w", s, err)
		}
	}
	if local, err = parseTunnelUnit(l); err != nil {
		return 0, 0, fmt.Errorf("bad tunnel device %q: %w", s, err)
	}
	return local, remote, nil
}

func parseTunnelUnit(s string) (int, error) {
	if strings.EqualFold(s, "any") {
		return TunnelAny, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > tunnelMax {
		return 0, fmt.Errorf("unit %q is not a number in 0..%d or \"any\"", s, tunnelMax)
	}
	return n, nil
}

func formatTunnelUnit(n int) string {
	if n == TunnelAny {
		return "any"
	}
	return strconv.Itoa(n)
}

func defaultCiphers() []string {
	return ssh.SupportedAlgorithms().Ciphers
}

// applyAlgorithmList applies an OpenSSH algorithm list: "+a,b" appends to
// the defaults, "-a,b" removes (patterns allowed), "^a,b" puts first;
// anything else replaces the defaults.
func applyAlgorithmList(defaults []string, spec string) []string {
	if spec == "" {
		return defaults
	}
	list := strings.Split(spec[1:], ",")
	switch spec[0] {
	case '+':
		out := append([]string(nil), defaults...)
		for _, a := range list {
			out = appendUnique(out, a)
		}
		return out
	case '-':
		var out []string
		for _, d := range defaults {
			if !matchPatternList(d, spec[1:], false) {
				out = append(out, d)
			}
		}
		return out
	case '^':
		out := append([]string(nil), list...)
		for _, d := range defaults {
			out = appendUnique(out, d)
		}
		return out
	}
	return strings.Split(spec, ",")
}

package sshclient

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// tokens are the %-tokens of ssh_config(5) TOKENS.
type tokens map[byte]string

// connTokens are ssh.c's DEFAULT_CLIENT_PERCENT_EXPAND_ARGS for the
// resolved config: IdentityFile, UserKnownHostsFile and (without %r and
// %C) User.
func (r *resolver) connTokens(c *Config) tokens {
	short, _, _ := strings.Cut(r.env.localHost, ".")
	jmp := jumpHostOf(r.str("proxyjump", ""))
	port := strconv.Itoa(c.Port)
	return tokens{
		'%': "%",
		'C': connectionHash(r.env.localHost, c.HostName, port, c.User, jmp),
		'd': r.env.home,
		'h': c.HostName,
		'i': r.env.uid,
		'j': jmp,
		'k': firstNonEmpty(c.HostKeyAlias, r.originalHost),
		'L': short,
		'l': r.env.localHost,
		'n': r.originalHost,
		'p': port,
		'r': c.User,
		'u': r.env.localUser,
	}
}

// matchTokens are readconf.c expand_match_exec_or_include_path's tokens:
// the values obtained so far, for Match exec and Include.
func (r *resolver) matchTokens() tokens {
	short, _, _ := strings.Cut(r.env.localHost, ".")
	host := r.matchHost()
	port := strconv.Itoa(r.port())
	ruser := r.str("user", r.env.localUser)
	jmp := jumpHostOf(r.str("proxyjump", ""))
	return tokens{
		'%': "%",
		'C': connectionHash(r.env.localHost, host, port, ruser, jmp),
		'L': short,
		'd': r.env.home,
		'h': host,
		'k': r.str("hostkeyalias", host),
		'l': r.env.localHost,
		'n': r.originalHost,
		'p': port,
		'r': ruser,
		'u': r.env.localUser,
		'i': r.env.uid,
		'j': jmp,
	}
}

// port is the Port obtained so far, or 22.
func (r *resolver) port() int {
	if p := a2port(r.str("port", "")); p > 0 {
		return p
	}
	return defaultPort
}

// connectionHash is readconf.c ssh_connection_hash (%C) as of OpenSSH 9.6,
// which added the jump host (9.2 hashes without it).
func connectionHash(thishost, host, port, user, jump string) string {
	h := sha1.Sum([]byte(thishost + host + port + user + jump))
	return hex.EncodeToString(h[:])
}

// expand replaces %x tokens (misc.c percent_expand); an unknown token or a
// lone % at the end is an error, as in ssh.
func (t tokens) expand(s string) (string, error) { return t.expandWith(s, false) }

// expandDollar also replaces ${NAME} with the environment variable
// (percent_dollar_expand); an unset variable is an error.
func (t tokens) expandDollar(s string) (string, error) { return t.expandWith(s, true) }

func (t tokens) expandWith(s string, dollar bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if dollar && s[i] == '$' && i+1 < len(s) && s[i+1] == '{' {
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q: environment variable missing closing '}'", s)
			}
			if end == 0 {
				return "", fmt.Errorf("%q: zero-length environment variable", s)
			}
			name := s[i+2 : i+2+end]
			v, ok := os.LookupEnv(name)
			if !ok {
				return "", fmt.Errorf("%q: env var ${%s} has no value", s, name)
			}
			b.WriteString(v)
			i += 2 + end
			continue
		}
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

// expandPath expands ~ then %-tokens and ${ENV}, as ssh does for
// IdentityFile and UserKnownHostsFile.
func (r *resolver) expandPath(t tokens, s string) (string, error) {
	s, err := r.tildeExpand(s)
	if err != nil {
		return "", err
	}
	return t.expandDollar(s)
}

// tildeExpand is misc.c tilde_expand: "~" and "~/" are the user's home
// (with a trailing slash), "~name/..." that user's.
func (r *resolver) tildeExpand(p string) (string, error) {
	if !strings.HasPrefix(p, "~") {
		return p, nil
	}
	rest := p[1:]
	home := r.env.home
	var path string
	if rest == "" || rest[0] == '/' {
		path = strings.TrimLeft(rest, "/")
	} else {
		name := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			name, path = rest[:i], strings.TrimLeft(rest[i+1:], "/")
		}
		u, err := user.Lookup(name)
		if err != nil {
			return "", fmt.Errorf("%s: no such user %s", p, name)
		}
		home = u.HomeDir
	}
	if !strings.HasSuffix(home, "/") {
		home += "/"
	}
	return home + path, nil
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

// convTime parses OpenSSH time intervals (misc.c convtime): runs of a
// number with an optional unit s, m, h, d or w; the total must fit an int.
func convTime(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty time interval")
	}
	const intMax = 1<<31 - 1
	var total int64
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		secs, err := strtonum(s[:i], 0, intMax)
		if err != nil || i == 0 {
			return 0, fmt.Errorf("invalid time interval %q", s)
		}
		mult := int64(1)
		if i < len(s) {
			switch s[i] {
			case 's', 'S':
			case 'm', 'M':
				mult = 60
			case 'h', 'H':
				mult = 3600
			case 'd', 'D':
				mult = 86400
			case 'w', 'W':
				mult = 604800
			default:
				return 0, fmt.Errorf("invalid time interval %q", s)
			}
			i++
		}
		if secs > intMax/mult || total > intMax-secs*mult {
			return 0, fmt.Errorf("time interval %q too large", s)
		}
		total += secs * mult
		s = s[i:]
	}
	return time.Duration(total) * time.Second, nil
}

// a2port is misc.c a2port: a number in 1..65535 or a TCP service name;
// 0 or -1 for anything else.
func a2port(s string) int {
	if n, err := strtonum(s, 0, 65535); err == nil {
		return int(n)
	}
	if s == "" {
		return -1
	}
	if p, err := net.LookupPort("tcp", s); err == nil && p > 0 {
		return p
	}
	return -1
}

// validHostname is ssh.c valid_hostname, applied to the destination.
func validHostname(s string) bool {
	if strings.HasPrefix(s, "-") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte("'`\"$\\;&<>|(){},", c) >= 0 || c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// validRuser is ssh.c valid_ruser, applied to the resolved User.
func validRuser(s string) bool {
	if strings.HasPrefix(s, "-") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if strings.IndexByte("'`\";&<>|(){}", c) >= 0 {
			return false
		}
		if isSpace(c) && i+1 < len(s) && s[i+1] == '-' {
			return false
		}
		if c == '\\' && i+1 == len(s) {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }

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
	if !validHostname(s) {
		return "", "", 0, fmt.Errorf("destination %q: hostname contains invalid characters", s)
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
		if i := strings.IndexByte(user, ';'); i >= 0 {
			user = user[:i] // connection parameters are ignored, as in ssh
		}
		if user == "" {
			return "", "", 0, fmt.Errorf("destination %q: empty user name", s)
		}
	}
	if p := u.Port(); p != "" {
		if port = a2port(p); port <= 0 {
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

// String is the hop as ssh -G prints it: [user@]host[:port], with the
// host in brackets when it is numeric.
func (j JumpHost) String() string {
	var b strings.Builder
	if j.User != "" {
		b.WriteString(j.User + "@")
	}
	if strings.Contains(j.Host, ":") || strings.Trim(j.Host, "1234567890.") == "" {
		b.WriteString("[" + j.Host + "]")
	} else {
		b.WriteString(j.Host)
	}
	if j.Port > 0 {
		b.WriteString(":" + strconv.Itoa(j.Port))
	}
	return b.String()
}

// ParseJump parses a ProxyJump/-J chain: comma-separated hops, each
// [user@]host[:port] ([host]:port for IPv6) or ssh://[user@]host[:port].
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

// parseJumpLine is readconf.c parse_jump's syntax: a comment and trailing
// white space are dropped, each hop must parse, and the value is what ssh
// -G prints: the earlier hops as written, then the last hop normalized.
func parseJumpLine(s string, _ bool) (string, error) {
	if strings.EqualFold(s, "none") {
		return "none", nil
	}
	t := s
	if i := strings.IndexByte(t, '#'); i >= 0 {
		t = t[:i]
	}
	t = strings.TrimRight(t, " \t\r\n")
	parts := strings.Split(t, ",")
	var last JumpHost
	for i := len(parts) - 1; i >= 0; i-- {
		h, err := parseJumpHop(parts[i])
		if err != nil {
			return "", err
		}
		if i == len(parts)-1 {
			last = h
		}
	}
	if i := strings.LastIndexByte(t, ','); i > 0 {
		return t[:i] + "," + last.String(), nil
	}
	return last.String(), nil
}

// jumpHostOf is ssh's jump_host for %j: the last hop's host, "" for none.
func jumpHostOf(v string) string {
	hops, err := ParseJump(v)
	if err != nil || len(hops) == 0 {
		return ""
	}
	return hops[len(hops)-1].Host
}

func parseJumpHop(s string) (JumpHost, error) {
	if strings.HasPrefix(s, "ssh://") {
		u, h, p, err := parseSSHURI(s)
		return JumpHost{u, h, p}, err
	}
	return parseUserHostPort(s)
}

// parseUserHostPort is misc.c parse_user_host_port: [user@]host[:port],
// the host split at the first ":" or "/" unless it is in brackets.
func parseUserHostPort(s string) (JumpHost, error) {
	orig := s
	var j JumpHost
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if i == 0 {
			return JumpHost{}, fmt.Errorf("jump host %q: empty user name", orig)
		}
		j.User, s = s[:i], s[i+1:]
	}
	host, rest := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return JumpHost{}, fmt.Errorf("jump host %q: missing ]", orig)
		}
		host, rest = s[:end+1], s[end+1:]
		if rest != "" {
			if rest[0] != ':' && rest[0] != '/' {
				return JumpHost{}, fmt.Errorf("jump host %q: invalid host", orig)
			}
			rest = rest[1:]
		}
	} else if i := strings.IndexAny(s, ":/"); i >= 0 {
		host, rest = s[:i], s[i+1:]
	}
	if host == "" {
		return JumpHost{}, fmt.Errorf("jump host %q: missing host name", orig)
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	j.Host = host
	if rest != "" {
		if j.Port = a2port(rest); j.Port <= 0 {
			return JumpHost{}, fmt.Errorf("jump host %q: bad port", orig)
		}
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
	n, err := strtonum(s, 0, tunnelMax)
	if err != nil {
		return 0, fmt.Errorf("unit %q is not a number in 0..%d or \"any\"", s, tunnelMax)
	}
	return int(n), nil
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
			if matchPatternList(d, spec[1:], false) != 1 {
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
	var out []string
	for _, a := range strings.Split(spec, ",") {
		out = appendUnique(out, a)
	}
	return out
}

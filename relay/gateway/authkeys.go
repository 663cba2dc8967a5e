package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
)

// KeyOptions are the authorized_keys options sshvpn honours for one key.
type KeyOptions struct {
	Source    string    // "file:line", for messages
	Restrict  bool      // restrict: no tunnels (OpenSSH ≥ 10.5 semantics)
	ForceUnit *uint32   // tunnel="N" or tunnel="any"
	From      []string  // from="pattern-list", matched against the client's address
	Expiry    time.Time // expiry-time="…"; zero for none
	// AllowedIPs are networks the client routes through itself (a site
	// behind it): packets from them may enter the gateway, besides the
	// tunnel's own addresses. environment="SSHVPN_ALLOWED_IPS=cidr,…".
	AllowedIPs []netip.Prefix
	// KeyRules are the key's egress rules, environment="SSHVPN_ALLOW=…"
	// and "SSHVPN_DENY=…", in line order: the rootless backend checks them
	// before the gateway's --allow and --deny.
	KeyRules []relay.KeyRule
	// NoPortForwarding refuses direct-tcpip (ssh -L, ssh -D), as sshd's
	// no-port-forwarding and restrict do; port-forwarding undoes it.
	NoPortForwarding bool
	// PermitOpen, when not empty, are the only host:port targets a
	// direct-tcpip channel may name (sshd's permitopen="host:port", with
	// * for any host or port).
	PermitOpen []string
	// ForceCommand is the command sshd would run instead of the client's:
	// command= on the line, or a certificate's force-command. sshvpn runs
	// no commands, and sshd's forced command does not stop tunnels or
	// forwarding either, so it is only logged.
	ForceCommand string
	// Certificate names the certificate a client logged in with (its ID,
	// serial and CA), for the log; empty for a plain key.
	Certificate string
	// Comment is the line's comment (after the key), for sshvpn status.
	Comment string
}

type authorizedKey struct {
	key  ssh.PublicKey
	opts KeyOptions
	// certAuthority marks a cert-authority line: key is a CA whose user
	// certificates log in, never a key that logs in itself.
	certAuthority bool
	// principals is the line's principals="…", nil without one: the
	// certificate names that may log in instead of the user's own.
	principals *string
	// command is the line's command="…", nil without one: a certificate's
	// force-command must then be the same.
	command *string
}

// maxKeyLine is the longest line read as a key; a longer one, even a
// comment, is skipped like any bad line. sshd reads lines of any length.
const maxKeyLine = 1 << 20

// AuthorizedKeys is an authorized_keys file. It is parsed when it changes
// (by size, times and inode), not on every authentication attempt, so a
// flood of key queries costs a stat each; a key removed from the file is
// refused at the next login, whatever its timestamps say.
type AuthorizedKeys struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	file  keyFile
	stamp fileStamp
	reads int // how often the file was parsed, for tests
}

// fileStamp tells one version of a file from the next.
type fileStamp struct {
	size         int64
	mtime, ctime time.Time
	ino          uint64
}

// LoadAuthorizedKeys reads path. At start a line that is not a key, or
// whose options sshvpn acts on are malformed, is an error naming the file
// and line; later reads skip such lines with a warning, as sshd does, so an
// edit cannot lock everyone out. Lines sshd itself skips (an unknown option,
// a line over 1 MiB) are skipped with a warning always. The file and the
// directories above it must be safe as sshd's StrictModes requires. A
// missing file is not an error: the gateway refuses every login (Len is 0)
// until it exists.
func LoadAuthorizedKeys(path string, log *slog.Logger) (*AuthorizedKeys, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &AuthorizedKeys{path: path, log: log}
	if err := a.reload(true); err != nil {
		return nil, err
	}
	return a, nil
}

// Path is the file's path.
func (a *AuthorizedKeys) Path() string { return a.path }

// Len is the number of keys at the last read.
func (a *AuthorizedKeys) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.file.keys)
}

// Reload reads the file again now (SIGHUP), whether it changed or not.
// A file that became unsafe or unreadable leaves the keys as they were.
func (a *AuthorizedKeys) Reload() error {
	return a.reload(false)
}

func (a *AuthorizedKeys) reload(strict bool) error {
	kf, stamp, err := a.read(strict)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.file, a.stamp = kf, stamp
	a.mu.Unlock()
	return nil
}

// current returns the keys, reading the file again if it changed.
func (a *AuthorizedKeys) current() (keyFile, error) {
	st, err := stampOf(a.path)
	a.mu.Lock()
	kf, same := a.file, err == nil && st == a.stamp
	a.mu.Unlock()
	if same {
		return kf, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		a.mu.Lock()
		a.file, a.stamp = keyFile{}, fileStamp{}
		a.mu.Unlock()
		return keyFile{}, nil
	}
	kf, st, err = a.read(false)
	if err != nil {
		return keyFile{}, err
	}
	a.mu.Lock()
	a.file, a.stamp = kf, st
	a.mu.Unlock()
	return kf, nil
}

// keyFile is what one read of the file found.
type keyFile struct {
	keys    []authorizedKey
	skipped []*LineError // lines not used, in order
}

// LineError is a line of authorized_keys the gateway does not use, and why.
type LineError struct {
	File string
	Line int
	Err  error // why, without the place; errors.Is(Err, errSkipped) for lines sshd skips too
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// CheckAuthorizedKeys reads path as the gateway reads it, and returns how
// many keys it would use and every line it would skip, in order: what
// sshvpn serve --check prints, from the same parser the gateway runs, so
// the two never disagree. err is a file the gateway would not read at all
// (unsafe modes, unreadable); a missing file is neither.
func CheckAuthorizedKeys(path string) (keys int, skipped []*LineError, err error) {
	a := &AuthorizedKeys{path: path, log: slog.New(slog.DiscardHandler)}
	kf, _, err := a.read(false)
	return len(kf.keys), kf.skipped, err
}

// read parses the file. strict (at start) makes a malformed line an error;
// otherwise it and the lines sshd skips are logged and left out.
func (a *AuthorizedKeys) read(strict bool) (keyFile, fileStamp, error) {
	f, err := os.Open(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		return keyFile{}, fileStamp{}, nil
	}
	if err != nil {
		return keyFile{}, fileStamp{}, fmt.Errorf("authorized keys: %w", err)
	}
	defer f.Close()
	a.mu.Lock()
	a.reads++
	a.mu.Unlock()
	if err := checkModes(f, a.path); err != nil {
		return keyFile{}, fileStamp{}, err
	}
	// The stamp of the file read, not of what the path names by now: a
	// rename in between must not file the old keys under the new stamp.
	fi, err := f.Stat()
	if err != nil {
		return keyFile{}, fileStamp{}, fmt.Errorf("authorized keys: %w", err)
	}
	kf, err := a.parse(f, strict)
	if err != nil {
		return keyFile{}, fileStamp{}, err
	}
	return kf, stampFrom(fi), nil
}

func (a *AuthorizedKeys) parse(f io.Reader, strict bool) (keyFile, error) {
	var kf keyFile
	r := bufio.NewReaderSize(f, 64<<10)
	for line := 1; ; line++ {
		text, long, err := readLine(r)
		if err != nil && err != io.EOF {
			return keyFile{}, fmt.Errorf("authorized keys: %s:%d: %w", a.path, line, err)
		}
		var k *authorizedKey
		var lerr error
		if long {
			lerr = fmt.Errorf("%w: longer than %d bytes", errSkipped, maxKeyLine)
		} else {
			k, lerr = parseKeyLine(fmt.Sprintf("%s:%d", a.path, line), bytes.TrimSpace(text))
		}
		switch {
		case lerr != nil && strict && !errors.Is(lerr, errSkipped):
			return keyFile{}, &LineError{a.path, line, lerr}
		case lerr != nil:
			le := &LineError{a.path, line, lerr}
			a.log.Warn("authorized_keys line skipped", "line", fmt.Sprintf("%s:%d", a.path, line), "why", lerr)
			kf.skipped = append(kf.skipped, le)
		case k != nil:
			kf.keys = append(kf.keys, *k)
		}
		if err == io.EOF {
			return kf, nil
		}
	}
}

// readLine reads one line without its newline. long reports a line over
// maxKeyLine, which is consumed and not returned.
func readLine(r *bufio.Reader) (text []byte, long bool, err error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > maxKeyLine {
			long, buf = true, nil
		} else if !long {
			buf = append(buf, chunk...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return buf, long, err
		}
		return bytes.TrimSuffix(buf, []byte("\n")), long, nil
	}
}

// errSkipped marks a line sshd skips, as opposed to one that is malformed:
// it is skipped with a warning even at start.
var errSkipped = errors.New("skipped as sshd skips it")

// parseKeyLine reads one line; a nil key with no error is a blank line or a
// comment.
func parseKeyLine(src string, text []byte) (*authorizedKey, error) {
	if len(text) == 0 || text[0] == '#' {
		return nil, nil
	}
	key, comment, options, _, err := ssh.ParseAuthorizedKey(text)
	if err != nil {
		return nil, fmt.Errorf("not a public key line: %w", err)
	}
	opts, err := parseKeyOptions(src, options)
	if err != nil {
		return nil, err
	}
	opts.Comment = comment
	if opts.principals != nil && !opts.certAuthority {
		// sshd takes the line and refuses every login through it.
		return nil, fmt.Errorf("%w: principals= on a key without cert-authority", errSkipped)
	}
	if _, ok := key.(*ssh.Certificate); ok {
		// sshd compares a certificate written here with neither the key
		// it certifies nor a certificate offered: nothing logs in by it.
		return nil, fmt.Errorf("%w: a certificate, not a key (list its CA with cert-authority instead)", errSkipped)
	}
	return &authorizedKey{key: key, opts: opts.KeyOptions, certAuthority: opts.certAuthority,
		principals: opts.principals, command: opts.command}, nil
}

type keyLineOptions struct {
	KeyOptions
	certAuthority bool
	principals    *string
	command       *string // command="…", which may be empty
}

// sshdFlags are the authorized_keys options sshd takes without a value
// (auth-options.c), each also with a "no-" prefix except where noted; the
// ones sshvpn acts on are handled before this list is consulted.
var sshdFlags = map[string]bool{
	"agent-forwarding": true, "port-forwarding": true, "pty": true, "user-rc": true,
	"x11-forwarding": true, "no-agent-forwarding": true, "no-port-forwarding": true,
	"no-pty": true, "no-user-rc": true, "no-x11-forwarding": true, "no-touch-required": true,
}

// sshdValued are the options sshd takes with a quoted value that concern
// no tunnel.
var sshdValued = map[string]bool{"permitlisten": true}

// parseKeyOptions reads the options sshvpn acts on and checks the others
// are ones sshd knows: sshd skips a line with an option it does not know,
// so a typo (form= for from=) must not quietly drop a restriction here.
func parseKeyOptions(src string, options []string) (keyLineOptions, error) {
	o := keyLineOptions{KeyOptions: KeyOptions{Source: src}}
	for _, opt := range options {
		name, raw, valued := strings.Cut(opt, "=")
		lname := strings.ToLower(name)
		value := func() (string, error) {
			v, ok := dequote(raw)
			if !ok {
				return "", fmt.Errorf("option %s: value must be in double quotes", name)
			}
			return v, nil
		}
		var err error
		switch {
		case lname == "restrict" && !valued:
			o.Restrict = true
			o.NoPortForwarding = true
		case lname == "no-port-forwarding" && !valued:
			o.NoPortForwarding = true
		case lname == "port-forwarding" && !valued:
			o.NoPortForwarding = false
		case lname == "permitopen" && valued:
			var v string
			if v, err = value(); err == nil {
				err = checkPermitOpen(v)
				o.PermitOpen = append(o.PermitOpen, v)
			}
		case lname == "cert-authority" && !valued:
			o.certAuthority = true
		case lname == "verify-required" && !valued:
			// A FIDO key's user verification is not checked here: taking
			// the key would ignore the requirement.
			return o, fmt.Errorf("%w: verify-required (FIDO user verification) is not supported", errSkipped)
		case lname == "tunnel" && valued:
			var v string
			if v, err = value(); err == nil {
				var u uint32
				if u, err = parseUnit(v); err != nil {
					err = fmt.Errorf("option tunnel=%q: %w", v, err)
				}
				o.ForceUnit = &u
			}
		case lname == "from" && valued:
			var v string
			if v, err = value(); err == nil && o.From != nil {
				err = errors.New("more than one from= option")
			} else if err == nil {
				o.From = strings.Split(v, ",")
			}
		case lname == "principals" && valued:
			var v string
			if v, err = value(); err == nil && o.principals != nil {
				err = errors.New("more than one principals= option")
			} else if err == nil {
				o.principals = &v
			}
		case lname == "command" && valued:
			var v string
			if v, err = value(); err == nil && o.command != nil {
				err = errors.New("more than one command= option")
			} else if err == nil {
				o.command, o.ForceCommand = &v, v
			}
		case lname == "expiry-time" && valued:
			var v string
			if v, err = value(); err == nil {
				var t time.Time
				if t, err = parseExpiry(v); err != nil {
					err = fmt.Errorf("option expiry-time=%q: %w", v, err)
				} else if o.Expiry.IsZero() || t.Before(o.Expiry) {
					// sshd keeps the earliest.
					o.Expiry = t
				}
			}
		case lname == "environment" && valued:
			var v string
			if v, err = value(); err == nil {
				err = o.environment(v)
			}
		case sshdFlags[lname] && !valued, sshdValued[lname] && valued:
			// sshd's business (commands, forwarding, ptys): no tunnel's.
		default:
			return o, fmt.Errorf("%w: unknown option %q", errSkipped, truncate(opt, 64))
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// environment reads sshvpn's own settings, which ride in environment=
// options because sshd parses every environment="NAME=value" (whether or
// not PermitUserEnvironment lets it set them), so the file stays valid for
// sshd. Other variables are sshd's.
func (o *keyLineOptions) environment(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("option environment=%q: want NAME=value", v)
	}
	if !strings.HasPrefix(name, "SSHVPN_") {
		return nil
	}
	switch name {
	case "SSHVPN_ALLOW", "SSHVPN_DENY":
		for _, r := range strings.Split(value, ",") {
			if r = strings.TrimSpace(r); r == "" {
				return fmt.Errorf("%s=%q: empty rule", name, value)
			}
			o.KeyRules = append(o.KeyRules, relay.KeyRule{Allow: name == "SSHVPN_ALLOW", Rule: r})
		}
		return nil
	case "SSHVPN_ALLOWED_IPS":
		for _, s := range strings.Split(value, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("%s=%q: %w", name, value, err)
			}
			o.AllowedIPs = append(o.AllowedIPs, p.Masked())
		}
		return nil
	}
	// A typo must not drop a setting silently: refuse the line.
	return fmt.Errorf("%w: unknown sshvpn setting %s (want SSHVPN_ALLOWED_IPS, SSHVPN_ALLOW or SSHVPN_DENY)", errSkipped, name)
}

// checkPermitOpen refuses a permitopen value sshd would refuse: host:port,
// the host in brackets when it holds colons, * for any host or port.
func checkPermitOpen(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err == nil && host == "" {
		err = errors.New("missing host")
	}
	if err == nil && port != "*" {
		if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || n == 0 {
			err = fmt.Errorf("bad port %q", port)
		}
	}
	if err != nil {
		return fmt.Errorf("option permitopen=%q: %w (want host:port, * for any)", v, err)
	}
	return nil
}

// PermitsOpen reports whether the key's permitopen options let a
// direct-tcpip channel name host:port. Hosts are compared byte for byte, as
// sshd compares them (channels.c open_match): "LOCALHOST" is not
// "localhost", and a name is not its address.
func (o *KeyOptions) PermitsOpen(host string, port uint16) bool {
	if len(o.PermitOpen) == 0 {
		return true
	}
	for _, v := range o.PermitOpen {
		h, p, _ := net.SplitHostPort(v)
		if (h == "*" || h == host) && (p == "*" || p == strconv.Itoa(int(port))) {
			return true
		}
	}
	return false
}

// dequote takes the quotes off an option value as OpenSSH does: the value
// must be in double quotes, and only \" is an escape.
func dequote(v string) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	return strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`), true
}

// parseExpiry reads an expiry-time: YYYYMMDD or YYYYMMDDHHMM[SS], local time
// unless it ends in Z (sshd(8)).
func parseExpiry(v string) (time.Time, error) {
	loc := time.Local
	if strings.HasSuffix(v, "Z") || strings.HasSuffix(v, "z") {
		v, loc = v[:len(v)-1], time.UTC
	}
	for _, layout := range []string{"20060102", "200601021504", "20060102150405"} {
		if len(v) == len(layout) {
			return time.ParseInLocation(layout, v, loc)
		}
	}
	return time.Time{}, errors.New("want YYYYMMDD or YYYYMMDDHHMM[SS], optionally ending in Z")
}

// parseUnit reads a tunnel unit as OpenSSH does: a number or "any".
func parseUnit(s string) (uint32, error) {
	if s == "any" {
		return relay.AnyUnit, nil
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil || uint32(n) == relay.AnyUnit {
		return 0, fmt.Errorf("want a unit number or any")
	}
	return uint32(n), nil
}

// Lookup finds the line that lets key log in as user from remote, as sshd
// does: for a plain key, a line holding it; for a user certificate, a
// cert-authority line holding its CA (see lookupCert). Each candidate line
// is checked against the client's address (from=) and the time
// (expiry-time=), and like sshd Lookup goes on to the next candidate when
// one does not fit. user matters only to certificates, whose principals
// must name it unless the line says principals=. The error says why the
// key was refused; it goes to the log, the client only learns
// "Permission denied".
func (a *AuthorizedKeys) Lookup(key ssh.PublicKey, user string, remote net.Addr) (*KeyOptions, error) {
	kf, err := a.current()
	if err != nil {
		return nil, err
	}
	keys := kf.keys
	if cert, ok := key.(*ssh.Certificate); ok {
		return a.lookupCert(keys, cert, user, remote, time.Now())
	}
	want := key.Marshal()
	why := refused(refusedUnknownKey, fmt.Errorf("key %s is not in %s", ssh.FingerprintSHA256(key), a.path))
	if len(keys) == 0 {
		why = refused(refusedUnknownKey, fmt.Errorf("key %s refused: %s", ssh.FingerprintSHA256(key), kf.noKeys(a.path)))
	}
	for i := range keys {
		if keys[i].certAuthority || !bytes.Equal(keys[i].key.Marshal(), want) {
			continue
		}
		o := keys[i].opts
		if err := o.check(remote, time.Now()); err != nil {
			why = fmt.Errorf("key %s %w", ssh.FingerprintSHA256(key), err)
			continue
		}
		return &o, nil
	}
	return nil, why
}

// noKeys says why a file gave no key: it is missing or empty, or every
// line in it was skipped, and then which and why, so that an operator
// who wrote keys is not told there are none.
func (kf keyFile) noKeys(path string) string {
	if len(kf.skipped) == 0 {
		return path + " is missing or empty"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s has no usable key", path)
	sep := ":"
	for i, le := range kf.skipped {
		if i == maxNamed {
			fmt.Fprintf(&b, ", and %d more", len(kf.skipped)-i)
			break
		}
		fmt.Fprintf(&b, "%s line %d: %v", sep, le.Line, le.Err)
		sep = ","
	}
	return b.String()
}

// maxNamed bounds the skipped lines a refusal names: the log line stays
// readable and --check lists them all.
const maxNamed = 5

// check applies the line's own conditions on a login: from= and
// expiry-time=. The error reads after the key's name.
func (o *KeyOptions) check(remote net.Addr, now time.Time) error {
	switch {
	case o.From != nil && !matchFrom(o.From, remote):
		return refused(refusedFrom, fmt.Errorf("at %s is not allowed from %s (from=%q)", o.Source, remote, strings.Join(o.From, ",")))
	case !o.Expiry.IsZero() && now.After(o.Expiry):
		return refused(refusedExpired, fmt.Errorf("at %s expired at %s", o.Source, o.Expiry))
	}
	return nil
}

// identity is the key that stands for a client: the key a certificate
// certifies, so that a renewed certificate is the same client (its
// tunnel count, its address); a plain key itself.
func identity(key ssh.PublicKey) ssh.PublicKey {
	if cert, ok := key.(*ssh.Certificate); ok {
		return cert.Key
	}
	return key
}

// logLogin says what the gateway takes from a login's options beyond what
// it enforces: the certificate it came with, and a forced command, which
// sshvpn does not run (sshd would run it instead of the client's command,
// and would still open tunnels and forwards, as sshvpn does).
func (o *KeyOptions) logLogin(log *slog.Logger) {
	if o.Certificate != "" {
		log.Info("certificate accepted", "certificate", o.Certificate, "line", o.Source)
	}
	if o.ForceCommand != "" {
		log.Warn("forced command ignored: sshvpn runs no commands; tunnels and forwarding stay as the options allow",
			"command", truncate(o.ForceCommand, 64), "line", o.Source)
	}
}

// matchFrom applies an OpenSSH pattern list to the client's IP address:
// a negated match refuses, otherwise one positive match is needed. Patterns
// are wildcards (* and ?) or CIDR prefixes. Host names are not resolved.
func matchFrom(patterns []string, remote net.Addr) bool {
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	matched := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if !matchAddr(p, ip) {
			continue
		}
		if neg {
			return false
		}
		matched = true
	}
	return matched
}

func matchAddr(pattern string, ip netip.Addr) bool {
	if pfx, err := netip.ParsePrefix(pattern); err == nil {
		return pfx.Contains(ip)
	}
	ok, err := path.Match(pattern, ip.String())
	return err == nil && ok
}

// truncate shortens what a peer or a file supplied before it is logged or
// echoed, so a 40 KiB name cannot fill a log line or a refusal.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("…(%d bytes)", len(s))
}

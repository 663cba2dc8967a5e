package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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
}

type authorizedKey struct {
	key  ssh.PublicKey
	opts KeyOptions
}

// AuthorizedKeys is an authorized_keys file, read again on every login as
// sshd does: a key removed from the file is refused at once, whatever its
// timestamps say.
type AuthorizedKeys struct {
	path string
	log  *slog.Logger

	mu   sync.Mutex
	keys []authorizedKey
}

// LoadAuthorizedKeys reads path. At start every line that is not a key,
// or whose options sshvpn honours are malformed, is an error naming the file
// and line; later reads skip such lines with a warning, as sshd does, so an
// edit cannot lock everyone out. A missing file is not an error: the gateway
// refuses every login (Len is 0) until it exists.
func LoadAuthorizedKeys(path string, log *slog.Logger) (*AuthorizedKeys, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &AuthorizedKeys{path: path, log: log}
	keys, err := a.read(true)
	if err != nil {
		return nil, err
	}
	a.keys = keys
	return a, nil
}

// Len is the number of keys at the last read.
func (a *AuthorizedKeys) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.keys)
}

func (a *AuthorizedKeys) read(strict bool) ([]authorizedKey, error) {
	data, err := os.ReadFile(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("authorized keys: %w", err)
	}
	var keys []authorizedKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		k, err := parseKeyLine(fmt.Sprintf("%s:%d", a.path, line), text)
		switch {
		case err != nil && strict:
			return nil, err
		case err != nil:
			a.log.Warn("authorized_keys line skipped", "err", err)
		case k != nil:
			keys = append(keys, *k)
		}
	}
	return keys, sc.Err()
}

// parseKeyLine reads one key line; a nil key with no error is a line that
// is valid but grants nothing here.
func parseKeyLine(src string, text []byte) (*authorizedKey, error) {
	key, _, options, _, err := ssh.ParseAuthorizedKey(text)
	if err != nil {
		return nil, fmt.Errorf("%s: not a public key line: %w", src, err)
	}
	opts, err := parseKeyOptions(src, options)
	if err != nil {
		return nil, err
	}
	if opts.certAuthority {
		return nil, fmt.Errorf("%s: cert-authority keys are not supported: certificates are not accepted", src)
	}
	return &authorizedKey{key: key, opts: opts.KeyOptions}, nil
}

type keyLineOptions struct {
	KeyOptions
	certAuthority bool
}

// parseKeyOptions reads the options sshvpn acts on and leaves the others
// (command=, no-pty, …) alone, so a file sshd takes is taken here too.
func parseKeyOptions(src string, options []string) (keyLineOptions, error) {
	o := keyLineOptions{KeyOptions: KeyOptions{Source: src}}
	for _, opt := range options {
		name, raw, _ := strings.Cut(opt, "=")
		value := func() (string, error) {
			v, ok := dequote(raw)
			if !ok {
				return "", fmt.Errorf("%s: option %s: value must be in double quotes", src, name)
			}
			return v, nil
		}
		var err error
		switch strings.ToLower(name) {
		case "restrict":
			o.Restrict = true
		case "cert-authority":
			o.certAuthority = true
		case "tunnel":
			var v string
			if v, err = value(); err == nil {
				var u uint32
				if u, err = parseUnit(v); err != nil {
					err = fmt.Errorf("%s: option tunnel=%q: %w", src, v, err)
				}
				o.ForceUnit = &u
			}
		case "from":
			var v string
			if v, err = value(); err == nil {
				o.From = strings.Split(v, ",")
			}
		case "expiry-time":
			var v string
			if v, err = value(); err == nil {
				if o.Expiry, err = parseExpiry(v); err != nil {
					err = fmt.Errorf("%s: option expiry-time=%q: %w", src, v, err)
				}
			}
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
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

// Lookup finds key and checks its options against the client: its
// address (from=) and the time (expiry-time=). Like sshd it goes on to the
// next line holding the same key when one does not fit. The error says why
// a key was refused; it goes to the log, the client only learns
// "Permission denied".
func (a *AuthorizedKeys) Lookup(key ssh.PublicKey, remote net.Addr) (*KeyOptions, error) {
	keys, err := a.read(false)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.keys = keys
	a.mu.Unlock()
	want := key.Marshal()
	why := fmt.Errorf("key %s is not in %s", ssh.FingerprintSHA256(key), a.path)
	if len(keys) == 0 {
		why = fmt.Errorf("key %s refused: %s is missing or empty", ssh.FingerprintSHA256(key), a.path)
	}
	for i := range keys {
		if !bytes.Equal(keys[i].key.Marshal(), want) {
			continue
		}
		o := keys[i].opts
		switch {
		case o.From != nil && !matchFrom(o.From, remote):
			why = fmt.Errorf("key %s at %s is not allowed from %s (from=%q)",
				ssh.FingerprintSHA256(key), o.Source, remote, strings.Join(o.From, ","))
		case !o.Expiry.IsZero() && time.Now().After(o.Expiry):
			why = fmt.Errorf("key %s at %s expired at %s", ssh.FingerprintSHA256(key), o.Source, o.Expiry)
		default:
			return &o, nil
		}
	}
	return nil, why
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

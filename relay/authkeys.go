package relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// KeyOptions are the authorized_keys options sshvpn honours for one key.
type KeyOptions struct {
	Source    string   // "file:line", for messages
	Restrict  bool     // restrict: no tunnels (OpenSSH ≥ 10.5 semantics)
	ForceUnit *uint32  // tunnel="N" or tunnel="any"
	From      []string // from="pattern-list", matched against the client's address
}

type authorizedKey struct {
	key  ssh.PublicKey
	opts KeyOptions
}

// AuthorizedKeys is an authorized_keys file, re-read when it changes, as
// sshd re-reads it on every login.
type AuthorizedKeys struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	keys    []authorizedKey
}

// LoadAuthorizedKeys reads path. Every line that is not a key, with its
// options, is an error naming the file and line. A missing file is not an
// error: the gateway starts refusing every login (Len is 0) and picks the
// file up once it exists, as sshd does.
func LoadAuthorizedKeys(path string) (*AuthorizedKeys, error) {
	a := &AuthorizedKeys{path: path}
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Len is the number of keys.
func (a *AuthorizedKeys) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.keys)
}

func (a *AuthorizedKeys) reload() error {
	fi, err := os.Stat(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		a.keys, a.modTime = nil, time.Time{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("authorized keys: %w", err)
	}
	if fi.ModTime().Equal(a.modTime) && a.keys != nil {
		return nil
	}
	data, err := os.ReadFile(a.path)
	if err != nil {
		return fmt.Errorf("authorized keys: %w", err)
	}
	keys, err := parseAuthorizedKeys(a.path, data)
	if err != nil {
		return err
	}
	a.keys, a.modTime = keys, fi.ModTime()
	return nil
}

func parseAuthorizedKeys(file string, data []byte) ([]authorizedKey, error) {
	keys := []authorizedKey{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		src := fmt.Sprintf("%s:%d", file, line)
		key, _, options, _, err := ssh.ParseAuthorizedKey(text)
		if err != nil {
			return nil, fmt.Errorf("%s: not a public key line: %w", src, err)
		}
		opts, err := parseKeyOptions(src, options)
		if err != nil {
			return nil, err
		}
		keys = append(keys, authorizedKey{key: key, opts: opts})
	}
	return keys, sc.Err()
}

func parseKeyOptions(src string, options []string) (KeyOptions, error) {
	o := KeyOptions{Source: src}
	for _, opt := range options {
		name, value, hasValue := strings.Cut(opt, "=")
		if hasValue {
			uq, err := strconv.Unquote(value)
			if err != nil {
				return o, fmt.Errorf("%s: option %s: value must be in double quotes", src, name)
			}
			value = uq
		}
		switch strings.ToLower(name) {
		case "restrict":
			o.Restrict = true
		case "tunnel":
			u, err := parseUnit(value)
			if err != nil {
				return o, fmt.Errorf("%s: option tunnel=%q: %w", src, value, err)
			}
			o.ForceUnit = &u
		case "from":
			o.From = strings.Split(value, ",")
		}
	}
	return o, nil
}

// parseUnit reads a tunnel unit as OpenSSH does: a number or "any".
func parseUnit(s string) (uint32, error) {
	if s == "any" {
		return AnyUnit, nil
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil || uint32(n) == AnyUnit {
		return 0, fmt.Errorf("want a unit number or any")
	}
	return uint32(n), nil
}

// Lookup finds key and checks its from= option against the client's
// address. The error says why a key was refused; it goes to the log, the
// client only learns "Permission denied".
func (a *AuthorizedKeys) Lookup(key ssh.PublicKey, remote net.Addr) (*KeyOptions, error) {
	a.mu.Lock()
	if err := a.reload(); err != nil {
		a.mu.Unlock()
		return nil, err
	}
	keys := a.keys
	a.mu.Unlock()
	want := key.Marshal()
	for i := range keys {
		if !bytes.Equal(keys[i].key.Marshal(), want) {
			continue
		}
		o := keys[i].opts
		if o.From != nil && !matchFrom(o.From, remote) {
			return nil, fmt.Errorf("key %s at %s is not allowed from %s (from=%q)",
				ssh.FingerprintSHA256(key), o.Source, remote, strings.Join(o.From, ","))
		}
		return &o, nil
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key %s refused: %s is missing or empty", ssh.FingerprintSHA256(key), a.path)
	}
	return nil, fmt.Errorf("key %s is not in %s", ssh.FingerprintSHA256(key), a.path)
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

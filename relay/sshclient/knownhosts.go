package sshclient

// known_hosts as OpenSSH's ssh reads it: hostfile.c (hostkeys_foreach_file,
// check_markers, match_maybe_hashed, check_hostkeys_by_key_or_type,
// write_host_entry) and match.c (match_pattern, match_pattern_list,
// match_hostname), openssh-portable 9.2 to 10.x. x/crypto's knownhosts
// package is not used: it lets a pattern without a port match only port 22,
// where ssh matches the pattern against the text "[host]:port", so
// "@cert-authority * ..." failed every host on another port.

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// hostMarker is the optional first field of a known_hosts line.
type hostMarker int

const (
	markerNone    hostMarker = iota
	markerCA                 // @cert-authority: the key signs host certificates
	markerRevoked            // @revoked: the key must never be accepted
)

// knownHostLine is one key line of a known_hosts file.
type knownHostLine struct {
	marker hostMarker
	hosts  string // comma-separated patterns, or one hashed name |1|salt|hash
	key    ssh.PublicKey
}

// errNoKeyLine is parseKnownHostsLine's answer for blank and comment lines.
var errNoKeyLine = errors.New("blank or comment line")

// parseKnownHostsLine parses one line without its newline. Any error but
// errNoKeyLine names a line ssh skips as invalid ("parse error in hostkeys
// file"); ssh never fails a whole file for one bad line.
func parseKnownHostsLine(line string) (knownHostLine, error) {
	if i := strings.IndexByte(line, 0); i >= 0 {
		line = line[:i] // ssh sees a C string
	}
	cp := trimBlank(line)
	if cp == "" || cp[0] == '#' {
		return knownHostLine{}, errNoKeyLine
	}
	marker, cp, err := parseMarker(cp)
	if err != nil {
		return knownHostLine{}, err
	}
	hosts, rest, _ := cutBlank(cp)
	rest = trimBlank(rest)
	if rest == "" || rest[0] == '#' {
		return knownHostLine{}, errors.New("truncated before key type")
	}
	key, err := parseKnownHostsKey(rest)
	if err != nil {
		return knownHostLine{}, err
	}
	return knownHostLine{marker: marker, hosts: hosts, key: key}, nil
}

// parseMarker is hostfile.c check_markers, quirks included: the marker ends
// at the line's first space (or, when there is none, its first tab).
func parseMarker(cp string) (hostMarker, string, error) {
	m := markerNone
	for strings.HasPrefix(cp, "@") {
		if m != markerNone {
			return 0, "", errors.New("more than one marker")
		}
		sp := strings.IndexByte(cp, ' ')
		if sp < 0 {
			sp = strings.IndexByte(cp, '\t')
		}
		if sp <= 1 || sp >= 32 {
			return 0, "", errors.New("invalid marker")
		}
		switch cp[:sp] {
		case "@cert-authority":
			m = markerCA
		case "@revoked":
			m = markerRevoked
		default:
			return 0, "", fmt.Errorf("unknown marker %q", cp[:sp])
		}
		cp = trimBlank(cp[sp:])
	}
	return m, cp, nil
}

// parseKnownHostsKey is sshkey_read: a key type name, blanks, the base64
// blob; the blob's own type must be the named one. A comment may follow.
func parseKnownHostsKey(s string) (ssh.PublicKey, error) {
	typ, rest, ok := cutBlank(s)
	if rest = trimBlank(rest); !ok || rest == "" {
		return nil, errors.New("no key after the key type")
	}
	b64, _, _ := cutBlank(rest)
	blob, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", typ, err)
	}
	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", typ, err)
	}
	if key.Type() != typ {
		return nil, fmt.Errorf("key type %s names a %s key", typ, key.Type())
	}
	return key, nil
}

// cutBlank splits s at its first space or tab.
func cutBlank(s string) (field, rest string, found bool) {
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

func trimBlank(s string) string { return strings.TrimLeft(s, " \t") }

// matchHostsField is match_maybe_hashed: whether host is named by a line's
// host field. A malformed hashed name is an error (ssh then skips the line).
func matchHostsField(host, hosts string) (bool, error) {
	if strings.HasPrefix(hosts, "|") {
		salt, err := hashSalt(hosts)
		if err != nil {
			return false, err
		}
		return hashHostWithSalt(host, salt) == hosts, nil
	}
	return matchHostname(host, hosts) == 1, nil
}

// hashMagic starts a hashed host name: |1|base64(salt)|base64(HMAC-SHA1).
const hashMagic = "|1|"

// hashSalt is hostfile.c extract_salt.
func hashSalt(hosts string) ([]byte, error) {
	s, ok := strings.CutPrefix(hosts, hashMagic)
	if !ok {
		return nil, errors.New("hashed host: unknown magic")
	}
	b64, _, ok := strings.Cut(s, "|")
	if !ok || b64 == "" || len(b64) > 1024 {
		return nil, errors.New("hashed host: bad salt")
	}
	salt, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(salt) != sha1.Size {
		return nil, errors.New("hashed host: bad salt")
	}
	return salt, nil
}

func hashHostWithSalt(host string, salt []byte) string {
	mac := hmac.New(sha1.New, salt)
	io.WriteString(mac, host)
	return hashMagic + base64.StdEncoding.EncodeToString(salt) + "|" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// hashHost hashes a name for HashKnownHosts, with a fresh salt.
func hashHost(host string) string {
	salt := make([]byte, sha1.Size)
	rand.Read(salt)
	return hashHostWithSalt(host, salt)
}

// matchHostname is match.c match_hostname: host is lower-cased and
// matched against the comma-separated patterns, also lower-cased. It
// returns -1 when a negated pattern (!pattern) matches, 1 when a positive
// one does, 0 otherwise.
func matchHostname(host, patterns string) int {
	host = asciiLower(host)
	got := 0
	for rest := patterns; rest != ""; {
		var sub string
		sub, rest, _ = strings.Cut(rest, ",")
		negated := strings.HasPrefix(sub, "!")
		if negated {
			sub = sub[1:]
		}
		if len(sub) >= 1023 {
			return 0 // ssh's 1 KiB sub-pattern buffer: too long matches nothing
		}
		if matchPattern(host, asciiLower(sub)) {
			if negated {
				return -1
			}
			got = 1
		}
	}
	return got
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// readKnownHosts calls fn for each key line of file, with its line number;
// invalid lines are logged and skipped, as ssh skips them. A missing or
// unreadable file has no lines.
func readKnownHosts(file string, log *slog.Logger, fn func(n int, l knownHostLine)) {
	f, err := os.Open(file)
	if err != nil {
		log.Debug("known_hosts not read", "file", file, "err", err)
		return
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := r.ReadString('\n')
		if line == "" && err != nil {
			return
		}
		l, perr := parseKnownHostsLine(strings.TrimSuffix(line, "\n"))
		switch {
		case perr == nil:
			fn(n, l)
		case !errors.Is(perr, errNoKeyLine):
			log.Debug("known_hosts line skipped", "file", file, "line", n, "err", perr)
		}
	}
}

// hostEntry is a known_hosts line that names the host looked up.
type hostEntry struct {
	file   string
	line   int
	marker hostMarker
	key    ssh.PublicKey
}

// hostKeys are the entries for one name, file by file in order (ssh's
// struct hostkeys).
type hostKeys []hostEntry

// loadHostKeys is load_hostkeys over each file: every line whose host
// field names host.
func loadHostKeys(host string, files []string, log *slog.Logger) hostKeys {
	var hk hostKeys
	for _, file := range files {
		readKnownHosts(file, log, func(n int, l knownHostLine) {
			ok, err := matchHostsField(host, l.hosts)
			if err != nil {
				log.Debug("known_hosts line skipped", "file", file, "line", n, "err", err)
				return
			}
			if ok {
				hk = append(hk, hostEntry{file: file, line: n, marker: l.marker, key: l.key})
			}
		})
	}
	return hk
}

// hostStatus is ssh's HostStatus.
type hostStatus int

const (
	hostOK      hostStatus = iota // known, the key (or its CA) matches
	hostNew                       // nothing known for this key
	hostChanged                   // other keys are known (or other CAs, for a certificate)
	hostRevoked                   // the key, or the certificate's CA, is @revoked
)

// check is check_hostkeys_by_key_or_type for a key: a certificate is
// judged by the @cert-authority entries (does one hold its CA?), a plain
// key by the unmarked ones, and any hit among the @revoked entries wins.
func (hk hostKeys) check(key ssh.PublicKey) (hostStatus, *hostEntry) {
	cert, isCert := key.(*ssh.Certificate)
	want := markerNone
	if isCert {
		want = markerCA
	}
	status, found := hostNew, (*hostEntry)(nil)
	for i := range hk {
		e := &hk[i]
		if e.marker != want {
			continue
		}
		if isCert {
			if equalPublic(cert.SignatureKey, e.key) {
				status, found = hostOK, e
				break
			}
			continue
		}
		if equalKey(key, e.key) {
			status, found = hostOK, e
			break
		}
		status, found = hostChanged, e
	}
	if hk.revoked(key) {
		return hostRevoked, nil
	}
	return status, found
}

// revoked is check_key_not_revoked, inverted.
func (hk hostKeys) revoked(key ssh.PublicKey) bool {
	cert, isCert := key.(*ssh.Certificate)
	for _, e := range hk {
		if e.marker != markerRevoked {
			continue
		}
		if equalPublic(key, e.key) || isCert && equalPublic(cert.SignatureKey, e.key) {
			return true
		}
	}
	return false
}

// hasPlainType is lookup_key_in_hostkeys_by_type: an unmarked, unrevoked
// key of this type (x/crypto's names carry the ECDSA curve) is known.
func (hk hostKeys) hasPlainType(keyType string) bool {
	for _, e := range hk {
		if e.marker == markerNone && e.key.Type() == keyType {
			return !hk.revoked(e.key)
		}
	}
	return false
}

// hasCA is lookup_marker_in_hostkeys(MRK_CA).
func (hk hostKeys) hasCA() bool {
	for _, e := range hk {
		if e.marker == markerCA {
			return true
		}
	}
	return false
}

// plainKey drops a certificate, as sshkey_drop_cert does.
func plainKey(k ssh.PublicKey) ssh.PublicKey {
	if c, ok := k.(*ssh.Certificate); ok {
		return c.Key
	}
	return k
}

// equalPublic is sshkey_equal_public: the same public key, certificates
// or not.
func equalPublic(a, b ssh.PublicKey) bool {
	return bytes.Equal(plainKey(a).Marshal(), plainKey(b).Marshal())
}

// equalKey is sshkey_equal: a certificate equals only the same
// certificate; a plain key equals any key with its public half.
func equalKey(a, b ssh.PublicKey) bool {
	if _, ok := a.(*ssh.Certificate); ok {
		if _, ok := b.(*ssh.Certificate); !ok || !bytes.Equal(a.Marshal(), b.Marshal()) {
			return false
		}
	}
	return equalPublic(a, b)
}

// otherNames lists the known_hosts lines that hold key under names other
// than host (sshconnect.c hostkeys_find_by_key), as "file:line: names".
// home turns a path under it into ~/..., as ssh's try_tilde_unexpand does.
func otherNames(host string, key ssh.PublicKey, files []string, home string, log *slog.Logger) []string {
	if _, ok := key.(*ssh.Certificate); ok {
		return nil
	}
	var names []string
	for _, file := range files {
		shown := file
		if rel, ok := strings.CutPrefix(file, home+"/"); ok && home != "" {
			shown = "~/" + rel
		}
		readKnownHosts(file, log, func(n int, l knownHostLine) {
			if l.marker != markerNone || !equalKey(key, l.key) {
				return
			}
			if ok, err := matchHostsField(host, l.hosts); ok || err != nil {
				return
			}
			name := l.hosts
			if strings.HasPrefix(name, hashMagic) {
				name = "[hashed name]"
			}
			names = append(names, fmt.Sprintf("%s:%d: %s", shown, n, name))
		})
	}
	return names
}

// knownHostsEntry is write_host_entry's line: the host lower-cased (or
// hashed), the key without a comment.
func knownHostsEntry(host string, key ssh.PublicKey, hash bool) string {
	host = asciiLower(host)
	if hash {
		host = hashHost(host)
	}
	return host + " " + strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n") + "\n"
}

// appendKnownHost adds line to file, first ending the file's last line if
// it lacks a newline (as OpenSSH ≥ 9.3 does).
func appendKnownHost(file, line string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

package proxy

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Credentials are the user names and passwords a proxy accepts. The zero
// value accepts nobody; methods are not safe for concurrent use with Add.
type Credentials struct {
	users []credential
}

// credential holds digests, so that comparing them takes the same time
// whatever their lengths.
type credential struct {
	user, pass [sha256.Size]byte
	name       string
}

// errCredential is why Add refuses a pair.
var errCredential = errors.New("credentials")

// Add accepts user with password. Both must be 1 to 255 bytes (RFC 1929's
// limits), and user must not contain ':' (HTTP Basic splits there).
func (c *Credentials) Add(user, password string) error {
	switch {
	case user == "":
		return fmt.Errorf("%w: empty user name", errCredential)
	case password == "":
		return fmt.Errorf("%w: empty password for user %q", errCredential, user)
	case len(user) > 255 || len(password) > 255:
		return fmt.Errorf("%w: user %q: name and password must be at most 255 bytes (RFC 1929)", errCredential, user)
	case strings.Contains(user, ":"):
		return fmt.Errorf("%w: user %q: a name must not contain ':'", errCredential, user)
	}
	for _, u := range c.users {
		if u.name == user {
			return fmt.Errorf("%w: user %q given twice", errCredential, user)
		}
	}
	c.users = append(c.users, credential{user: sha256.Sum256([]byte(user)), pass: sha256.Sum256([]byte(password)), name: user})
	return nil
}

// Valid reports whether user and password match an entry. It compares in
// constant time and always visits every entry, so timing tells neither
// which names exist nor how much of a password was right.
func (c *Credentials) Valid(user, password []byte) bool {
	u, p := sha256.Sum256(user), sha256.Sum256(password)
	ok := 0
	for i := range c.users {
		ok |= subtle.ConstantTimeCompare(u[:], c.users[i].user[:]) & subtle.ConstantTimeCompare(p[:], c.users[i].pass[:])
	}
	return ok == 1
}

// LoadCredentials reads a file of "user:password" lines; blank lines and
// lines starting with '#' are skipped, and the password is everything
// after the first ':'. Like ssh with a private key, it refuses a file that
// its group or others may read or write, and one that belongs to neither
// the user running it nor root.
func LoadCredentials(path string) (*Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("proxy credentials: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("proxy credentials: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("proxy credentials: permissions %04o for %s are too open: it holds passwords; run chmod 600 %s", perm, path, path)
	}
	if err := checkOwner(path, fi); err != nil {
		return nil, err
	}
	c := &Credentials{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSuffix(sc.Text(), "\r")
		if t := strings.TrimSpace(text); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		user, pass, found := strings.Cut(text, ":")
		if !found {
			return nil, fmt.Errorf("%s:%d: want user:password", path, line)
		}
		if err := c.Add(user, pass); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("proxy credentials: read %s: %w", path, err)
	}
	if len(c.users) == 0 {
		return nil, fmt.Errorf("proxy credentials: %s holds no user:password line", path)
	}
	return c, nil
}

package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeCreds(t *testing.T, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func TestLoadCredentials(t *testing.T) {
	p := writeCreds(t, "# proxy users\n\nalice:pa:ss\r\n  # indented comment\nbob:x\n", 0o600)
	c, err := LoadCredentials(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "pa:ss", true}, {"bob", "x", true}, {"alice", "pa", false},
		{"alice", "x", false}, {"carol", "x", false}, {"", "", false}, {"bob", "x ", false},
	} {
		if got := c.Valid([]byte(tc.user), []byte(tc.pass)); got != tc.ok {
			t.Errorf("Valid(%q, %q) = %v, want %v", tc.user, tc.pass, got, tc.ok)
		}
	}
}

func TestLoadCredentialsMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		p := writeCreds(t, "alice:x\n", mode)
		_, err := LoadCredentials(p)
		if err == nil || !strings.Contains(err.Error(), "too open") || !strings.Contains(err.Error(), p) {
			t.Errorf("mode %04o: err %v, want 'permissions ... for FILE are too open'", mode, err)
		}
	}
	if _, err := LoadCredentials(writeCreds(t, "alice:x\n", 0o400)); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestLoadCredentialsMalformed(t *testing.T) {
	long := strings.Repeat("p", 256)
	for _, tc := range []struct{ text, want string }{
		{"alice:x\nno-colon\n", ":2: want user:password"},
		{"# c\n:x\n", ":2: credentials: empty user name"},
		{"alice:\n", ":1: credentials: empty password"},
		{"alice:x\nbob:y\nalice:z\n", `:3: credentials: user "alice" given twice`},
		{"alice:" + long + "\n", ":1: credentials: user \"alice\": name and password must be at most 255"},
		{"# only comments\n\n", "holds no user:password line"},
	} {
		p := writeCreds(t, tc.text, 0o600)
		_, err := LoadCredentials(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want it to contain %q", tc.text, err, tc.want)
		}
	}
}

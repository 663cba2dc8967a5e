package gateway_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay/gateway"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
)

var errSkip = errors.New("skip")

var localhost = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

func keyLine(s ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

// Files and directories another user could write are refused, as sshd's
// StrictModes refuses them, with the path and the reason.
func TestAuthorizedKeysStrictModes(t *testing.T) {
	s := gatewaytest.NewSigner(t)
	for _, tt := range []struct {
		name  string
		setup func(dir, file string) error
		want  string // "" to accept
	}{
		{"private", func(dir, file string) error { return nil }, ""},
		{"group-readable", func(dir, file string) error { return os.Chmod(file, 0o644) }, ""},
		{"world-writable file", func(dir, file string) error { return os.Chmod(file, 0o666) }, "writable by everyone"},
		{"world-writable directory", func(dir, file string) error { return os.Chmod(dir, 0o777) }, "directory " + "DIR" + " is writable by everyone"},
		{"in a root-owned sticky directory like /tmp", func(dir, file string) error {
			if os.Geteuid() != 0 {
				return errSkip
			}
			return os.Chmod(dir, 0o777|os.ModeSticky)
		}, ""},
		{"in a world-writable directory without the sticky bit", func(dir, file string) error { return os.Chmod(dir, 0o777) }, "writable by everyone"},
		{"owned by another user", func(dir, file string) error { return os.Chown(file, 65534, 65534) }, "owned by uid 65534"},
		{"directory owned by another user", func(dir, file string) error { return os.Chown(dir, 65534, 65534) }, "owned by uid 65534"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.name, "owned") && os.Geteuid() != 0 {
				t.Skip("needs root to give a file away")
			}
			dir := filepath.Join(t.TempDir(), "keys")
			os.Mkdir(dir, 0o700)
			file := filepath.Join(dir, "authorized_keys")
			if err := os.WriteFile(file, []byte(keyLine(s)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := tt.setup(dir, file); err == errSkip {
				t.Skip("needs root for a root-owned directory")
			} else if err != nil {
				t.Fatal(err)
			}
			_, err := gateway.LoadAuthorizedKeys(file, slog.New(slog.DiscardHandler))
			want := strings.ReplaceAll(tt.want, "DIR", dir)
			switch {
			case want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Fatalf("LoadAuthorizedKeys = %v, want an error saying %q", err, want)
			}
		})
	}
}

// StrictModes checks every directory above the file, not only its own,
// up to the home directory (itself included) when the file is under it:
// a directory three levels up that another user could write is refused,
// one above the home directory is not looked at.
func TestAuthorizedKeysStrictModesWalk(t *testing.T) {
	s := gatewaytest.NewSigner(t)
	for _, tt := range []struct {
		name  string
		home  string // under the temporary directory; "" leaves HOME alone
		setup func(w, x string) error
		want  string // "" to accept; W and X stand for the directories
	}{
		{"world-writable three levels up", "", func(w, x string) error { return os.Chmod(w, 0o777) }, "directory W is writable by everyone"},
		{"owned by another user three levels up", "", func(w, x string) error { return os.Chown(w, 65534, 65534) }, "directory W is owned by uid 65534"},
		{"world-writable above the home directory", "w/x", func(w, x string) error { return os.Chmod(w, 0o777) }, ""},
		{"world-writable home directory", "w/x", func(w, x string) error { return os.Chmod(x, 0o777) }, "directory X is writable by everyone"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.name, "owned") && os.Geteuid() != 0 {
				t.Skip("needs root to give a directory away")
			}
			base := t.TempDir()
			w, x := filepath.Join(base, "w"), filepath.Join(base, "w", "x")
			dir := filepath.Join(x, "y")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "authorized_keys")
			if err := os.WriteFile(file, []byte(keyLine(s)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.home != "" {
				t.Setenv("HOME", filepath.Join(base, tt.home))
			}
			if err := tt.setup(w, x); err != nil {
				t.Fatal(err)
			}
			_, err := gateway.LoadAuthorizedKeys(file, slog.New(slog.DiscardHandler))
			want := strings.NewReplacer("W", w, "X", x).Replace(tt.want)
			switch {
			case want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Fatalf("LoadAuthorizedKeys = %v, want an error saying %q", err, want)
			}
		})
	}
}

// Lines sshd would skip are skipped, with the file and line, at start as
// later: an unknown option (a typo must not drop a restriction),
// verify-required, an unknown sshvpn setting, a line over 1 MiB.
func TestAuthorizedKeysSkipsWhatSSHDSkips(t *testing.T) {
	bad, good := gatewaytest.NewSigner(t), gatewaytest.NewSigner(t)
	path := filepath.Join(t.TempDir(), "authorized_keys")
	content := strings.Join([]string{
		`form="198.18.0.0/15" ` + keyLine(bad),                          // 1: a typo for from=
		`verify-required ` + keyLine(bad),                               // 2
		`environment="SSHVPN_ALOWED_IPS=198.19.0.0/16" ` + keyLine(bad), // 3
		"# " + strings.Repeat("x", 2<<20),                               // 4: a comment over 1 MiB
		`no-pty,command="echo",environment="LANG=C",environment="SSHVPN_ALLOWED_IPS=198.19.50.0/24,2001:2:50::/48" ` + keyLine(good),
	}, "\n") + "\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	keys, err := gateway.LoadAuthorizedKeys(path, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatalf("lines sshd skips made the file fatal: %v", err)
	}
	if _, err := keys.Lookup(bad.PublicKey(), "root", localhost); err == nil {
		t.Error("a key whose every line sshd skips logged in")
	}
	o, err := keys.Lookup(good.PublicKey(), "root", localhost)
	if err != nil {
		t.Fatalf("the good key after a 2 MiB line: %v", err)
	}
	if len(o.AllowedIPs) != 2 || o.AllowedIPs[0].String() != "198.19.50.0/24" || o.AllowedIPs[1].String() != "2001:2:50::/48" {
		t.Errorf("SSHVPN_ALLOWED_IPS = %v", o.AllowedIPs)
	}
	for i, want := range []string{`unknown option`, "verify-required", "unknown sshvpn setting SSHVPN_ALOWED_IPS", "longer than 1048576"} {
		if !strings.Contains(log.String(), want) || !strings.Contains(log.String(), path+":"+string(rune('1'+i))) {
			t.Errorf("no warning naming line %d and %q:\n%s", i+1, want, log.String())
		}
	}
}

// The file is parsed when it changes, not for every key a client offers.
func TestAuthorizedKeysParsedOncePerChange(t *testing.T) {
	s, other := gatewaytest.NewSigner(t), gatewaytest.NewSigner(t)
	path := filepath.Join(t.TempDir(), "authorized_keys")
	os.WriteFile(path, []byte(keyLine(s)+"\n"), 0o600)
	keys, err := gateway.LoadAuthorizedKeys(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		keys.Lookup(other.PublicKey(), "root", localhost)
	}
	if n := keys.Reads(); n != 1 {
		t.Errorf("1000 lookups parsed the file %d times, want once", n)
	}
	os.WriteFile(path+".new", []byte(keyLine(s)+"\n"+keyLine(other)+"\n"), 0o600)
	os.Rename(path+".new", path)
	if _, err := keys.Lookup(other.PublicKey(), "root", localhost); err != nil {
		t.Errorf("a key added to the file is refused: %v", err)
	}
	if n := keys.Reads(); n != 2 {
		t.Errorf("parsed %d times after one change, want 2", n)
	}
	if err := keys.Reload(); err != nil || keys.Reads() != 3 {
		t.Errorf("Reload = %v, reads %d", err, keys.Reads())
	}
}

// A host key others may read is refused, as sshd refuses it.
func TestHostKeyTooOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host_key")
	if _, err := gateway.LoadOrCreateHostKey(path, nil); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if _, err := gateway.LoadOrCreateHostKey(path, nil); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Fatalf("a world-readable host key: %v", err)
	}
}

// Only x/crypto's secure ciphers may be offered; unknown and CBC, 3DES
// and RC4 names are refused at start.
func TestCheckCiphers(t *testing.T) {
	for ciphers, want := range map[string]string{
		"aes128-gcm@openssh.com":                   "",
		"chacha20-poly1305@openssh.com,aes256-ctr": "",
		"bogus":                           "unknown cipher",
		"aes128-gcm@openssh.com,3des-cbc": "insecure",
		"aes128-cbc":                      "insecure",
		"arcfour256":                      "insecure",
		"":                                "unknown cipher",
	} {
		err := gateway.CheckCiphers(strings.Split(ciphers, ","))
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("CheckCiphers(%q) = %v, want %q", ciphers, err, want)
		}
	}
}

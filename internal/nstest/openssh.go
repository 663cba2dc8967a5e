package nstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// OpenSSH10Dir is where .ci/openssh10 unpacks OpenSSH 10 from
// bookworm-backports (dpkg -x, not installed).
const OpenSSH10Dir = "/opt/sshvpn-openssh10"

// OpenSSH is one OpenSSH installation the tests run as a real peer.
type OpenSSH struct {
	Version    string // "9.2", "10.0": major.minor from ssh -V; name subtests with it
	Banner     string // the whole first line of ssh -V, e.g. "OpenSSH_10.0p2 Debian-7~bpo12+1, OpenSSL 3.0.19 ..."
	SSH        string // the client
	SSHD       string // the server (absolute: sshd re-executes itself)
	SSHKeygen  string // ssh-keygen
	LibexecDir string // holds sshd-session (and sshd-auth) for an unpacked sshd ≥ 9.8; empty for Debian's 9.2
}

// installs are the OpenSSH generations the project supports: Debian 12's
// 9.2 and 10.0 from bookworm-backports (.ci/openssh10 unpacks it).
var installs = []struct {
	what                   string // and how to get it
	ssh, sshd, keygen, lib string
}{
	{"Debian's OpenSSH (apt-get install openssh-client openssh-server)",
		"/usr/bin/ssh", "/usr/sbin/sshd", "/usr/bin/ssh-keygen", ""},
	{"OpenSSH 10 from bookworm-backports (run: bash .ci/openssh10)",
		OpenSSH10Dir + "/usr/bin/ssh", OpenSSH10Dir + "/usr/sbin/sshd",
		OpenSSH10Dir + "/usr/bin/ssh-keygen", OpenSSH10Dir + "/usr/lib/openssh"},
}

// OpenSSHs returns the OpenSSH installations present: Debian's own (9.2 on
// bookworm) and the 10.0 unpacked in OpenSSH10Dir. A missing one fails the test
// under CI=true; elsewhere it is logged and left out, and the test skips only
// when none is present. Run one subtest per entry, named by Version.
func OpenSSHs(t testing.TB) []OpenSSH {
	t.Helper()
	var found []OpenSSH
	var missing []string
	for _, in := range installs {
		o, err := probeOpenSSH(in.ssh, in.sshd, in.keygen, in.lib)
		if err != nil {
			if underCI() {
				t.Fatalf("CI=true but %s is unusable: %v", in.what, err)
			}
			t.Logf("leaving out %s: %v", in.what, err)
			missing = append(missing, in.what)
			continue
		}
		found = append(found, o)
	}
	if len(found) == 0 {
		skipOrFatal(t, "no OpenSSH found: "+strings.Join(missing, "; "))
	}
	return found
}

var versionRE = regexp.MustCompile(`^OpenSSH_(\d+)\.(\d+)`)

// probeOpenSSH checks that the binaries exist and reads the version.
func probeOpenSSH(ssh, sshd, keygen, lib string) (OpenSSH, error) {
	for _, p := range []string{ssh, sshd, keygen} {
		if _, err := exec.LookPath(p); err != nil {
			return OpenSSH{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, ssh, "-V").CombinedOutput()
	banner, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil {
		return OpenSSH{}, fmt.Errorf("%s -V: %v: %s", ssh, err, banner)
	}
	m := versionRE.FindStringSubmatch(banner)
	if m == nil {
		return OpenSSH{}, fmt.Errorf("%s -V printed %q, want OpenSSH_N.N", ssh, banner)
	}
	o := OpenSSH{Version: m[1] + "." + m[2], Banner: banner, SSH: ssh, SSHD: sshd, SSHKeygen: keygen, LibexecDir: lib}
	if lib != "" && o.AtLeast(9, 8) {
		if _, err := os.Stat(filepath.Join(lib, "sshd-session")); err != nil {
			return OpenSSH{}, fmt.Errorf("sshd %s needs sshd-session: %w", o.Version, err)
		}
	}
	return o, nil
}

// AtLeast reports whether the version is major.minor or newer.
func (o OpenSSH) AtLeast(major, minor int) bool {
	maj, mnr, _ := strings.Cut(o.Version, ".")
	a, _ := strconv.Atoi(maj)
	b, _ := strconv.Atoi(mnr)
	return a > major || a == major && b >= minor
}

// Keygen makes an unencrypted ed25519 key dir/name (and dir/name.pub) with this
// version's ssh-keygen, and returns the private key's path and the public
// key's authorized_keys line.
func (o OpenSSH) Keygen(t testing.TB, dir, name string) (privPath, pubLine string) {
	t.Helper()
	privPath = filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, o.SSHKeygen, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", privPath).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", o.SSHKeygen, err, out)
	}
	pub, err := os.ReadFile(privPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return privPath, strings.TrimSpace(string(pub))
}

// ClientArgs returns the argv of an ssh client that reads no user or system
// configuration, authenticates only with key, never prompts and logs at INFO:
//
//	o.SSH -F /dev/null -i key -o IdentitiesOnly=yes ... extra...
//
// With knownHosts empty, host keys are not checked; otherwise they are checked
// strictly against that file (see SSHD.KnownHosts). Append the destination
// (and a command) through extra, e.g. "-p", "22", "root@198.18.0.1", "true".
func (o OpenSSH) ClientArgs(t testing.TB, key, knownHosts string, extra ...string) []string {
	t.Helper()
	check, file := "no", "/dev/null"
	if knownHosts != "" {
		check, file = "yes", knownHosts
	}
	args := []string{o.SSH, "-F", "/dev/null", "-i", key,
		"-o", "IdentitiesOnly=yes",
		"-o", "StrictHostKeyChecking=" + check,
		"-o", "UserKnownHostsFile=" + file,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10",
		"-o", "LogLevel=INFO",
	}
	return append(args, extra...)
}

package nstest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sshdStartTimeout bounds the wait for a new sshd to accept TCP.
const sshdStartTimeout = 15 * time.Second

// SSHDConfig is what a test chooses about an sshd; StartSSHD fills in the rest.
type SSHDConfig struct {
	// ListenAddr is an IP literal with an optional port (default 22), e.g.
	// "198.18.0.1:22" or "[2001:2::1]:2222". Required.
	ListenAddr string
	// PermitTunnel is sshd's PermitTunnel (yes, point-to-point, ethernet,
	// no); empty leaves sshd's default, no.
	PermitTunnel string
	// AuthorizedKeys is the authorized_keys file's contents (for root).
	AuthorizedKeys string
	// ResolvConf, when set, is the resolv.conf sshd resolves names with
	// (direct-tcpip to a name): bind-mounted over /etc/resolv.conf in a
	// mount namespace of sshd's own, so that a test's names go to a
	// server of the test's and never to the host's.
	ResolvConf string
	// Extra holds more sshd_config lines. They go before the defaults so
	// they win (the first value of a keyword counts in sshd_config), except
	// a "Match" line and everything after it, which go at the end.
	Extra []string
}

// SSHD is an sshd started by StartSSHD.
type SSHD struct {
	*Proc                     // sshd -D -E: its log is sshd's own, at DEBUG1
	Addr       netip.AddrPort // where it listens
	HostKey    string         // public host key line ("ssh-ed25519 AAAA... host")
	KnownHosts string         // a known_hosts file naming Addr with HostKey
	ConfigPath string         // the sshd_config it runs with
}

// StartSSHD writes a host key, an authorized_keys file and an sshd_config into
// a fresh t.TempDir() and runs `sshd -D -E LOG -f CONFIG` inside ns, logging
// at DEBUG1 to its Proc log, until the test ends. It returns once sshd says it
// listens and the address accepts TCP, and fails the test if sshd exits first
// (a bad config, a port in use).
//
// The config: root may log in with a public key only; StrictModes, PAM, the
// pid file, DNS lookups and (≥ 9.8) per-source penalties are off, so repeated
// failing connections in a test are not throttled. An sshd with a LibexecDir
// (≥ 9.8, unpacked outside /usr) gets SshdSessionPath, and SshdAuthPath when
// sshd-auth exists (≥ 10.0), pointing into it.
func (o OpenSSH) StartSSHD(t testing.TB, ns *NS, cfg SSHDConfig) *SSHD {
	t.Helper()
	addr := parseListenAddr(t, cfg.ListenAddr)
	ensurePrivsepDir(t)
	dir := t.TempDir()
	hostKey, hostPub := o.Keygen(t, dir, "ssh_host_ed25519_key")
	authKeys := filepath.Join(dir, "authorized_keys")
	writeFile(t, authKeys, cfg.AuthorizedKeys)
	known := filepath.Join(dir, "known_hosts")
	writeFile(t, known, knownHostsLine(addr, hostPub))
	conf := filepath.Join(dir, "sshd_config")
	writeFile(t, conf, o.sshdConfig(addr, hostKey, authKeys, cfg))

	s := &SSHD{Addr: addr, HostKey: hostPub, KnownHosts: known, ConfigPath: conf}
	// -E, not -e: with -e the session child's debug lines reach the
	// client's stderr, since that child's stderr is the channel.
	logPath := filepath.Join(dir, "sshd.log")
	argv := []string{o.SSHD, "-D", "-E", logPath, "-f", conf}
	if cfg.ResolvConf != "" {
		// exec keeps the PID sshd's, for the Proc that stops it.
		argv = append([]string{"unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" /etc/resolv.conf && shift && exec "$@"`, cfg.ResolvConf, "--"}, argv...)
	}
	s.Proc = ns.StartLogged(t, logPath, argv...)
	dial := addr
	if dial.Addr().IsUnspecified() {
		dial = netip.AddrPortFrom(loopbackFor(dial.Addr()), dial.Port())
	}
	WaitFor(t, sshdStartTimeout, fmt.Sprintf("sshd %s to listen on %v in %s", o.Version, addr, ns.Name), func() bool {
		if s.Exited() {
			t.Fatalf("sshd %s exited (%v) before listening; config %s; log:\n%s", o.Version, s.Wait(0), conf, s.Tail(logTail))
		}
		// sshd logs this once bound; the dial then proves it accepts. The
		// log check keeps a stray listener on the same port from passing.
		if !strings.Contains(s.Log(), "Server listening on ") {
			return false
		}
		c, err := ns.Dial(t, "tcp", dial.String())
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return s
}

// sshdConfig renders the sshd_config.
func (o OpenSSH) sshdConfig(addr netip.AddrPort, hostKey, authKeys string, cfg SSHDConfig) string {
	extra, match := splitMatch(cfg.Extra)
	lines := append([]string{"# written by nstest.StartSSHD"}, extra...)
	lines = append(lines,
		"ListenAddress "+addr.String(),
		"HostKey "+hostKey,
		"AuthorizedKeysFile "+authKeys,
		"PidFile none",
		"StrictModes no",
		"UsePAM no",
		"UseDNS no",
		"PermitRootLogin yes",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PrintMotd no",
		"PrintLastLog no",
		"LogLevel DEBUG1",
	)
	if cfg.PermitTunnel != "" {
		lines = append(lines, "PermitTunnel "+cfg.PermitTunnel)
	}
	if o.AtLeast(9, 8) {
		lines = append(lines, "PerSourcePenalties no")
	}
	if o.LibexecDir != "" {
		lines = append(lines, "SshdSessionPath "+filepath.Join(o.LibexecDir, "sshd-session"))
		if auth := filepath.Join(o.LibexecDir, "sshd-auth"); fileExists(auth) {
			lines = append(lines, "SshdAuthPath "+auth)
		}
	}
	lines = append(lines, match...)
	return strings.Join(lines, "\n") + "\n"
}

// splitMatch splits config lines at the first Match keyword.
func splitMatch(lines []string) (before, match []string) {
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "Match") {
			return lines[:i], lines[i:]
		}
	}
	return lines, nil
}

// parseListenAddr accepts "ip", "ip:port" and "[ip6]:port"; the port
// defaults to 22.
func parseListenAddr(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		t.Fatalf("SSHDConfig.ListenAddr %q: want an IP literal with an optional port", s)
	}
	return netip.AddrPortFrom(a, 22)
}

// knownHostsLine names addr the way ssh looks it up: bare on port 22,
// "[addr]:port" otherwise.
func knownHostsLine(addr netip.AddrPort, pub string) string {
	host := addr.Addr().String()
	if addr.Port() != 22 {
		host = "[" + host + "]:" + fmt.Sprint(addr.Port())
	}
	return host + " " + pub + "\n"
}

// loopbackFor returns the loopback address of a's family.
func loopbackFor(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.IPv6Loopback()
}

// ensurePrivsepDir creates /run/sshd, sshd's privilege separation directory,
// which systemd would make at boot and a container lacks.
func ensurePrivsepDir(t testing.TB) {
	t.Helper()
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshd needs /run/sshd: %v", err)
	}
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

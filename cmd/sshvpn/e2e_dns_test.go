//go:build integration

package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The DNS tests never touch the host's resolver: systemd-resolved runs with
// a system bus of the test's own, in the client's namespace, with its own
// /run/systemd and an empty /etc/resolv.conf in a private mount namespace;
// the clients that may write /etc/resolv.conf run in a mount namespace of
// their own where a temporary file is bind-mounted over it.

// resolvedDir is where .ci/run unpacks systemd-resolved without installing
// it: installing it would take over this machine's /etc/resolv.conf.
const resolvedDir = "/opt/sshvpn-resolved"

// needTool skips the test, or fails it under CI=true, for a missing tool
// that is not looked up on PATH.
func needTool(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s: .ci/run must provide it", why)
	}
	t.Skip(why)
}

// resolvedTools finds systemd-resolved and resolvectl, installed or
// unpacked by .ci/run, and the library directory an unpacked one needs.
func resolvedTools(t *testing.T) (daemon, ctl, libDir string) {
	t.Helper()
	for _, root := range []string{"", resolvedDir} {
		d, c := root+"/lib/systemd/systemd-resolved", root+"/usr/bin/resolvectl"
		if _, err := os.Stat(d); err != nil {
			continue
		}
		if _, err := os.Stat(c); err != nil {
			continue
		}
		lib := root + "/usr/lib/x86_64-linux-gnu/systemd"
		if _, err := os.Stat(lib); root == "" || err != nil {
			lib = ""
		}
		return d, c, lib
	}
	needTool(t, "needs systemd-resolved, installed or unpacked in "+resolvedDir+" (see .ci/run)")
	return
}

// startBus runs a D-Bus system bus of the test's own in ns and returns its
// address, for DBUS_SYSTEM_BUS_ADDRESS. Its socket's directory is open to
// all: resolved runs as nobody.
func startBus(t *testing.T, ns *nstest.NS) string {
	t.Helper()
	daemon := nstest.RequireTool(t, "dbus-daemon")
	dir, err := os.MkdirTemp("", "sshvpn-dbus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "system_bus_socket")
	conf := filepath.Join(dir, "system.conf")
	err = os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+sock+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := ns.Start(t, daemon, "--config-file="+conf, "--nofork", "--nopidfile")
	nstest.WaitFor(t, 10*time.Second, "dbus-daemon listening", func() bool {
		if p.Exited() {
			t.Fatalf("dbus-daemon exited: %s", p.Log())
		}
		_, err := os.Stat(sock)
		return err == nil
	})
	return "unix:path=" + sock
}

// resolved is a systemd-resolved of the test's own.
type resolved struct {
	*nstest.Proc
	ns  *nstest.NS
	env []string // what resolvectl needs: the bus, the libraries
	ctl string
}

// resolvedScript gives resolved an empty /run/systemd, a configuration that
// keeps it to the servers it is told (no fallback servers, none read from
// the host's /etc/resolv.conf, no multicast), and runs it as nobody with
// the capabilities its unit grants.
const resolvedScript = `set -e
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir -p /run/systemd/resolve /run/systemd/resolved.conf.d
chown 65534:65534 /run/systemd/resolve
printf '[Resolve]\nDNS=\nFallbackDNS=\nLLMNR=no\nMulticastDNS=no\nDNSStubListener=no\n' >/run/systemd/resolved.conf.d/test.conf
: >/run/systemd/empty-resolv.conf
mount --bind /run/systemd/empty-resolv.conf /etc/resolv.conf
caps=+net_bind_service,+net_raw,+setpcap
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=$caps --ambient-caps=$caps "$0"
`

// startResolved runs systemd-resolved in ns on the bus and waits until it
// answers.
func startResolved(t *testing.T, ns *nstest.NS, bus string) *resolved {
	t.Helper()
	daemon, ctl, lib := resolvedTools(t)
	nstest.RequireTool(t, "setpriv")
	nstest.RequireTool(t, "unshare")
	env := []string{"DBUS_SYSTEM_BUS_ADDRESS=" + bus}
	if lib != "" {
		env = append(env, "LD_LIBRARY_PATH="+lib)
	}
	args := append([]string{"env"}, env...)
	args = append(args, "SYSTEMD_LOG_LEVEL=debug", "SYSTEMD_LOG_TARGET=console",
		"unshare", "-m", "--propagation", "private", "sh", "-c", resolvedScript, daemon)
	r := &resolved{Proc: ns.Start(t, args...), ns: ns, env: env, ctl: ctl}
	nstest.WaitFor(t, 15*time.Second, "systemd-resolved on the bus", func() bool {
		if r.Exited() {
			t.Fatalf("systemd-resolved exited: %s", r.Log())
		}
		_, err := r.resolvectl("status")
		return err == nil
	})
	return r
}

// resolvectl runs systemd's own client for resolved: the independent
// witness of what sshvpn set.
func (r *resolved) resolvectl(args ...string) (string, error) {
	cmd := r.ns.Cmd(append(append(append([]string{"env"}, r.env...), r.ctl), args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// dnsServer answers every A query on port 53 of ns with lanHost's address
// and records the names it was asked.
type dnsServer struct {
	mu    sync.Mutex
	names []string
}

func startDNS(t *testing.T, ns *nstest.NS) *dnsServer {
	s := &dnsServer{}
	pc := ns.ListenPacket(t, "udp", ":53")
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := s.answer(buf[:n]); reply != nil {
				pc.WriteTo(reply, from)
			}
		}
	}()
	return s
}

// answer is the reply to one query: its question again, and for type A
// one record, lanHost's address.
func (s *dnsServer) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l > 63 || i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	end := i + 5
	s.mu.Lock()
	s.names = append(s.names, strings.ToLower(strings.Join(labels, ".")))
	s.mu.Unlock()
	r := append([]byte{}, q[:end]...)
	binary.BigEndian.PutUint16(r[2:], 0x8580) // a response, authoritative, recursion desired and available
	binary.BigEndian.PutUint32(r[8:], 0)      // no authority or additional records (no EDNS)
	if qtype != 1 {
		binary.BigEndian.PutUint16(r[6:], 0)
		return r
	}
	binary.BigEndian.PutUint16(r[6:], 1)
	r = append(r, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4)
	return append(r, lanHost.Addr().AsSlice()...)
}

func (s *dnsServer) asked(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.names {
		if n == name {
			return true
		}
	}
	return false
}

// An sshvpn gateway's name servers and domains land in a real
// systemd-resolved for the tunnel's link, over D-Bus: routing-only domains
// on a split tunnel, "~." and the default route on a full one. Lookups go
// through the tunnel to the gateway's server accordingly, and everything is
// reverted (RevertLink) when the client ends.
func TestConnectDNSResolved(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	bus := startBus(t, tp.client)
	r := startResolved(t, tp.client, bus)
	srv := startDNS(t, tp.gw)
	priv, pub := tp.key(t, o, "client")
	gw := tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(), "--tun-address", "2001:2:0:3::1/64",
		"--route", lanHost.Masked().String(), "--dns", "198.18.3.1,2001:2:0:3::1",
		"--dns-domain", "corp.example", "--dns-domain", "Lab.Example.")
	connect := func(t *testing.T, extra ...string) *nstest.Proc {
		args := append([]string{"env", "DBUS_SYSTEM_BUS_ADDRESS=" + bus},
			connectArgs(priv, "", append(extra, "-p", "2222", "--state-dir", t.TempDir(), "root@198.18.1.1")...)...)
		c := tp.client.Start(t, args...)
		waitUp(t, c, 1)
		return c
	}
	for _, tc := range []struct {
		name       string
		extra      []string
		domains    string
		defRoute   string
		elsewhere  bool // a name under no domain goes through the tunnel too
		lookupsLog string
	}{
		{"split", nil, "~corp.example ~Lab.Example", "-DefaultRoute", false, "lookups=\"names under corp.example, Lab.Example\""},
		{"full", []string{"--route", "default"}, "~. ~corp.example ~Lab.Example", "+DefaultRoute", true, "lookups=\"every name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connect(t, tc.extra...)
			st, err := r.resolvectl("status", "tun0")
			if err != nil {
				t.Fatalf("resolvectl status tun0: %v\n%s", err, st)
			}
			if out, _ := r.resolvectl("dns"); !strings.Contains(out, "(tun0): 198.18.3.1 2001:2:0:3::1") {
				t.Errorf("resolvectl dns does not list the tunnel's servers:\n%s", out)
			}
			for _, want := range []string{"DNS Servers: 198.18.3.1 2001:2:0:3::1", "DNS Domain: " + tc.domains, tc.defRoute} {
				if !strings.Contains(st, want) {
					t.Errorf("resolvectl status tun0 lacks %q:\n%s", want, st)
				}
			}
			if !strings.Contains(c.Log(), tc.lookupsLog) {
				t.Errorf("the client's log does not say which lookups go through the tunnel (%s):\n%s", tc.lookupsLog, c.Log())
			}
			out, err := r.resolvectl("query", "-4", "--cache=no", "--legend=no", "www.corp.example")
			if err != nil || !strings.Contains(out, lanHost.Addr().String()) || !srv.asked("www.corp.example") {
				t.Errorf("a name under the gateway's domain is not answered by its server through the tunnel: %v\n%s", err, out)
			}
			name := "host-" + tc.name + ".other.test"
			out, err = r.resolvectl("query", "-4", "--cache=no", "--legend=no", name)
			if got := err == nil && srv.asked(name); got != tc.elsewhere {
				t.Errorf("%s answered through the tunnel: %v, want %v (%v)\n%s", name, got, tc.elsewhere, err, out)
			}
			reverts := strings.Count(r.Log(), "member=RevertLink")
			if err := c.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := c.Wait(15 * time.Second); err != nil {
				t.Fatalf("sshvpn connect did not end cleanly on SIGTERM: %v\n%s", err, c.Log())
			}
			if n := strings.Count(r.Log(), "member=RevertLink"); n != reverts+1 {
				t.Errorf("systemd-resolved got %d RevertLink calls on exit, want 1", n-reverts)
			}
			// resolvectl status of a missing link still exits 0.
			for _, what := range []string{"dns", "domain"} {
				out, err := r.resolvectl(what)
				if err != nil || strings.Contains(out, "tun0") || strings.Contains(out, "198.18.3.1") || strings.Contains(out, "corp.example") {
					t.Errorf("after the client ended, resolvectl %s shows the tunnel's (%v):\n%s", what, err, out)
				}
			}
		})
	}
	// A split tunnel to a gateway that names no domains: resolved would
	// make a link without routing domains a default route by itself, so
	// sshvpn must say no, and say what that leaves.
	t.Run("no domains", func(t *testing.T) {
		gw.Signal(syscall.SIGTERM)
		if err := gw.Wait(15 * time.Second); err != nil {
			t.Fatalf("the first gateway did not stop: %v", err)
		}
		tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(), "--route", lanHost.Masked().String(), "--dns", "198.18.3.1")
		c := connect(t)
		st, err := r.resolvectl("status", "tun0")
		if err != nil || !strings.Contains(st, "DNS Servers: 198.18.3.1") || !strings.Contains(st, "-DefaultRoute") || strings.Contains(st, "DNS Domain") {
			t.Errorf("resolvectl status tun0 (%v), want the server, -DefaultRoute and no domain:\n%s", err, st)
		}
		if !strings.Contains(c.Log(), "sends them no lookups") {
			t.Errorf("the client does not say that the servers get no lookups:\n%s", c.Log())
		}
		out, err := r.resolvectl("query", "-4", "--cache=no", "--legend=no", "www.nodomain.example")
		if err == nil || srv.asked("www.nodomain.example") {
			t.Errorf("a lookup went through the tunnel to a gateway that names no domains (%v):\n%s", err, out)
		}
	})
}

// resolvConf stands for /etc/resolv.conf in the private mount namespaces
// that wrap makes: a temporary file bind-mounted over it, or a symlink in
// the upper directory of an overlay on /etc. The host's own is never
// touched, and each test checks that.
type resolvConf struct {
	path string // the file or symlink the namespace sees as /etc/resolv.conf
	orig []byte // the file's bytes
	link string // or the symlink's target
	dir  string // the overlay's, for a symlink
}

func newResolvConf(t *testing.T, symlink bool) *resolvConf {
	t.Helper()
	nstest.RequireTool(t, "unshare")
	host, err := os.ReadFile("/etc/resolv.conf")
	if err == nil {
		t.Cleanup(func() {
			if now, _ := os.ReadFile("/etc/resolv.conf"); !bytes.Equal(now, host) {
				t.Errorf("the host's /etc/resolv.conf changed:\n%s", now)
			}
		})
	}
	rc := &resolvConf{dir: t.TempDir()}
	if symlink {
		// systemd-resolved's stub, with resolved not running: the link
		// dangles, and sshvpn must neither follow nor lose it.
		rc.link = "../run/systemd/resolve/stub-resolv.conf"
		for _, d := range []string{"upper", "work"} {
			if err := os.Mkdir(filepath.Join(rc.dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		rc.path = filepath.Join(rc.dir, "upper", "resolv.conf")
		if err := os.Symlink(rc.link, rc.path); err != nil {
			t.Fatal(err)
		}
		return rc
	}
	// What a host's file holds, with a comment and options that must come
	// back byte for byte, and no final newline.
	rc.path = filepath.Join(rc.dir, "resolv.conf")
	rc.orig = []byte("# the host's own\nnameserver 198.18.9.53\nsearch home.example\noptions edns0 trust-ad")
	if err := os.WriteFile(rc.path, rc.orig, 0o644); err != nil {
		t.Fatal(err)
	}
	return rc
}

// wrap runs args in a private mount namespace that sees rc as
// /etc/resolv.conf. unshare and sh exec in place: the PID is args[0]'s.
func (rc *resolvConf) wrap(args ...string) []string {
	script, arg := `mount --bind "$0" /etc/resolv.conf && exec "$@"`, rc.path
	if rc.link != "" {
		script = `mount -t overlay overlay -o "lowerdir=/etc,upperdir=$0/upper,workdir=$0/work" /etc && exec "$@"`
		arg = rc.dir
	}
	return append([]string{"unshare", "-m", "--propagation", "private", "sh", "-c", script, arg}, args...)
}

// check fails the test unless rc holds want, or (want nil) is as it was:
// the same bytes, or the same symlink.
func (rc *resolvConf) check(t *testing.T, when string, want []byte) {
	t.Helper()
	fi, err := os.Lstat(rc.path)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	if want == nil && rc.link != "" {
		if target, err := os.Readlink(rc.path); err != nil || target != rc.link {
			t.Errorf("%s, /etc/resolv.conf is not the symlink to %s again: %v, %q (%v)", when, rc.link, fi.Mode(), target, err)
		}
		return
	}
	if want == nil {
		want = rc.orig
	}
	got, err := os.ReadFile(rc.path)
	if !fi.Mode().IsRegular() || err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s, /etc/resolv.conf is a %v holding\n%q (%v)\nwant\n%q", when, fi.Mode().Type(), got, err, want)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(rc.path), ".resolv.conf.sshvpn-*")); len(left) > 0 {
		t.Errorf("%s, temporary files are left beside /etc/resolv.conf: %v", when, left)
	}
}

// Without a per-link resolver (a system bus without systemd-resolved),
// the client says so once and leaves /etc/resolv.conf alone; with
// --dns-global it writes the gateway's servers and domains there while the
// tunnel is up, and the old file, or symlink, comes back byte for byte when
// the client ends on SIGTERM, or after SIGKILL through sshvpn cleanup.
func TestConnectDNSFallback(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	bus := startBus(t, tp.client)
	priv, pub := tp.key(t, o, "client")
	tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(), "--route", lanHost.Masked().String(),
		"--dns", "198.18.3.1", "--dns-domain", "corp.example")
	want := []byte("# Written by sshvpn (--dns-global) for the tunnel on tun0: the file it replaced\n" +
		"# comes back when the tunnel ends, or with sshvpn cleanup.\n" +
		"nameserver 198.18.3.1\nsearch corp.example\n")
	start := func(t *testing.T, rc *resolvConf, stateDir string, extra ...string) *nstest.Proc {
		args := append([]string{"env", "DBUS_SYSTEM_BUS_ADDRESS=" + bus},
			rc.wrap(connectArgs(priv, "", append(extra, "-p", "2222", "--state-dir", stateDir, "root@198.18.1.1")...)...)...)
		c := tp.client.Start(t, args...)
		waitUp(t, c, 1)
		return c
	}
	stop := func(t *testing.T, c *nstest.Proc, sig os.Signal) {
		if err := c.Signal(sig); err != nil {
			t.Fatal(err)
		}
		err := c.Wait(15 * time.Second)
		if errors.Is(err, nstest.ErrWaitTimeout) || sig != syscall.SIGKILL && err != nil {
			t.Fatalf("sshvpn connect on %v: %v\n%s", sig, err, c.Log())
		}
	}

	t.Run("warn", func(t *testing.T) {
		rc := newResolvConf(t, false)
		c := start(t, rc, t.TempDir())
		rc.check(t, "without --dns-global", nil)
		stop(t, c, syscall.SIGTERM)
		var warns []string
		for _, l := range strings.Split(c.Log(), "\n") {
			if strings.Contains(l, "level=WARN") {
				warns = append(warns, l)
			}
		}
		if len(warns) != 1 || !strings.Contains(warns[0], "no per-link resolver") {
			t.Errorf("want one warning, that the host has no per-link resolver; got %d:\n%s", len(warns), c.Log())
		}
		for _, want := range []string{"--dns-global", "systemd-resolved is not running"} {
			if !strings.Contains(c.Log(), want) {
				t.Errorf("the warning does not say %q:\n%s", want, c.Log())
			}
		}
		rc.check(t, "after the client", nil)
	})

	for _, kind := range []string{"file", "symlink"} {
		for _, sig := range []os.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			t.Run("global/"+kind+"/"+sig.String(), func(t *testing.T) {
				rc := newResolvConf(t, kind == "symlink")
				stateDir := t.TempDir()
				c := start(t, rc, stateDir, "--dns-global")
				rc.check(t, "with --dns-global", want)
				stop(t, c, sig)
				if sig == syscall.SIGKILL {
					rc.check(t, "after SIGKILL", want)
					out, err := tp.client.Cmd(rc.wrap(sshvpnBin, "cleanup", "--state-dir", stateDir)...).CombinedOutput()
					if err != nil {
						t.Fatalf("sshvpn cleanup: %v\n%s", err, out)
					}
				}
				rc.check(t, "after "+sig.String(), nil)
			})
		}
	}
}

// --dns-domain takes what a client accepts, minus the root's dot, and only
// with --dns.
func TestServeDNSDomainFlag(t *testing.T) {
	c, err := parseServe([]string{"--dns", "198.18.3.1", "--dns-domain", "corp.example.", "--dns-domain", "_tcp.lab.example, b.example"}, io.Discard)
	if err != nil || !slices.Equal(c.dnsDomains, []string{"corp.example", "_tcp.lab.example", "b.example"}) {
		t.Fatalf("parseServe = %v, %v", c.dnsDomains, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "kernel", "--dns-domain", "corp.example"}, "--dns-domain needs --dns"},
		{[]string{"--dns", "198.18.3.1", "--dns-domain", "corp example"}, `holds ' '`},
		{[]string{"--dns", "198.18.3.1", "--dns-domain", "."}, "every name is not a domain"},
	} {
		if _, err := parseServe(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseServe(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// A reconnect to a gateway that now announces other name servers applies
// them, and the client's teardown still brings back the host's own file.
func TestConnectDNSFollowsReconnect(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	bus := startBus(t, tp.client)
	priv, pub := tp.key(t, o, "client")
	gwArgs := []string{"--tun-address", tunGW.String(), "--dns-domain", "corp.example"}
	gw := tp.startGateway(t, pub+"\n", append(gwArgs, "--dns", "198.18.3.1")...)
	rc := newResolvConf(t, false)
	c := tp.client.Start(t, append([]string{"env", "DBUS_SYSTEM_BUS_ADDRESS=" + bus},
		rc.wrap(connectArgs(priv, "", "--dns-global", "-p", "2222", "--state-dir", t.TempDir(), "root@198.18.1.1")...)...)...)
	waitUp(t, c, 1)
	head := "# Written by sshvpn (--dns-global) for the tunnel on tun0: the file it replaced\n" +
		"# comes back when the tunnel ends, or with sshvpn cleanup.\n"
	rc.check(t, "first session", []byte(head+"nameserver 198.18.3.1\nsearch corp.example\n"))

	gw.Signal(syscall.SIGTERM)
	if err := gw.Wait(15 * time.Second); err != nil {
		t.Fatalf("gateway: %v", err)
	}
	tp.startGateway(t, pub+"\n", append(gwArgs, "--dns", "198.18.3.53")...)
	waitUp(t, c, 2)
	rc.check(t, "after the reconnect", []byte(head+"nameserver 198.18.3.53\nsearch corp.example\n"))

	c.Signal(syscall.SIGTERM)
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatalf("sshvpn connect: %v\n%s", err, c.Log())
	}
	rc.check(t, "after the client", nil)
}

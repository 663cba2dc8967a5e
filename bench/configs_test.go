//go:build integration

package bench

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// configSpec is one way of carrying the client's traffic to the LAN.
type configSpec struct {
	name  string
	start func(e *env) *path
}

// env is what a configuration starts with.
type env struct {
	tb *softTB
	o  nstest.OpenSSH
	pr profileSpec
	l2 bool // Tunnel=ethernet: taps, and routes via the gateway's address
	// transport is sshvpn connect's --transport value (the sweep's rows);
	// "" passes no --transport.
	transport string
}

// transportArgs are the flags that ask sshvpn connect for e's transport.
func (e *env) transportArgs() []string {
	if e.transport == "" {
		return nil
	}
	return []string{"--transport", e.transport}
}

// path is a started configuration: where iperf3 and ping aim from the
// client host, and how to restart its client.
type path struct {
	*topo
	target string // iperf3 -c TARGET -p PORT, from the client host
	port   string
	// pingTarget is what ping aims at through the tunnel; empty, with
	// noPing saying why, for paths that carry no ICMP.
	pingTarget, noPing string
	// noCPU says why the path has no CPU figures (no tunnel processes).
	noCPU  string
	cipher func() string
	// connect, when set, stops the client that runs (if any), waits for
	// the gateway to let go of it, starts a new one and returns the time
	// to the first packet through. The runner calls it at the start of
	// every round, so the time is a median too. Nil for configurations
	// whose client is set up once (it needs a hand-made step after it
	// connects, or is no tunnel client at all).
	connect func() (time.Duration, error)
	// alive fails when a process of the path died or reconnected.
	alive func() error
}

func (p *path) cpu() cpuSnap { return cpuSnap{client: nsCPU(p.client), gw: nsCPU(p.gw)} }

// configs are every row of the tables, in their order. openssh is the
// reference each ratio divides by.
var configs = []configSpec{
	{"raw", startRaw},
	{"ssh-channel", startSSHChannel},
	{"openssh", func(e *env) *path { return startOpenSSH(e) }},
	{"openssh-aesgcm", func(e *env) *path { return startOpenSSH(e, "-c", "aes128-gcm@openssh.com") }},
	{"sshuttle", startSSHuttle},
	{"ssh→sshvpn-kernel", startSSHToKernel},
	{"ssh→sshvpn-netstack", startSSHToNetstack},
	{"sshvpn→sshd", startConnectToSSHD},
	{"sshvpn⇄sshvpn-kernel", func(e *env) *path { return startConnectToServe(e, false) }},
	{"sshvpn⇄sshvpn-netstack", func(e *env) *path { return startConnectToServe(e, true) }},
	// Layer 2: the same pairings with Tunnel=ethernet, each against
	// openssh-ethernet and against its own point-to-point row
	// (ethernetSuffix, L3Of). One stream each way: with four streams too
	// the harness outgrew make bench's 15 minutes, and the ×4 columns
	// told nothing the ×1 ones did not (0.85–1.17 of their point-to-point
	// rows, against 0.86–1.17 for ×1).
	{"openssh-ethernet", func(e *env) *path { return startOpenSSH(withEthernet(e)) }},
	{"ssh→sshvpn-kernel-ethernet", func(e *env) *path { return startSSHToKernel(withEthernet(e)) }},
	{"ssh→sshvpn-netstack-ethernet", func(e *env) *path { return startSSHToNetstack(withEthernet(e)) }},
	{"sshvpn⇄sshvpn-kernel-ethernet", func(e *env) *path { return startConnectToServe(withEthernet(e), false) }},
	{"sshvpn⇄sshvpn-netstack-ethernet", func(e *env) *path { return startConnectToServe(withEthernet(e), true) }},
	// The rootless client: TCP through a SOCKS5 proxy, one SSH channel per
	// connection (configs_socks_test.go), each against ssh-D and the
	// one into sshvpn against ssh-channel too (SOCKSRow, report.go). One
	// stream each way, as the ethernet rows, but in every profile: how
	// delay and loss treat a channel per flow is what these rows are for.
	{"ssh-D", startSSHDynamic},
	{"sshvpn-D→sshd", func(e *env) *path { return startConnectSOCKS(e, false) }},
	{"sshvpn-D→sshvpn-netstack", func(e *env) *path { return startConnectSOCKS(e, true) }},
}

// oneStreamTests are the only tests the ethernet and SOCKS rows run.
var oneStreamTests = []string{Up1, Down1}

// runs says whether the row named name runs test t.
func runs(name, t string) bool {
	if L3Of(name) != "" || SOCKSRow(name) {
		return slices.Contains(oneStreamTests, t)
	}
	return true
}

// withEthernet is e with its tunnels in ethernet mode.
func withEthernet(e *env) *env {
	c := *e
	c.l2 = true
	return &c
}

// tunnelMode is ssh's -o Tunnel= value for e.
func (e *env) tunnelMode() string {
	if e.l2 {
		return "ethernet"
	}
	return "point-to-point"
}

// localDev is the name of the device a stock ssh -w 0:… attaches to.
func (e *env) localDev() string {
	if e.l2 {
		return "tap0"
	}
	return "tun0"
}

// lanPath is a path whose iperf3 and ping aim at the LAN host itself.
func lanPath(t *topo) *path {
	return &path{topo: t, target: lanHost.Addr().String(), port: iperfPort, pingTarget: lanHost.Addr().String(),
		cipher: func() string { return "" }, alive: func() error { return nil }}
}

// raw: no tunnel; the gateway forwards, the ceiling of the wire (and of
// delaylink in the long-fat-path profiles).
func startRaw(e *env) *path {
	t := newTopo(e.tb, e.pr)
	t.client.AddRoute(e.tb, lanNet, underGW.Addr())
	t.forward(underClient.Masked())
	p := lanPath(t)
	p.noCPU = "no tunnel processes: the kernel forwards"
	return p
}

// ssh-channel: iperf3's connections carried by the sshchannel helper, one
// x/crypto/ssh channel each over one SSH connection, with sshvpn's cipher:
// the ceiling of the SSH transport without any packet handling.
func startSSHChannel(e *env) *path {
	tb := e.tb
	t := newTopo(tb, e.pr)
	srv := t.gw.Start(tb, sshchannelBin, "server", "-listen", underGW.Addr().String()+":"+chanPort)
	waitLine(tb, srv, "ready", "sshchannel server")
	cli := t.client.Start(tb, sshchannelBin, "client", "-server", underGW.Addr().String()+":"+chanPort,
		"-listen", "127.0.0.1:"+iperfPort, "-target", lanHost.Addr().String()+":"+iperfPort)
	waitLine(tb, cli, "ready", "sshchannel client")
	return &path{topo: t, target: "127.0.0.1", port: iperfPort,
		noPing: "carries TCP streams, not IP packets",
		cipher: func() string { return "aes128-gcm@openssh.com" },
		alive:  allAlive(map[string]*nstest.Proc{"sshchannel server": srv, "sshchannel client": cli})}
}

// openssh: the anchor. Stock ssh -w 0:0 into stock sshd with PermitTunnel
// yes; both tun0 made and configured by hand beforehand (ssh and sshd
// attach to them), the gateway forwards and the LAN routes the tunnel
// subnet back, MTU 1500. extra adds ssh flags (-c to force a cipher).
func startOpenSSH(e *env, extra ...string) *path {
	tb, o := e.tb, e.o
	t, key, s := startTunSSHD(e)
	persistentTun(tb, t.client, e.l2, tunClient, lanNet)
	p := lanPath(t)
	p.cipher = func() string { return negotiatedCipher(s.Log()) }
	var ssh *nstest.Proc
	p.alive = func() error { return exitedIf("ssh -w", ssh) }
	p.connect = func() (time.Duration, error) {
		if ssh != nil {
			ssh.Signal(syscall.SIGTERM)
			ssh.Wait(10 * time.Second)
			sshdReleased(t.gw, s)
		}
		args := append([]string{"-o", "Tunnel=" + e.tunnelMode(), "-o", "ExitOnForwardFailure=yes", "-w", "0:0", "-N"}, extra...)
		return timeToFirstPacket(tb, t.client, p.pingTarget, 30*time.Second, func() {
			ssh = t.client.Start(tb, o.ClientArgs(tb, key, s.KnownHosts, append(args, "root@"+underGW.Addr().String())...)...)
		}, p.alive)
	}
	return p
}

// sshuttle: Debian's sshuttle into stock sshd (it runs its server half in
// python3 there), routing the LAN subnet; the client reaches the LAN only
// through it (the gateway does not forward). It carries TCP, not ICMP.
func startSSHuttle(e *env) *path {
	tb, o := e.tb, e.o
	if _, err := exec.LookPath("sshuttle"); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true but sshuttle is not installed: .ci/run must apt-get install it")
		}
		tb.Skipf("sshuttle is not installed (apt-get install sshuttle)")
	}
	t := newTopo(tb, e.pr)
	key, pub := o.Keygen(tb, tb.TempDir(), "id_ed25519")
	s := o.StartSSHD(tb, t.gw, nstest.SSHDConfig{ListenAddr: underGW.Addr().String() + ":" + sshdPort,
		AuthorizedKeys: pub + "\n"})
	// The route makes the LAN's addresses reachable at all, so that
	// connect() gets as far as sshuttle's NAT rule.
	t.client.AddRoute(tb, lanNet, underGW.Addr())
	sshCmd := strings.Join(o.ClientArgs(tb, key, s.KnownHosts), " ")
	p := t.client.Start(tb, "sshuttle", "--method", "nat", "-e", sshCmd, "-r", "root@"+underGW.Addr().String(), lanNet.String())
	waitLine(tb, p, "Connected to server.", "sshuttle")
	lp := lanPath(t)
	lp.pingTarget, lp.noPing = "", "carries TCP (and DNS), not ICMP"
	lp.cipher = func() string { return negotiatedCipher(s.Log()) }
	lp.alive = func() error { return exitedIf("sshuttle", p) }
	return lp
}

// serveArgs is the start of a sshvpn serve command line, files in dir.
func serveArgs(dir string) []string {
	return []string{sshvpnBin, "serve", "--listen", underGW.Addr().String() + ":" + sshvpnPort,
		"--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", filepath.Join(dir, "authorized_keys")}
}

// startKernelServe runs sshvpn serve --backend kernel with NAT to the LAN
// and a route to it for sshvpn clients.
func startKernelServe(tb testing.TB, t *topo, pub string) *nstest.Proc {
	dir := tb.TempDir()
	writeFile(tb, filepath.Join(dir, "authorized_keys"), pub+"\n")
	gw := t.gw.Start(tb, append(serveArgs(dir), "--backend", "kernel", "--state-dir", filepath.Join(dir, "state"),
		"--tun-address", tunGW.String(), "--nat", "--route", lanNet.String())...)
	waitLine(tb, gw, "listening", "sshvpn serve")
	return gw
}

// startNetstackServe runs the rootless gateway as uid 65534, as
// cmd/sshvpn's e2e tests do: files owned by that uid, no capabilities,
// the host's ping sockets opened to it (a per-namespace sysctl) so that
// ICMP echo is forwarded. It dials the LAN with ordinary sockets.
func startNetstackServe(tb testing.TB, t *topo, pub string) *nstest.Proc {
	t.gw.Run(tb, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	dir := nobodyDir(tb)
	writeFile(tb, filepath.Join(dir, "authorized_keys"), pub+"\n")
	// Its DNS forwarder must name nothing outside the benchmark's range.
	writeFile(tb, filepath.Join(dir, "resolv.conf"), "nameserver "+lanHost.Addr().String()+"\n")
	chownNobody(tb, filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "resolv.conf"))
	gw := t.gw.Start(tb, append(asNobody(tb, serveArgs(dir)...), "--resolv-conf", filepath.Join(dir, "resolv.conf"),
		"--subnet", tunGW.Masked().String(), "--subnet", "2001:2:0:3::/64", "--route", lanNet.String())...)
	waitLine(tb, gw, "listening", "rootless sshvpn serve")
	if !strings.Contains(gw.Log(), "backend=netstack") {
		tb.Fatalf("the default backend is not netstack:\n%s", gw.Tail(20))
	}
	return gw
}

// nobodyDir is a fresh directory that uid 65534 owns, for the files of a
// process run asNobody; under /tmp, since a test's TempDir is root's alone.
func nobodyDir(tb testing.TB) string {
	dir, err := os.MkdirTemp("/tmp", "sshvpn-bench-rootless-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	chownNobody(tb, dir)
	return dir
}

// chownNobody gives files to uid 65534.
func chownNobody(tb testing.TB, files ...string) {
	for _, f := range files {
		if err := os.Chown(f, 65534, 65534); err != nil {
			tb.Fatal(err)
		}
	}
}

// asNobody is argv run as uid 65534 with no capabilities: the rootless
// modes are measured as they are meant to run.
func asNobody(tb testing.TB, argv ...string) []string {
	nstest.RequireTool(tb, "setpriv")
	return append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}, argv...)
}

// ssh→sshvpn-kernel: stock ssh -w 0:any into sshvpn serve --backend
// kernel, which NATs to the LAN. The client's tun0 is made and configured
// by hand beforehand (ssh attaches to it), at ssh's MTU of 1500.
func startSSHToKernel(e *env) *path {
	tb, o := e.tb, e.o
	t := newTopo(tb, e.pr)
	key, pub := o.Keygen(tb, tb.TempDir(), "id_ed25519")
	gw := startKernelServe(tb, t, pub)
	persistentTun(tb, t.client, e.l2, tunClient, lanNet)
	p := lanPath(t)
	var ssh *nstest.Proc
	p.cipher = func() string {
		if ssh == nil {
			return ""
		}
		return negotiatedCipher(ssh.Log())
	}
	p.alive = func() error {
		if err := exitedIf("sshvpn serve", gw); err != nil {
			return err
		}
		return exitedIf("ssh -w", ssh)
	}
	p.connect = func() (time.Duration, error) {
		if ssh != nil {
			ssh.Signal(syscall.SIGTERM)
			ssh.Wait(10 * time.Second)
			serveReleased(gw)
		}
		return timeToFirstPacket(tb, t.client, p.pingTarget, 30*time.Second, func() {
			ssh = t.client.Start(tb, o.ClientArgs(tb, key, "", "-v", "-o", "Tunnel="+e.tunnelMode(),
				"-o", "ExitOnForwardFailure=yes", "-w", "0:any", "-p", sshvpnPort, "-N", "root@"+underGW.Addr().String())...)
		}, p.alive)
	}
	return p
}

// dhcpLease runs busybox udhcpc on dev until it has a lease, with a
// script of its own that puts the address on dev and nothing else (the
// default script rewrites /etc/resolv.conf, which a namespace shares
// with the host).
func dhcpLease(tb testing.TB, ns *nstest.NS, dev string) {
	tb.Helper()
	nstest.RequireTool(tb, "udhcpc")
	script := filepath.Join(tb.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] || exit 0\nexec ip addr add \"$ip/$mask\" dev \"$interface\"\n"), 0o700); err != nil {
		tb.Fatal(err)
	}
	ns.Run(tb, "udhcpc", "-i", dev, "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script)
}

var yourAddr = regexp.MustCompile(`your address (198\.18\.3\.\d+/24)`)

// ssh→sshvpn-netstack: stock ssh -w 0:any into the rootless gateway. Run
// with a session (no -N): the gateway's status text names the address it
// gives this client, which the client then puts on its tun0 by hand; on an
// ethernet tunnel the client takes it from the gateway's DHCP instead.
// Both keep ssh's MTU of 1500. That step after connecting is why this row
// has no connect time.
func startSSHToNetstack(e *env) *path {
	tb, o := e.tb, e.o
	t := newTopo(tb, e.pr)
	key, pub := o.Keygen(tb, tb.TempDir(), "id_ed25519")
	gw := startNetstackServe(tb, t, pub)
	ssh := t.client.Start(tb, o.ClientArgs(tb, key, "", "-v", "-o", "Tunnel="+e.tunnelMode(),
		"-o", "ExitOnForwardFailure=yes", "-w", "0:any", "-p", sshvpnPort, "root@"+underGW.Addr().String())...)
	dev := e.localDev()
	nstest.WaitFor(tb, 20*time.Second, "the rootless gateway's status text", func() bool {
		if ssh.Exited() {
			tb.Fatalf("ssh exited: %v\n%s\ngateway:\n%s", ssh.Wait(0), ssh.Tail(20), gw.Tail(20))
		}
		return (e.l2 || yourAddr.MatchString(ssh.Log())) && t.client.Cmd("ip", "link", "show", dev).Run() == nil
	})
	t.client.Run(tb, "ip", "link", "set", dev, "up")
	if e.l2 {
		// What the status text tells a stock ethernet client: its lease
		// from the gateway's DHCP, and the LAN through the router.
		dhcpLease(tb, t.client, dev)
		t.client.Run(tb, "ip", "route", "add", lanNet.String(), "via", tunGW.Addr().String(), "dev", dev)
	} else {
		mine := netip.MustParsePrefix(yourAddr.FindStringSubmatch(ssh.Log())[1])
		t.client.Run(tb, "ip", "addr", "add", mine.String(), "dev", dev)
		t.client.Run(tb, "ip", "route", "add", lanNet.String(), "dev", dev)
	}
	nstest.Ping(tb, t.client, lanHost.Addr().String(), 2)
	p := lanPath(t)
	p.cipher = func() string { return negotiatedCipher(ssh.Log()) }
	p.alive = allAlive(map[string]*nstest.Proc{"sshvpn serve": gw, "ssh -w": ssh})
	return p
}

// connectArgs is sshvpn connect reading no ssh_config and trusting the
// given known_hosts (none: host keys unchecked), its undo journal in
// stateDir.
func connectArgs(stateDir, key, knownHosts string, extra ...string) []string {
	check, file := "no", "/dev/null"
	if knownHosts != "" {
		check, file = "yes", knownHosts
	}
	args := []string{sshvpnBin, "connect", "-F", "none", "-i", key, "--state-dir", stateDir,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=" + check, "-o", "UserKnownHostsFile=" + file,
		"-o", "GlobalKnownHostsFile=/dev/null"}
	return append(args, extra...)
}

// startTunSSHD is the server of the openssh and sshvpn→sshd rows: stock
// sshd with PermitTunnel yes on a gateway whose tun0 is made by hand and
// forwarded to the LAN. It returns the client's key for it.
func startTunSSHD(e *env) (*topo, string, *nstest.SSHD) {
	tb, o := e.tb, e.o
	t := newTopo(tb, e.pr)
	key, pub := o.Keygen(tb, tb.TempDir(), "id_ed25519")
	persistentTun(tb, t.gw, e.l2, tunGW)
	t.forward(tunGW.Masked())
	s := o.StartSSHD(tb, t.gw, nstest.SSHDConfig{ListenAddr: underGW.Addr().String() + ":" + sshdPort,
		PermitTunnel: "yes", AuthorizedKeys: pub + "\n"})
	return t, key, s
}

// sshvpn→sshd: sshvpn connect -w any:0 into stock sshd with PermitTunnel
// yes (the openssh row's server), with --address and --route to the LAN;
// the client makes and configures its own device at its default MTU.
func startConnectToSSHD(e *env) *path {
	tb := e.tb
	t, key, s := startTunSSHD(e)
	p := lanPath(t)
	p.cipher = func() string { return negotiatedCipher(s.Log()) }
	c := connectLoop(tb, p, func() []string {
		return connectArgs(tb.TempDir(), key, s.KnownHosts, append(e.transportArgs(), "-w", "any:0", "--address", tunClient.String(),
			"--route", lanNet.String(), "root@"+underGW.Addr().String())...)
	}, func() { sshdReleased(t.gw, s) })
	p.alive = func() error { return connectAlive(c()) }
	return p
}

// sshvpn⇄sshvpn-kernel and sshvpn⇄sshvpn-netstack: sshvpn connect with no
// addressing flags into sshvpn serve, which hands out the address, the
// MTU (kernel 1500, netstack 16380 by default) and the route to the LAN.
func startConnectToServe(e *env, netstack bool) *path {
	tb, o := e.tb, e.o
	t := newTopo(tb, e.pr)
	key, pub := o.Keygen(tb, tb.TempDir(), "id_ed25519")
	var gw *nstest.Proc
	if netstack {
		gw = startNetstackServe(tb, t, pub)
	} else {
		gw = startKernelServe(tb, t, pub)
	}
	p := lanPath(t)
	p.cipher = func() string { return serveCipher() + inferred }
	c := connectLoop(tb, p, func() []string {
		return connectArgs(tb.TempDir(), key, "", append(e.transportArgs(), "-p", sshvpnPort, "-o", "Tunnel="+e.tunnelMode(), "root@"+underGW.Addr().String())...)
	}, func() { serveReleased(gw) })
	p.alive = func() error {
		if err := exitedIf("sshvpn serve", gw); err != nil {
			return err
		}
		return connectAlive(c())
	}
	return p
}

// connectLoop sets p.connect to (re)start sshvpn connect with argv(): a
// running one is stopped with SIGINT (it removes its device and routes),
// then released waits for the gateway to let go. It returns the current
// client process.
func connectLoop(tb testing.TB, p *path, argv func() []string, released func()) func() *nstest.Proc {
	var c *nstest.Proc
	p.connect = func() (time.Duration, error) {
		if c != nil {
			c.Signal(os.Interrupt)
			if err := c.Wait(15 * time.Second); err != nil {
				return 0, fmt.Errorf("sshvpn connect did not stop on SIGINT: %v\n%s", err, c.Tail(20))
			}
			released()
		}
		return timeToFirstPacket(tb, p.client, p.pingTarget, 30*time.Second, func() {
			c = p.client.Start(tb, argv()...)
		}, func() error { return connectAlive(c) })
	}
	return func() *nstest.Proc { return c }
}

// connectAlive fails when sshvpn connect exited or had to reconnect: a
// reconnect mid-test would measure an outage, not the tunnel.
func connectAlive(c *nstest.Proc) error {
	if err := exitedIf("sshvpn connect", c); err != nil {
		return err
	}
	if c != nil && strings.Contains(c.Log(), "tunnel down; reconnecting") {
		return fmt.Errorf("sshvpn connect reconnected:\n%s", c.Tail(20))
	}
	return nil
}

// sshdReleased waits until only sshd's listener is left on the gateway:
// the old session held tun0, which the next one opens.
func sshdReleased(gw *nstest.NS, s *nstest.SSHD) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		others := 0
		for _, pid := range nsPids(gw) {
			if pid != s.PID() {
				others++
			}
		}
		if others == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveReleased waits until sshvpn serve has logged every tunnel it
// brought up as down again.
func serveReleased(gw *nstest.Proc) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l := gw.Log()
		if strings.Count(l, `msg="tunnel down"`) >= strings.Count(l, `msg="tunnel up"`) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exitedIf fails when p (if started) has exited.
func exitedIf(what string, p *nstest.Proc) error {
	if p != nil && p.Exited() {
		return exitedErr(what, p)
	}
	return nil
}

// allAlive fails when any of procs has exited.
func allAlive(procs map[string]*nstest.Proc) func() error {
	return func() error {
		for what, p := range procs {
			if err := exitedIf(what, p); err != nil {
				return err
			}
		}
		return nil
	}
}

// waitLine waits for line in p's log.
func waitLine(tb testing.TB, p *nstest.Proc, line, what string) {
	tb.Helper()
	nstest.WaitFor(tb, 20*time.Second, what+": "+line, func() bool {
		if p.Exited() {
			tb.Fatalf("%s exited: %v\n%s", what, p.Wait(0), p.Tail(30))
		}
		return strings.Contains(p.Log(), line)
	})
}

func writeFile(tb testing.TB, path, s string) {
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		tb.Fatal(err)
	}
}

var cipherRE = regexp.MustCompile(`kex: server->client cipher: (\S+)`)

// negotiatedCipher reads the cipher from an ssh -v log or an sshd log at
// DEBUG1 (both print the kex line).
func negotiatedCipher(log string) string {
	if m := cipherRE.FindStringSubmatch(log); m != nil {
		return m[1]
	}
	return "?"
}

//go:build integration

package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// sshvpnBin is the binary under test, built once by TestMain.
var sshvpnBin string

func TestMain(m *testing.M) {
	nstest.Main(m, &sshvpnBin, func() {
		// A parent benchmark's b.Log shows only under -v; print the
		// summary here so a plain `make bench` shows it too.
		if !testing.Verbose() && summary.len() > 0 {
			fmt.Print(summary.report())
		}
	})
}

// The topology: client ns —veth 198.18.1.0/24— server ns, and a
// point-to-point tunnel 198.18.3.0/24 through SSH between them.
var (
	underServer = netip.MustParsePrefix("198.18.1.1/24")
	underClient = netip.MustParsePrefix("198.18.1.2/24")
	tunServer   = netip.MustParsePrefix("198.18.3.1/24")
	tunClient   = netip.MustParsePrefix("198.18.3.2/24")
)

const (
	sshvpnPort = "2222"
	mtu        = "1500"
	iperfSecs  = 5
	tunDev     = "tun0"
)

// directions are the sub-benchmarks under each tunnel: iperf3 without and
// with -R.
var directions = []struct {
	name    string
	reverse bool
}{{"upload", false}, {"download", true}}

// row is one measurement, for the table.
type row struct {
	version, tunnel, dir string
	mbps                 float64
	retrans              int64
	serverCPU, clientCPU float64 // % of one CPU used by the tunnel's processes on each side
	hostCPU              float64 // % of all CPUs busy, machine-wide
	srvDrops, cliDrops   int64   // tun0 rx_dropped+tx_dropped on each side
	cipher               string
}

// results collects rows across sub-benchmarks of one BenchmarkTunnel run.
type results struct {
	mu   sync.Mutex
	rows []row
}

// add records x, replacing an earlier row for the same sub-benchmark: the
// framework runs a leaf once with b.N = 1 before -benchtime Nx (N > 1).
func (r *results) add(x row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, y := range r.rows {
		if y.version == x.version && y.tunnel == x.tunnel && y.dir == x.dir {
			r.rows[i] = x
			return
		}
	}
	r.rows = append(r.rows, x)
}

// baseline returns the ssh -w figure for version and direction, if measured.
func (r *results) baseline(version, dir string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.rows) - 1; i >= 0; i-- {
		x := r.rows[i]
		if x.version == version && x.tunnel == "ssh-w" && x.dir == dir {
			return x.mbps, true
		}
	}
	return 0, false
}

func (r *results) table() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %-14s %-9s %8s %8s %8s %9s %9s %9s %9s %6s  %s\n",
		"openssh", "tunnel", "direction", "Mbit/s", "x-ssh-w", "retrans", "srv-drop", "cli-drop", "srv-cpu%", "cli-cpu%", "host%", "cipher")
	for _, x := range r.rows {
		ratio := "-"
		if x.tunnel != "ssh-w" {
			for _, y := range r.rows {
				if y.version == x.version && y.tunnel == "ssh-w" && y.dir == x.dir && y.mbps > 0 {
					ratio = fmt.Sprintf("%.2f", x.mbps/y.mbps)
				}
			}
		}
		fmt.Fprintf(&b, "%-8s %-14s %-9s %8.1f %8s %8d %9d %9d %9.0f %9.0f %6.0f  %s\n",
			x.version, x.tunnel, x.dir, x.mbps, ratio, x.retrans, x.srvDrops, x.cliDrops, x.serverCPU, x.clientCPU, x.hostCPU, x.cipher)
	}
	return b.String()
}

func (r *results) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rows)
}

// report is the header and the table.
func (r *results) report() string {
	return fmt.Sprintf("CPUs: %d (%s)\n"+
		"These machines are shared and noisy, and iperf3 runs on the same CPUs as the tunnel: only the ratios (x-ssh-w) matter.\n"+
		"iperf3 TCP, %ds per direction, MTU %s. cpu%% is of one CPU, summed over the tunnel's processes on that side (not iperf3); host%% is of all CPUs, machine-wide.\n%s",
		runtime.NumCPU(), cpuModel(), iperfSecs, mtu, r.table())
}

// summary collects the rows of the benchmark runs, for TestMain to print.
var summary = &results{}

// tunnel is one established tunnel: the namespaces at both ends, the client
// process carrying it (stock ssh or sshvpn connect), and the process whose
// log names the negotiated cipher.
type tunnel struct {
	server, client *nstest.NS
	proc           *nstest.Proc // the client: ssh -w or sshvpn connect
	kexLog         *nstest.Proc // ssh -v, or sshd at DEBUG1 when the client is sshvpn connect
	// gateway is sshvpn serve, when the server is; its peak RSS is reported.
	gateway *nstest.Proc
	// iperfBind is where iperf3 -s listens (tunServer's address, or the
	// host's loopback that the rootless gateway's own address stands for).
	iperfBind string
}

// BenchmarkTunnel compares iperf3 TCP throughput through stock `ssh -w` into
// sshd with the same through `sshvpn serve` (stock ssh client) and through
// `sshvpn connect` into the same stock sshd, per OpenSSH generation. Run it
// with -benchtime 1x: every b.N iteration is a whole iperf3 run.
func BenchmarkTunnel(b *testing.B) {
	nstest.RequireRoot(b)
	nstest.RequireTool(b, "ip")
	nstest.RequireTool(b, "iperf3")
	res := &results{}
	for _, o := range nstest.OpenSSHs(b) {
		b.Run("OpenSSH_"+o.Version, func(b *testing.B) {
			b.Logf("%s", o.Banner)
			b.Run("ssh-w", func(b *testing.B) {
				tn := startSSHW(b, o)
				measure(b, tn, res, o.Version, "ssh-w")
			})
			b.Run("sshvpn", func(b *testing.B) {
				tn := startSSHVPN(b, o)
				measure(b, tn, res, o.Version, "sshvpn")
			})
			b.Run("sshvpn-connect", func(b *testing.B) {
				tn := startConnect(b, o)
				measure(b, tn, res, o.Version, "sshvpn-connect")
			})
			b.Run("ssh-w-rootless", func(b *testing.B) {
				tn := startRootless(b, o, false)
				measure(b, tn, res, o.Version, "ssh-w→rootless")
			})
			b.Run("sshvpn-connect-rootless", func(b *testing.B) {
				tn := startRootless(b, o, true)
				measure(b, tn, res, o.Version, "connect→rootless")
			})
		})
	}
	b.Logf("%s", res.report())
	summary.mu.Lock()
	summary.rows = append(summary.rows, res.rows...)
	summary.mu.Unlock()
}

// measure runs the upload and download sub-benchmarks through tn.
func measure(b *testing.B, tn *tunnel, res *results, version, name string) {
	cipher := negotiatedCipher(tn.kexLog.Log())
	for _, d := range directions {
		b.Run(d.name, func(b *testing.B) {
			var sum row
			for range b.N {
				r := iperf(b, tn, d.reverse)
				// A reconnect mid-run would measure an outage, not the tunnel.
				if strings.Contains(tn.proc.Log(), "tunnel down; reconnecting") {
					b.Fatalf("the tunnel went down during iperf3:\n%s", tn.proc.Tail(40))
				}
				sum.mbps += r.mbps
				sum.retrans += r.retrans
				sum.serverCPU += r.serverCPU
				sum.clientCPU += r.clientCPU
				sum.hostCPU += r.hostCPU
				sum.srvDrops += r.srvDrops
				sum.cliDrops += r.cliDrops
			}
			n := float64(b.N)
			x := row{version: version, tunnel: name, dir: d.name, cipher: cipher,
				mbps: sum.mbps / n, retrans: sum.retrans / int64(b.N),
				serverCPU: sum.serverCPU / n, clientCPU: sum.clientCPU / n, hostCPU: sum.hostCPU / n,
				srvDrops: sum.srvDrops / int64(b.N), cliDrops: sum.cliDrops / int64(b.N)}
			res.add(x)
			b.ReportMetric(0, "ns/op") // an iperf3 run lasts iperfSecs by construction
			b.ReportMetric(x.mbps, "Mbit/s")
			b.ReportMetric(float64(x.retrans), "retrans")
			if x.mbps > 0 {
				// CPU seconds of the server side's processes per GiB moved.
				b.ReportMetric(x.serverCPU/100/(x.mbps/8589.934592), "srv-cpu-s/GiB")
			}
			if tn.gateway != nil {
				b.ReportMetric(float64(peakRSS(b, tn.gateway)>>20), "gw-peak-MiB")
			}
			if name != "ssh-w" {
				if base, ok := res.baseline(version, d.name); ok && base > 0 {
					b.ReportMetric(x.mbps/base, "x-ssh-w")
				} else {
					b.Logf("no ssh-w figure for OpenSSH %s %s in this run: no ratio", version, d.name)
				}
			}
		})
	}
}

// pair makes the client and server namespaces and the veth between them.
func pair(b *testing.B) (server, client *nstest.NS) {
	b.Helper()
	server, client = nstest.New(b), nstest.New(b)
	nstest.Link(b, client, underClient, server, underServer)
	return server, client
}

// startSSHW is the baseline: stock sshd with PermitTunnel yes and stock
// ssh -w 0:0; both tun0 devices are configured by hand.
func startSSHW(b *testing.B, o nstest.OpenSSH) *tunnel {
	b.Helper()
	server, client := pair(b)
	key, pub := o.Keygen(b, b.TempDir(), "id_ed25519")
	s := o.StartSSHD(b, server, nstest.SSHDConfig{
		ListenAddr:     underServer.Addr().String() + ":22",
		PermitTunnel:   "yes",
		AuthorizedKeys: pub + "\n",
	})
	ssh := client.Start(b, o.ClientArgs(b, key, s.KnownHosts, "-v",
		"-o", "Tunnel=point-to-point", "-o", "ExitOnForwardFailure=yes",
		"-w", "0:0", "-N", "root@"+underServer.Addr().String())...)
	// sshd creates its tun0 once the client's tunnel channel opens.
	nstest.WaitFor(b, 15*time.Second, "tun0 on both ends of ssh -w", func() bool {
		if ssh.Exited() {
			b.Fatalf("ssh -w exited: %v\n%s\nsshd:\n%s", ssh.Wait(0), ssh.Log(), s.Tail(40))
		}
		return hasDev(server, tunDev) && hasDev(client, tunDev)
	})
	upTun(b, server, tunServer)
	upTun(b, client, tunClient)
	tn := &tunnel{server: server, client: client, proc: ssh, kexLog: ssh}
	nstest.Ping(b, client, tunServer.Addr().String(), 2)
	return tn
}

// startSSHVPN runs sshvpn serve (kernel backend, it configures its tun0) and
// the same stock ssh client with -w 0:any; the client's tun0 is configured by
// hand.
func startSSHVPN(b *testing.B, o nstest.OpenSSH) *tunnel {
	b.Helper()
	server, client := pair(b)
	key, pub := o.Keygen(b, b.TempDir(), "id_ed25519")
	dir := b.TempDir()
	keys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keys, []byte(pub+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	gw := server.Start(b, sshvpnBin, "serve",
		"--listen", underServer.Addr().String()+":"+sshvpnPort,
		"--host-key", filepath.Join(dir, "host_key"),
		"--authorized-keys", keys,
		"--backend", "kernel",
		"--mtu", mtu,
		"--tun-address", tunServer.String())
	nstest.WaitFor(b, 10*time.Second, "sshvpn serve listening", func() bool {
		if gw.Exited() {
			b.Fatalf("sshvpn serve exited: %v\n%s", gw.Wait(0), gw.Log())
		}
		return strings.Contains(gw.Log(), "listening")
	})
	ssh := client.Start(b, o.ClientArgs(b, key, "", "-v",
		"-o", "Tunnel=point-to-point", "-o", "ExitOnForwardFailure=yes",
		"-w", "0:any", "-p", sshvpnPort, "-N", "root@"+underServer.Addr().String())...)
	nstest.WaitFor(b, 15*time.Second, "sshvpn tunnel up", func() bool {
		if ssh.Exited() {
			b.Fatalf("ssh -w exited: %v\n%s\nsshvpn:\n%s", ssh.Wait(0), ssh.Log(), gw.Tail(40))
		}
		if gw.Exited() {
			b.Fatalf("sshvpn serve exited: %v\n%s", gw.Wait(0), gw.Log())
		}
		return hasDev(client, tunDev) && strings.Contains(gw.Log(), "tunnel up")
	})
	upTun(b, client, tunClient)
	tn := &tunnel{server: server, client: client, proc: ssh, kexLog: ssh}
	nstest.Ping(b, client, tunServer.Addr().String(), 2)
	return tn
}

// startConnect runs sshvpn connect, the client under test, against the
// baseline's server: stock sshd with PermitTunnel yes, which creates its tun0
// when the tunnel channel opens, configured by hand as for ssh -w. The client
// asks for -w any:0 and configures its own device with --address and --mtu.
func startConnect(b *testing.B, o nstest.OpenSSH) *tunnel {
	b.Helper()
	server, client := pair(b)
	key, pub := o.Keygen(b, b.TempDir(), "id_ed25519")
	s := o.StartSSHD(b, server, nstest.SSHDConfig{
		ListenAddr:     underServer.Addr().String() + ":22",
		PermitTunnel:   "yes",
		AuthorizedKeys: pub + "\n",
	})
	c := client.Start(b, sshvpnBin, "connect", "-F", "none", "-i", key,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+s.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-w", "any:0", "--address", tunClient.String(), "--mtu", mtu,
		"root@"+underServer.Addr().String())
	nstest.WaitFor(b, 20*time.Second, "sshvpn connect: tunnel up", func() bool {
		if c.Exited() {
			b.Fatalf("sshvpn connect exited: %v\n%s\nsshd:\n%s", c.Wait(0), c.Log(), s.Tail(40))
		}
		return strings.Contains(c.Log(), `msg="tunnel up"`) && hasDev(server, tunDev) && hasDev(client, tunDev)
	})
	if addr := client.Run(b, "ip", "-o", "addr", "show", "dev", tunDev); !strings.Contains(addr, tunClient.String()) {
		b.Fatalf("sshvpn connect did not configure %s with %s: %s", tunDev, tunClient, addr)
	}
	upTun(b, server, tunServer)
	tn := &tunnel{server: server, client: client, proc: c, kexLog: s.Proc}
	nstest.Ping(b, client, tunServer.Addr().String(), 2)
	return tn
}

// startRootless runs sshvpn serve with the rootless backend (MTU 16380,
// its default) and a stock ssh -w client (MTU 1500, as ssh leaves it) or
// sshvpn connect (which takes the gateway's MTU). The gateway's own
// address, tunServer, stands for the host's loopback, where iperf3 listens.
func startRootless(b *testing.B, o nstest.OpenSSH, connect bool) *tunnel {
	b.Helper()
	server, client := pair(b)
	key, pub := o.Keygen(b, b.TempDir(), "id_ed25519")
	dir := b.TempDir()
	keys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keys, []byte(pub+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	gw := server.Start(b, sshvpnBin, "serve",
		"--listen", underServer.Addr().String()+":"+sshvpnPort,
		"--host-key", filepath.Join(dir, "host_key"),
		"--authorized-keys", keys,
		"--subnet", tunServer.Masked().String(),
		"--allow", "127.0.0.1:5201/tcp")
	nstest.WaitFor(b, 10*time.Second, "sshvpn serve listening", func() bool {
		if gw.Exited() {
			b.Fatalf("sshvpn serve exited: %v\n%s", gw.Wait(0), gw.Log())
		}
		return strings.Contains(gw.Log(), "listening")
	})
	var c *nstest.Proc
	if connect {
		c = client.Start(b, sshvpnBin, "connect", "-F", "none", "-i", key,
			"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "GlobalKnownHostsFile=/dev/null", "-p", sshvpnPort, "--state-dir", b.TempDir(),
			"root@"+underServer.Addr().String())
	} else {
		c = client.Start(b, o.ClientArgs(b, key, "", "-v",
			"-o", "Tunnel=point-to-point", "-o", "ExitOnForwardFailure=yes",
			"-w", "0:any", "-p", sshvpnPort, "-N", "root@"+underServer.Addr().String())...)
	}
	nstest.WaitFor(b, 20*time.Second, "rootless tunnel up", func() bool {
		if c.Exited() {
			b.Fatalf("client exited: %v\n%s\nsshvpn:\n%s", c.Wait(0), c.Log(), gw.Tail(40))
		}
		return hasDev(client, tunDev) && strings.Contains(gw.Log(), "tunnel up") &&
			(!connect || strings.Contains(c.Log(), `msg="tunnel up"`))
	})
	if !connect {
		upTun(b, client, tunClient)
	}
	kex := c
	if connect {
		kex = gw
	}
	tn := &tunnel{server: server, client: client, proc: c, kexLog: kex, gateway: gw, iperfBind: "127.0.0.1"}
	nstest.Ping(b, client, tunServer.Addr().String(), 2)
	return tn
}

// peakRSS is a process's VmHWM.
func peakRSS(b *testing.B, p *nstest.Proc) int64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func hasDev(ns *nstest.NS, dev string) bool {
	return ns.Cmd("ip", "link", "show", dev).Run() == nil
}

// upTun gives tun0 its address and MTU and sets it up.
func upTun(b *testing.B, ns *nstest.NS, addr netip.Prefix) {
	b.Helper()
	ns.Run(b, "ip", "addr", "add", addr.String(), "dev", tunDev)
	ns.Run(b, "ip", "link", "set", tunDev, "mtu", mtu, "up")
}

// iperfJSON is the part of `iperf3 -J` output the harness reads.
type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int64   `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// iperf runs one iperf3 TCP test through tn: a one-off server in the server
// namespace on the tunnel address, the client in the client namespace.
func iperf(b *testing.B, tn *tunnel, reverse bool) row {
	b.Helper()
	bind := tn.iperfBind
	if bind == "" {
		bind = tunServer.Addr().String()
	}
	srv := tn.server.Start(b, "iperf3", "-s", "-1", "--forceflush", "-B", bind)
	nstest.WaitFor(b, 10*time.Second, "iperf3 server listening", func() bool {
		if srv.Exited() {
			b.Fatalf("iperf3 -s exited: %v\n%s", srv.Wait(0), srv.Log())
		}
		return strings.Contains(srv.Log(), "Server listening")
	})
	args := []string{"iperf3", "-c", tunServer.Addr().String(), "-t", strconv.Itoa(iperfSecs), "-J"}
	if reverse {
		args = append(args, "-R")
	}
	sdBefore, cdBefore := tunDrops(b, tn.server), tunDrops(b, tn.client)
	sBefore, cBefore, hBefore := nsCPU(b, tn.server), nsCPU(b, tn.client), hostCPU(b)
	start := time.Now()
	out, err := tn.client.Cmd(args...).Output()
	elapsed := time.Since(start).Seconds()
	sAfter, cAfter, hAfter := nsCPU(b, tn.server), nsCPU(b, tn.client), hostCPU(b)
	sdAfter, cdAfter := tunDrops(b, tn.server), tunDrops(b, tn.client)
	var j iperfJSON
	if jerr := json.Unmarshal(out, &j); jerr != nil || err != nil || j.Error != "" {
		b.Fatalf("iperf3 %v: %v, json %v, error %q\n%s\nclient:\n%s", args, err, jerr, j.Error, out, tn.proc.Tail(40))
	}
	if err := srv.Wait(10 * time.Second); err != nil {
		b.Logf("iperf3 -s -1: %v\n%s", err, srv.Tail(20))
	}
	return row{
		mbps:      j.End.SumReceived.BitsPerSecond / 1e6,
		retrans:   j.End.SumSent.Retransmits,
		serverCPU: 100 * cpuDelta(sBefore, sAfter) / elapsed,
		clientCPU: 100 * cpuDelta(cBefore, cAfter) / elapsed,
		hostCPU:   100 * hAfter.busyShare(hBefore),
		srvDrops:  sdAfter - sdBefore,
		cliDrops:  cdAfter - cdBefore,
	}
}

// tunDrops returns tun0's rx_dropped + tx_dropped in ns (ip netns exec
// mounts the namespace's own /sys).
func tunDrops(b *testing.B, ns *nstest.NS) int64 {
	b.Helper()
	if !hasDev(ns, tunDev) {
		return 0 // the rootless gateway has no device
	}
	var n int64
	for _, c := range []string{"rx_dropped", "tx_dropped"} {
		out := ns.Run(b, "cat", "/sys/class/net/"+tunDev+"/statistics/"+c)
		v, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			b.Fatalf("in %s: %s %s: %q", ns.Name, tunDev, c, out)
		}
		n += v
	}
	return n
}

// clkTck is USER_HZ, the unit of /proc/PID/stat's times; 100 on every Linux
// architecture Go supports.
const clkTck = 100

// nsCPU returns the user+system CPU seconds of every process in ns except
// iperf3, by PID.
func nsCPU(b *testing.B, ns *nstest.NS) map[int]float64 {
	b.Helper()
	out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
	if err != nil {
		b.Fatalf("ip netns pids %s: %v", ns.Name, err)
	}
	m := map[int]float64{}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		if s[open+1:close] == "iperf3" {
			continue
		}
		// After "(comm) ": state ppid pgrp session tty_nr tpgid flags
		// minflt cminflt majflt cmajflt utime stime.
		fs := strings.Fields(s[close+1:])
		if len(fs) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(fs[11], 64)
		st, _ := strconv.ParseFloat(fs[12], 64)
		m[pid] = (ut + st) / clkTck
	}
	return m
}

// cpuDelta sums the CPU seconds the processes alive at both snapshots used
// between them.
func cpuDelta(before, after map[int]float64) float64 {
	var d float64
	for pid, a := range after {
		if bv, ok := before[pid]; ok && a >= bv {
			d += a - bv
		}
	}
	return d
}

// cpuTimes is the aggregate "cpu" line of /proc/stat.
type cpuTimes struct{ busy, total float64 }

func hostCPU(b *testing.B) cpuTimes {
	b.Helper()
	f, err := os.Open("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 || fs[0] != "cpu" {
			continue
		}
		var c cpuTimes
		for i, v := range fs[1:] {
			x, _ := strconv.ParseFloat(v, 64)
			if i >= 8 { // guest and guest_nice are already in user and nice
				break
			}
			c.total += x
			if i != 3 && i != 4 { // idle, iowait
				c.busy += x
			}
		}
		return c
	}
	b.Fatal("/proc/stat has no cpu line")
	return cpuTimes{}
}

func (c cpuTimes) busyShare(before cpuTimes) float64 {
	if t := c.total - before.total; t > 0 {
		return (c.busy - before.busy) / t
	}
	return 0
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

// cpuModel returns the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	names := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			names[strings.TrimSpace(v)] = true
		}
	}
	var s []string
	for n := range names {
		s = append(s, n)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

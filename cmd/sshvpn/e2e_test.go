//go:build integration

// End-to-end tests: the real sshvpn binary as a gateway, stock OpenSSH 9.2
// and 10.0 clients, real tun/tap devices, in network namespaces on
// 198.18.0.0/15. Run with `make integration` (root).
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// sshvpnBin is the binary under test, built once by TestMain.
var sshvpnBin string

// clientStates holds each sshvpn connect's --state-dir (see connectArgs):
// a client that a test's cleanup kills leaves its journal there, not in
// the host's /run/sshvpn.
var clientStates string

func TestMain(m *testing.M) {
	var err error
	if clientStates, err = os.MkdirTemp("", "sshvpn-e2e-client-state-"); err != nil {
		panic(err)
	}
	nstest.Main(m, &sshvpnBin, func() { os.RemoveAll(clientStates) })
}

// The addresses of every test: the client reaches the gateway over an
// underlay; behind the gateway is a LAN whose host has no route back to the
// tunnel network.
var (
	underGW     = netip.MustParsePrefix("198.18.1.1/24")
	underClient = netip.MustParsePrefix("198.18.1.2/24")
	lanGW       = netip.MustParsePrefix("198.18.2.1/24")
	lanHost     = netip.MustParsePrefix("198.18.2.2/24")
	tunGW       = netip.MustParsePrefix("198.18.3.1/24")
	tunClient   = netip.MustParsePrefix("198.18.3.2/24")
	gwListen    = "198.18.1.1:2222"
)

// topo is three hosts: client — gateway — lan.
type topo struct {
	client, gw, lan *nstest.NS
	keyDir          string
	stateDir        string // the gateway's undo journals: the same across its restarts
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "ip")
	tp := &topo{client: nstest.New(t), gw: nstest.New(t), lan: nstest.New(t), keyDir: t.TempDir(), stateDir: t.TempDir()}
	nstest.Link(t, tp.client, underClient, tp.gw, underGW)
	nstest.Link(t, tp.gw, lanGW, tp.lan, lanHost)
	return tp
}

// gatewayProc is a running `sshvpn serve`.
type gatewayProc struct {
	*nstest.Proc
	keys string // its authorized_keys file
}

// startGateway runs sshvpn serve in the gateway namespace with an
// authorized_keys file holding authKeys, and waits until it accepts.
func (tp *topo) startGateway(t *testing.T, authKeys string, args ...string) *gatewayProc {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keys, []byte(authKeys), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{sshvpnBin, "serve", "--listen", gwListen,
		"--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", keys,
		"--backend", "kernel", "--state-dir", tp.stateDir}, args...)
	p := tp.gw.Start(t, argv...)
	nstest.WaitFor(t, 10*time.Second, "sshvpn serve listening", func() bool {
		if p.Exited() {
			t.Fatalf("sshvpn serve exited: %s", p.Log())
		}
		return strings.Contains(p.Log(), "listening")
	})
	return &gatewayProc{Proc: p, keys: keys}
}

// key makes a client key with o's ssh-keygen.
func (tp *topo) key(t *testing.T, o nstest.OpenSSH, name string) (priv, pub string) {
	return o.Keygen(t, tp.keyDir, name)
}

// sshTunnel runs a stock ssh client asking for a tunnel. It does not wait.
func (tp *topo) sshTunnel(t *testing.T, o nstest.OpenSSH, key, mode, spec string, extra ...string) *nstest.Proc {
	t.Helper()
	args := []string{"-o", "Tunnel=" + mode, "-w", spec, "-o", "ExitOnForwardFailure=yes", "-p", "2222"}
	args = append(args, extra...)
	args = append(args, "root@"+underGW.Addr().String())
	return tp.client.Start(t, o.ClientArgs(t, key, "", args...)...)
}

// waitTunnel waits for the client's device and for the gateway's tunnel.
func waitTunnel(t *testing.T, ns *nstest.NS, dev string, ssh *nstest.Proc, gw *gatewayProc, n int) {
	t.Helper()
	nstest.WaitFor(t, 15*time.Second, "tunnel "+dev+" up", func() bool {
		if ssh.Exited() {
			t.Fatalf("ssh exited: %s", ssh.Log())
		}
		_, err := ns.Cmd("ip", "link", "show", dev).CombinedOutput()
		return err == nil && strings.Count(gw.Log(), "tunnel up") >= n
	})
}

// upClient gives the client's device its address, as the usual recipe does
// by hand, and routes the LAN through it.
// stockTunnel starts a gateway for authKeys with gwArgs and stock ssh -w
// 0:any -N into it in mode, and brings the client's device (tun0, or tap0
// in ethernet mode) up at tunClient with routes.
func (tp *topo) stockTunnel(t *testing.T, o nstest.OpenSSH, priv, authKeys, mode string, gwArgs []string, routes ...netip.Prefix) (*gatewayProc, *nstest.Proc) {
	t.Helper()
	dev := "tun0"
	if mode == "ethernet" {
		dev = "tap0"
	}
	gw := tp.startGateway(t, authKeys, gwArgs...)
	ssh := tp.sshTunnel(t, o, priv, mode, "0:any", "-N")
	waitTunnel(t, tp.client, dev, ssh, gw, 1)
	upClient(t, tp.client, dev, tunClient, routes...)
	return gw, ssh
}

func upClient(t *testing.T, ns *nstest.NS, dev string, addr netip.Prefix, routes ...netip.Prefix) {
	t.Helper()
	ns.Run(t, "ip", "addr", "add", addr.String(), "dev", dev)
	ns.Run(t, "ip", "link", "set", dev, "up")
	for _, r := range routes {
		ns.Run(t, "ip", "route", "add", r.String(), "dev", dev)
	}
}

// forEachOpenSSH runs fn once per OpenSSH generation.
func forEachOpenSSH(t *testing.T, fn func(t *testing.T, o nstest.OpenSSH)) {
	nstest.RequireRoot(t)
	for _, o := range nstest.OpenSSHs(t) {
		t.Run("OpenSSH_"+o.Version, func(t *testing.T) { fn(t, o) })
	}
}

// counter returns the last value of key=N in a gateway's log.
func counter(log, key string) int64 {
	m := regexp.MustCompile(regexp.QuoteMeta(key)+`=(\d+)`).FindAllStringSubmatch(log, -1)
	if len(m) == 0 {
		return -1
	}
	v, _ := strconv.ParseInt(m[len(m)-1][1], 10, 64)
	return v
}

// 6a: stock ssh -w point-to-point into sshvpn serve: pings both ways and
// 50 MiB each way, byte for byte. The client runs without -N: the gateway's
// session shows its status and stays open.
func TestPointToPoint(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		gw := tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String())
		ssh := tp.sshTunnel(t, o, priv, "point-to-point", "0:any")
		waitTunnel(t, tp.client, "tun0", ssh, gw, 1)
		// The session shows the address the gateway keeps for this key;
		// the client takes it, as the status text says to.
		yours := regexp.MustCompile(`yours: (198\.18\.3\.\d+/24)`)
		nstest.WaitFor(t, 5*time.Second, "status text in the ssh session", func() bool {
			return strings.Contains(ssh.Log(), "tunnel up on the gateway's tun0") && yours.MatchString(ssh.Log())
		})
		mine := netip.MustParsePrefix(yours.FindStringSubmatch(ssh.Log())[1])
		upClient(t, tp.client, "tun0", mine)

		nstest.Ping(t, tp.client, tunGW.Addr().String(), 3)
		nstest.Ping(t, tp.gw, mine.Addr().String(), 3)
		up := nstest.Transfer(t, tp.gw, tunGW.Addr().String()+":0", tp.client, tunGW.Addr().String(), 50<<20, false)
		before := rxStats(t, tp.client, "tun0")
		down := nstest.Transfer(t, tp.gw, tunGW.Addr().String()+":0", tp.client, tunGW.Addr().String(), 50<<20, true)
		t.Logf("OpenSSH %s client → sshvpn (as %s): upload %v, download %v", o.Version, mine, up, down)
		// sshvpn status sees the kernel gateway's tunnel: its tun, the
		// address the client took, and the 100 MiB it carried.
		rs := statusJSON(t, "0", tp.stateDir)
		if len(rs) != 1 || rs[0].Gateway == nil || rs[0].Gateway.Backend != "kernel" || len(rs[0].Gateway.Connections) != 1 ||
			len(rs[0].Gateway.Connections[0].Tunnels) != 1 {
			t.Fatalf("status of the kernel gateway: %+v", rs)
		}
		if tun := rs[0].Gateway.Connections[0].Tunnels[0]; !strings.HasPrefix(tun.Device, "tun") || tun.Backend != "kernel" ||
			tun.Channel != "tun@openssh.com" || tun.In.Bytes < 50<<20 || tun.Out.Bytes < 50<<20 || len(tun.Addresses) == 0 {
			t.Errorf("status of the kernel gateway's tunnel: %+v", tun)
		}
		// The gateway merges runs of TCP segments toward the client's own
		// address, so ssh writes its tun once per 16 KiB rather than once
		// per MTU; unmerged, 50 MiB take some 36,000 packets of 1,500 bytes.
		got := rxStats(t, tp.client, "tun0").sub(before)
		if got.Bytes/max(got.Packets, 1) < 4000 {
			t.Errorf("the client's tun0 took the download in %d packets of %d bytes on average: the gateway did not merge segments toward it",
				got.Packets, got.Bytes/max(got.Packets, 1))
		}

		if ssh.Exited() {
			t.Fatalf("ssh without -N exited: %s", ssh.Log())
		}
	})
}

// A stock client that masquerades a namespace behind it (a container, a
// VM) to its tunnel address forwards what the gateway merged toward that
// address onto a 1500-byte link, and drops it there with "fragmentation
// needed". That ICMP comes back through the tunnel and ends the merging:
// the download goes on, byte for byte, instead of stalling.
func TestPointToPointMasqueradedBehindClient(t *testing.T) {
	nstest.RequireTool(t, "nft")
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) { masqueradedBehindClient(t, o) })
}

func masqueradedBehindClient(t *testing.T, o nstest.OpenSSH) {
	tp := newTopo(t)
	priv, pub := tp.key(t, o, "client")
	gw, _ := tp.stockTunnel(t, o, priv, pub+"\n", "point-to-point", []string{"--tun-address", tunGW.String()})

	box := nstest.New(t)
	boxNet := netip.MustParsePrefix("198.18.7.2/24")
	nstest.Link(t, tp.client, netip.MustParsePrefix("198.18.7.1/24"), box, boxNet)
	box.AddRoute(t, tunGW.Masked(), netip.MustParseAddr("198.18.7.1"))
	tp.client.EnableForwarding(t)
	tp.client.Run(t, "nft", "add", "table", "ip", "box")
	tp.client.Run(t, "nft", "add", "chain", "ip", "box", "post", "{ type nat hook postrouting priority 100; }")
	tp.client.Run(t, "nft", "add", "rule", "ip", "box", "post", "oifname", "tun0", "masquerade")

	r := nstest.Transfer(t, tp.gw, tunGW.Addr().String()+":0", box, tunGW.Addr().String(), 20<<20, true)
	t.Logf("download into a namespace masqueraded behind the client: %v", r)
	if !strings.Contains(gw.Log(), "no more merged packets toward it") {
		t.Errorf("the gateway did not log that it stopped merging:\n%s", gw.Log())
	}
}

// linkStats is what a device has received.
type linkStats struct{ Bytes, Packets uint64 }

func (a linkStats) sub(b linkStats) linkStats {
	return linkStats{a.Bytes - b.Bytes, a.Packets - b.Packets}
}

// rxStats reads dev's receive counters in ns.
func rxStats(t *testing.T, ns *nstest.NS, dev string) linkStats {
	t.Helper()
	var links []struct {
		Stats struct {
			RX linkStats `json:"rx"`
		} `json:"stats64"`
	}
	out := ns.Run(t, "ip", "-j", "-s", "link", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j -s link show %s: %v: %s", dev, err, out)
	}
	return links[0].Stats.RX
}

// 6b: the "VPN to a remote LAN" recipe: the LAN host has no route back to the
// tunnel network, so only --nat makes it reachable.
func TestRemoteLAN(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		for _, nat := range []bool{true, false} {
			t.Run(fmt.Sprintf("nat=%v", nat), func(t *testing.T) {
				tp := newTopo(t)
				priv, pub := tp.key(t, o, "client")
				args := []string{"--tun-address", tunGW.String()}
				if nat {
					args = append(args, "--nat")
				}
				tp.stockTunnel(t, o, priv, pub+"\n", "point-to-point", args, lanHost.Masked())
				nstest.Ping(t, tp.client, tunGW.Addr().String(), 1)
				if !nat {
					if nstest.CanPing(tp.client, lanHost.Addr().String()) {
						t.Fatal("the LAN host answered without --nat: it has no route back, so something else routes")
					}
					return
				}
				nstest.Ping(t, tp.client, lanHost.Addr().String(), 3)
				r := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 20<<20, true)
				t.Logf("LAN → client through NAT: %v", r)
			})
		}
	})
}

// 6c: stock ssh -o Tunnel=ethernet: tap devices, ARP over the link.
func TestEthernet(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		tp.stockTunnel(t, o, priv, pub+"\n", "ethernet", []string{"--tun-address", tunGW.String()})
		nstest.Ping(t, tp.client, tunGW.Addr().String(), 3)
		neigh := tp.client.Run(t, "ip", "neigh", "show", "dev", "tap0", tunGW.Addr().String())
		if !strings.Contains(neigh, "lladdr") {
			t.Fatalf("ARP did not resolve %s over the L2 link: %q", tunGW.Addr(), neigh)
		}
		nstest.Ping(t, tp.gw, tunClient.Addr().String(), 3)
		r := nstest.Transfer(t, tp.gw, tunGW.Addr().String()+":0", tp.client, tunGW.Addr().String(), 20<<20, true)
		t.Logf("ethernet tunnel download: %v", r)
	})
}

// 6d: refusals say which setting refused, in the text the stock client shows.
func TestRefusals(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		forced, forcedPub := tp.key(t, o, "forced")
		stranger, _ := tp.key(t, o, "stranger")
		keys := pub + "\n" + `tunnel="5" ` + forcedPub + "\n"
		cases := []struct {
			name, key, mode, spec string
			gwArgs                []string
			want                  []string // in the client's output
			gwWant                string   // in the gateway's log
		}{
			{"permit-tunnel=no", priv, "point-to-point", "0:any", []string{"--permit-tunnel", "no"},
				[]string{"open failed", "--permit-tunnel no", "Tunnel forwarding failed"}, "tunnel refused"},
			{"ethernet-on-point-to-point", priv, "ethernet", "0:any", []string{"--permit-tunnel", "point-to-point"},
				[]string{"open failed", "ethernet tunnel refused", "--permit-tunnel point-to-point"}, "tunnel refused"},
			{"unknown-key", stranger, "point-to-point", "0:any", nil,
				[]string{"Permission denied (publickey)"}, "is not in"},
			{"forced-unit", forced, "point-to-point", "0:3", nil,
				[]string{"open failed", `forces tunnel="5"`, "asked for unit 3"}, "tunnel refused"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				gw := tp.startGateway(t, keys, c.gwArgs...)
				ssh := tp.sshTunnel(t, o, c.key, c.mode, c.spec, "-N")
				if err := ssh.Wait(20 * time.Second); err == nil {
					t.Fatalf("ssh succeeded, want a refusal: %s", ssh.Log())
				}
				out := ssh.Log()
				for _, w := range c.want {
					if !strings.Contains(out, w) {
						t.Errorf("client output lacks %q:\n%s", w, out)
					}
				}
				if !strings.Contains(gw.Log(), c.gwWant) {
					t.Errorf("gateway log lacks %q:\n%s", c.gwWant, gw.Log())
				}
				t.Logf("client said:\n%s", out)
				gw.Signal(os.Interrupt)
				if err := gw.Wait(10 * time.Second); err != nil {
					t.Fatalf("gateway did not stop cleanly: %v\n%s", err, gw.Log())
				}
			})
		}
	})
}

// dialTCP dials from inside ns.
func dialTCP(t *testing.T, ns *nstest.NS, addr string) net.Conn {
	t.Helper()
	c, err := ns.Dial(t, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The usual recipe makes tap6 by hand (tunctl -t tap6) and asks for it
// with -w 4:6: the gateway attaches the existing persistent device, and
// leaves it, with the user's own configuration, when the client goes.
func TestPersistentDevice(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		tp.gw.Run(t, "ip", "tuntap", "add", "dev", "tap6", "mode", "tap")
		tp.gw.Run(t, "ip", "addr", "add", "198.18.6.1/24", "dev", "tap6")
		tp.gw.Run(t, "ip", "link", "set", "tap6", "up")
		before := tp.gw.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "tap6")
		priv, pub := tp.key(t, o, "client")
		gw := tp.startGateway(t, pub+"\n")
		ssh := tp.sshTunnel(t, o, priv, "ethernet", "4:6", "-N")
		waitTunnel(t, tp.client, "tap4", ssh, gw, 1)
		upClient(t, tp.client, "tap4", netip.MustParsePrefix("198.18.6.2/24"))
		nstest.Ping(t, tp.client, "198.18.6.1", 3)

		ssh.Signal(os.Interrupt)
		nstest.WaitFor(t, 10*time.Second, "tunnel down", func() bool { return strings.Contains(gw.Log(), "tunnel down") })
		if after := tp.gw.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "tap6"); after != before { // IPv4: the kernel adds a link-local IPv6 address on carrier
			t.Fatalf("the user's tap6 changed:\nbefore %s\nafter  %s", before, after)
		}
		if !strings.Contains(tp.gw.Run(t, "ip", "-d", "link", "show", "tap6"), "persist") {
			t.Fatal("the persistent tap6 lost its persist flag")
		}
	})
}

//go:build integration

package main

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/internal/nstest"
	"github.com/sshvpn/sshvpn/status"
)

// asUser runs sshvpn status as uid with args, and returns its output and
// exit code.
func asUser(t *testing.T, uid string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("setpriv", append([]string{"--reuid=" + uid, "--regid=" + uid, "--clear-groups", "--inh-caps=-all",
		sshvpnBin, "status"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("sshvpn status: %v", err)
	}
	return string(out), 0
}

// statusJSON reads the reports through sshvpn status --json as uid.
func statusJSON(t *testing.T, uid, stateDir string) []status.Report {
	t.Helper()
	out, code := asUser(t, uid, "--state-dir", stateDir, "--json")
	if code != 0 {
		t.Fatalf("sshvpn status --json exited %d: %s", code, out)
	}
	var rs []status.Report
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("sshvpn status --json: %v\n%s", err, out)
	}
	return rs
}

// connectionOf finds the gateway's connection of the key with comment.
func connectionOf(t *testing.T, rs []status.Report, comment string) status.Connection {
	t.Helper()
	for _, r := range rs {
		if r.Gateway == nil {
			continue
		}
		for _, c := range r.Gateway.Connections {
			if c.KeyComment == comment {
				return c
			}
		}
	}
	t.Fatalf("no connection with key comment %q in %+v", comment, rs)
	return status.Connection{}
}

// A rootless gateway run by uid 65534, a stock ssh -w client and a
// rootless sshvpn client: sshvpn status, run by the gateway's own user,
// shows both clients with what the test knows of them, its traffic grows
// with a transfer, another uid is refused, and with nothing running it
// fails. The sshvpn client's own status says it is up.
func TestStatus(t *testing.T) {
	t.Parallel()
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		nstest.RequireTool(t, "setpriv")
		stateDir, err := os.MkdirTemp("/tmp", "sshvpn-status-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(stateDir) })
		if err := os.Chown(stateDir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		stockPriv, stockPub := tp.key(t, o, "stock-client")
		vpnPriv, vpnPub := tp.key(t, o, "sshvpn-client")
		nstest.RequireTool(t, "curl")
		gw := tp.startRootless(t, stockPub+"\n"+vpnPub+"\n", "--state-dir", stateDir, "--client-alive-interval", "300ms",
			"--metrics-listen", "127.0.0.1:9300")
		scrape := func() map[string]*dto.MetricFamily {
			t.Helper()
			out := tp.gw.Run(t, "curl", "-sf", "http://127.0.0.1:9300/metrics")
			p := expfmt.NewTextParser(model.LegacyValidation)
			fams, err := p.TextToMetricFamilies(strings.NewReader(out))
			if err != nil {
				t.Fatalf("the metrics page does not parse: %v\n%s", err, out)
			}
			return fams
		}

		// The stock client, its tun0 numbered as the session says.
		sshc := tp.sshTunnel(t, o, stockPriv, "point-to-point", "any:any")
		yours := regexp.MustCompile(`your address (198\.18\.3\.\d+/24), the gateway's 198\.18\.3\.1`)
		nstest.WaitFor(t, 15*time.Second, "status text", func() bool {
			if sshc.Exited() {
				t.Fatalf("ssh exited: %s", sshc.Log())
			}
			return yours.MatchString(sshc.Log())
		})
		stockAddr := yours.FindStringSubmatch(sshc.Log())[1]
		upClient(t, tp.client, "tun0", netip.MustParsePrefix(stockAddr), lanHost.Masked())

		// The sshvpn client, rootless, with a SOCKS proxy.
		args := connectArgs(vpnPriv, "", "--backend", "netstack", "-p", "2222", "-D", "127.0.0.1:1080", "root@"+underGW.Addr().String())
		clientState := args[slices.Index(args, "--state-dir")+1]
		vpn := tp.client.Start(t, args...)
		nstest.WaitFor(t, 15*time.Second, "both tunnels up at the gateway", func() bool {
			if vpn.Exited() {
				t.Fatalf("sshvpn connect exited: %s", vpn.Log())
			}
			return strings.Count(gw.Log(), "tunnel up") >= 2
		})

		// The gateway's user reads it; both clients are there.
		rs := statusJSON(t, "65534", stateDir)
		if len(rs) != 1 || rs[0].Schema != status.Schema || rs[0].Role != "gateway" || rs[0].PID != gw.PID() {
			t.Fatalf("reports %+v, want the gateway's alone (pid %d)", rs, gw.PID())
		}
		g := rs[0].Gateway
		if g.Backend != "netstack" || g.Listen != gwListen || !strings.HasPrefix(g.HostKey, "SHA256:") || g.DNS == nil {
			t.Errorf("gateway %+v", g)
		}
		for _, c := range []struct {
			comment, pub, version, channel, addr string
		}{
			{"stock-client", stockPub, "SSH-2.0-OpenSSH_" + o.Version, "tun@openssh.com", stockAddr},
			{"sshvpn-client", vpnPub, "SSH-2.0-sshvpn", "tun-stream@sshvpn", ""},
		} {
			conn := connectionOf(t, rs, c.comment)
			if conn.Key != fingerprint(t, c.pub) || conn.User != "root" || !strings.HasPrefix(conn.Remote, underClient.Addr().String()+":") ||
				!strings.HasPrefix(conn.PeerVersion, c.version) || conn.Since.IsZero() {
				t.Errorf("%s: connection %+v; want key %s, user root, from %s, version %s", c.comment, conn, fingerprint(t, c.pub), underClient.Addr(), c.version)
			}
			if len(conn.Tunnels) != 1 {
				t.Fatalf("%s: tunnels %+v, want one", c.comment, conn.Tunnels)
			}
			tun := conn.Tunnels[0]
			if tun.Channel != c.channel || tun.Mode != "point-to-point" || tun.Backend != "netstack" || len(tun.Addresses) == 0 ||
				!rootlessSubnet.Contains(tun.Addresses[0].Addr()) || tun.Flows == nil || tun.Memory == nil {
				t.Errorf("%s: tunnel %+v", c.comment, tun)
			}
			if c.addr != "" && tun.Addresses[0].String() != c.addr {
				t.Errorf("%s: tunnel address %s, want %s as its session said", c.comment, tun.Addresses[0], c.addr)
			}
		}

		// A few MiB through the stock client's tunnel: its bytes in grow by
		// at least that much, and so do the gateway's totals and the
		// metrics page's counters.
		before := connectionOf(t, rs, "stock-client").Tunnels[0]
		mBefore := scrape()
		nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 4<<20, false)
		// And one packet the gateway must drop: an IPv4 header that
		// claims 60 bytes on a 32-byte packet, sent into the client's tun
		// as its kernel would; ssh passes it on, being longer than a header.
		truncated := make([]byte, 32)
		truncated[0], truncated[3] = 0x45, 60
		sendFrames(t, tp.client, "tun0", map[string][]byte{"truncated": truncated})
		rs = statusJSON(t, "65534", stateDir)
		after := connectionOf(t, rs, "stock-client").Tunnels[0]
		if after.In.Bytes < before.In.Bytes+4<<20 || after.Out.Packets <= before.Out.Packets || !after.LastReceived.After(before.LastReceived) {
			t.Errorf("after 4 MiB up: in %+v → %+v, out packets %d → %d, latest packet %v → %v",
				before.In, after.In, before.Out.Packets, after.Out.Packets, before.LastReceived, after.LastReceived)
		}
		if after.In.Drops["truncated"] == 0 {
			t.Errorf("after a truncated packet: drops in %v, want truncated counted", after.In.Drops)
		}
		if g := rs[0].Gateway; g.Totals.In.Bytes < 4<<20 {
			t.Errorf("gateway totals %+v after 4 MiB up", g.Totals)
		}
		in := func(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
			f := fams[name]
			if f == nil {
				t.Fatalf("metrics page lacks %s", name)
			}
		next:
			for _, m := range f.GetMetric() {
				for i := 0; i+1 < len(labels); i += 2 {
					found := false
					for _, l := range m.GetLabel() {
						found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
					}
					if !found {
						continue next
					}
				}
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			return 0
		}
		// The page renders at most every 250 ms: wait for one after the transfer.
		var mAfter map[string]*dto.MetricFamily
		nstest.WaitFor(t, 5*time.Second, "a metrics page with the upload and the drop", func() bool {
			mAfter = scrape()
			f := mAfter["sshvpn_tunnel_drops_total"]
			return f != nil && in(mAfter, "sshvpn_tunnel_bytes_total", "direction", "in") >= in(mBefore, "sshvpn_tunnel_bytes_total", "direction", "in")+4<<20
		})
		if b, a := in(mBefore, "sshvpn_tunnel_bytes_total", "direction", "in"), in(mAfter, "sshvpn_tunnel_bytes_total", "direction", "in"); a < b+4<<20 {
			t.Errorf("sshvpn_tunnel_bytes_total{direction=in}: %v → %v after 4 MiB up", b, a)
		}
		if d := in(mAfter, "sshvpn_tunnel_drops_total", "direction", "in", "reason", "truncated"); d < 1 {
			t.Errorf("sshvpn_tunnel_drops_total{direction=in,reason=truncated} = %v after a truncated packet", d)
		}
		if n := in(mAfter, "sshvpn_connections"); n != 2 {
			t.Errorf("sshvpn_connections = %v, want 2", n)
		}
		if n := in(mAfter, "sshvpn_tunnels", "channel", "tun@openssh.com") + in(mAfter, "sshvpn_tunnels", "channel", "tun-stream@sshvpn"); n != 2 {
			t.Errorf("sshvpn_tunnels = %v over both channel types, want 2", n)
		}

		// Keepalives measure each connection's round trip, the client's too
		// (connectArgs: ServerAliveInterval=2).
		nstest.WaitFor(t, 10*time.Second, "round trips measured", func() bool {
			rs = statusJSON(t, "65534", stateDir)
			crs := statusJSON(t, "0", clientState)
			return connectionOf(t, rs, "stock-client").RTT > 0 && connectionOf(t, rs, "sshvpn-client").RTT > 0 &&
				len(crs) == 1 && crs[0].Client != nil && crs[0].Client.RTT > 0
		})

		// The table and the dump, as the gateway's user.
		table, code := asUser(t, "65534", "--state-dir", stateDir)
		t.Logf("sshvpn status:\n%s", table)
		for _, want := range []string{"gateway: pid ", "backend: netstack", "(stock-client)", "(sshvpn-client)", "tun@openssh.com", "tun-stream@sshvpn", "latest packet: "} {
			if code != 0 || !strings.Contains(table, want) {
				t.Errorf("sshvpn status (exit %d) lacks %q", code, want)
			}
		}
		dump, code := asUser(t, "65534", "--state-dir", stateDir, "dump")
		kinds := map[string]int{}
		for _, l := range strings.Split(strings.TrimSpace(dump), "\n") {
			kinds[strings.SplitN(l, "\t", 2)[0]]++
		}
		if code != 0 || kinds["gateway"] != 1 || kinds["connection"] != 2 || kinds["tunnel"] != 2 || !strings.Contains(dump, "\tstock-client\t") {
			t.Errorf("sshvpn status dump (exit %d): %v lines by kind:\n%s", code, kinds, dump)
		}

		// Another user cannot reach the socket, and is told whose it is.
		sock := filepath.Join(stateDir, status.SocketName("serve", gw.PID()))
		out, code := asUser(t, "65533", "--socket", sock)
		if code == 0 || strings.Contains(out, "stock-client") || !strings.Contains(out, "65534") || !strings.Contains(out, "root") {
			t.Errorf("uid 65533: exit %d, %s; want refused, naming uid 65534 and root", code, out)
		}

		// The sshvpn client's own status: up, its server, its address.
		crs := statusJSON(t, "0", clientState)
		if len(crs) != 1 || crs[0].Client == nil {
			t.Fatalf("client reports %+v", crs)
		}
		cl := crs[0].Client
		vpnConn := connectionOf(t, rs, "sshvpn-client")
		if cl.State != "up" || cl.Server != "root@"+gwListen || !strings.HasPrefix(cl.PeerVersion, "SSH-2.0-sshvpn") || cl.Tunnel == nil ||
			!slices.Equal(cl.Tunnel.Addresses, vpnConn.Tunnels[0].Addresses) || len(cl.Proxies) != 1 || cl.Proxies[0].Kind != "socks" {
			t.Errorf("client %+v (tunnel %+v), want up at root@%s with the gateway's address %v and its proxy", cl, cl.Tunnel, gwListen, vpnConn.Tunnels[0].Addresses)
		}
		ctable, _ := asUser(t, "0", "--state-dir", clientState)
		t.Logf("sshvpn status of the client:\n%s", ctable)

		// Stopped, nothing is left and status says so.
		vpn.Signal(os.Interrupt)
		sshc.Signal(os.Interrupt)
		gw.Signal(os.Interrupt)
		if err := gw.Wait(10 * time.Second); errors.Is(err, nstest.ErrWaitTimeout) {
			t.Errorf("the gateway did not stop: %v", err)
		}
		vpn.Wait(10 * time.Second)
		for _, dir := range []string{stateDir, clientState} {
			if out, code := asUser(t, "0", "--state-dir", dir); code != 1 || !strings.Contains(out, "no sshvpn process is running") {
				t.Errorf("status in %s after every process stopped: exit %d, %s", dir, code, out)
			}
		}
	})
}

func fingerprint(t *testing.T, pub string) string {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(k)
}

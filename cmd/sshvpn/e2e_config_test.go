//go:build integration

package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// configGateway is a rootless gateway started with --config alone, its
// files in a directory of the unprivileged user it runs as.
type configGateway struct {
	*gatewayProc
	config string
	common []string // the file's lines that stay
}

// write replaces the config file's lines after the common ones.
func (rc *configGateway) write(t *testing.T, lines ...string) {
	t.Helper()
	body := strings.Join(append(append([]string{"# sshvpn serve, rewritten by the test"}, rc.common...), lines...), "\n") + "\n"
	if err := os.WriteFile(rc.config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startRootlessConfig runs sshvpn serve --config FILE as uid 65534; the
// file holds every setting, lines among them.
func (tp *topo) startRootlessConfig(t *testing.T, authKeys string, lines ...string) *configGateway {
	t.Helper()
	nstest.RequireTool(t, "setpriv")
	tp.gw.Run(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
	dir, err := os.MkdirTemp("/tmp", "sshvpn-config-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rc := &configGateway{config: filepath.Join(dir, "sshvpn.conf")}
	keys, resolv := filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "resolv.conf")
	rc.common = []string{
		"HostKey " + filepath.Join(dir, "host_key"),
		`authorized-keys "` + keys + `"`,
		"resolv-conf = " + resolv,
		"Subnet " + rootlessSubnet.String(),
	}
	rc.write(t, lines...)
	for path, body := range map[string]string{keys: authKeys, resolv: "nameserver " + lanHost.Addr().String() + "\n"} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{keys, resolv, rc.config, dir} {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	p := tp.gw.Start(t, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		sshvpnBin, "serve", "--config", rc.config)
	nstest.WaitFor(t, 10*time.Second, "sshvpn serve --config listening", func() bool {
		if p.Exited() {
			t.Fatalf("sshvpn serve exited: %s", p.Log())
		}
		return strings.Contains(p.Log(), "listening")
	})
	rc.gatewayProc = &gatewayProc{Proc: p, keys: keys}
	return rc
}

// A rootless gateway started with --config is changed under a running
// transfer and sent SIGHUP: the transfer completes byte for byte, a key
// added to authorized_keys logs in, an added --deny refuses a new
// connection to the LAN host, a lowered max-tunnels-per-key refuses the
// next tunnel, and a changed listen address is logged as needing a
// restart and kept.
func TestConfigReloadKeepsTunnels(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanServices(t)
	privA, pubA := tp.key(t, o, "a")
	privB, pubB := tp.key(t, o, "b")
	gw := tp.startRootlessConfig(t, pubA+"\n", "Listen "+gwListen, "MaxTunnelsPerKey 4")

	a := tp.sshTunnel(t, o, privA, "point-to-point", "0:any")
	yours := regexp.MustCompile(`your address (198\.18\.3\.\d+/24)`)
	nstest.WaitFor(t, 15*time.Second, "status text", func() bool {
		if a.Exited() {
			t.Fatalf("ssh exited: %s", a.Log())
		}
		return yours.MatchString(a.Log())
	})
	upClient(t, tp.client, "tun0", netip.MustParsePrefix(yours.FindStringSubmatch(a.Log())[1]), lanHost.Masked())
	if body, err := httpGet(t, tp.client, "http://"+lanHost.Addr().String()+"/"); err != nil || !strings.Contains(body, "hello from the lan") {
		t.Fatalf("HTTP to the LAN before the reload: %q %v", body, err)
	}
	if out, err := tp.client.Cmd(o.ClientArgs(t, privB, "", "-p", "2222", "-o", "BatchMode=yes", "root@"+underGW.Addr().String(), "true")...).CombinedOutput(); err == nil {
		t.Fatalf("key b logged in before it was added:\n%s", out)
	}

	// A download big enough to be running through the reload.
	const size = 1 << 30
	tr := nstest.StartTransfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), size, true)
	select {
	case <-tr.Reached(8 << 20):
	case <-tr.Done():
		_, err := tr.Wait()
		t.Fatalf("the transfer ended before 8 MiB: %v", err)
	}

	if err := os.WriteFile(gw.keys, []byte(pubA+"\n"+pubB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw.write(t, "Listen 198.18.1.1:2223", "max-tunnels-per-key = 1", "deny "+lanHost.Addr().String()+"/32")
	gw.Signal(syscall.SIGHUP)
	nstest.WaitFor(t, 5*time.Second, "config reloaded", func() bool { return strings.Contains(gw.Log(), "config reloaded") })
	if tr.Finished() {
		t.Fatal("the transfer ended before the reload: it proves nothing of tunnels kept up; make it larger")
	}
	if !strings.Contains(gw.Log(), "needs a restart: listen;") {
		t.Errorf("no warning that listen needs a restart:\n%s", gw.Log())
	}

	// The deny refuses a new connection; the flow open before it goes on.
	if body, err := httpGet(t, tp.client, "http://"+lanHost.Addr().String()+"/"); err == nil {
		t.Errorf("HTTP to the LAN host after a reloaded --deny of it: %q", body)
	}
	if r, err := tr.Wait(); err != nil {
		t.Fatalf("the transfer running through the reload: %v", err)
	} else {
		t.Logf("download through the reload: %v", r)
	}

	// The lowered limit refuses a's second tunnel.
	a2 := tp.sshTunnel(t, o, privA, "point-to-point", "1:any", "-N")
	if err := a2.Wait(15 * time.Second); err == nil || !strings.Contains(gw.Log(), "already holds 1 tunnels") {
		t.Errorf("a second tunnel of a under max-tunnels-per-key 1: %v\n%s", err, a2.Log())
	}
	// The new key logs in on the old listen address, and gets a tunnel.
	b := tp.sshTunnel(t, o, privB, "point-to-point", "2:any", "-N")
	waitTunnel(t, tp.client, "tun2", b, gw.gatewayProc, 2)
	if a.Exited() || gw.Exited() {
		t.Fatalf("the reload took the first tunnel or the gateway down:\n%s\n%s", a.Log(), gw.Log())
	}
}

//go:build integration

package main

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The premade tests: root prepares tun7 in the client's namespace for uid
// 65534 once, as users do for `ssh -w 7:any`, and sshvpn connect runs as
// that uid without any capability. The server's side is the usual recipe's
// tun0 at tunGW behind a stock sshd.
var (
	premadeAddr = netip.MustParsePrefix("198.18.9.2/24") // tun7's address
	premadeNet  = tunGW.Masked()                         // the server's tunnel side, routed through tun7
)

// prepareTun7 is root's part: tun7 owned by uid 65534 with its address,
// up, and (withRoute) the route to the server's tunnel side.
func (tp *topo) prepareTun7(t *testing.T, withRoute bool) {
	t.Helper()
	tp.client.Run(t, "ip", "tuntap", "add", "tun7", "mode", "tun", "user", "65534")
	tp.client.Run(t, "ip", "addr", "add", premadeAddr.String(), "dev", "tun7")
	tp.client.Run(t, "ip", "link", "set", "tun7", "up")
	if withRoute {
		tp.client.Run(t, "ip", "route", "add", premadeNet.String(), "dev", "tun7")
	}
}

// startPremadeConnect runs sshvpn connect -w 7:0 as uid 65534 without
// capabilities into sshd, with a key and known_hosts that uid may read.
// /dev/net/tun is 0600 on some hosts: the process gets a 0666 node in a
// mount namespace of its own, as on the many hosts that ship it so.
func (tp *topo) startPremadeConnect(t *testing.T, o nstest.OpenSSH, priv string, sshd *nstest.SSHD, extra ...string) *nstest.Proc {
	t.Helper()
	c := tp.client.Start(t, premadeConnectArgs(t, priv, sshd, append([]string{"-w", "7:0"}, extra...)...)...)
	waitUp(t, c, 1)
	return c
}

// premadeConnectArgs is sshvpn connect with args as uid 65534 without
// capabilities.
func premadeConnectArgs(t *testing.T, priv string, sshd *nstest.SSHD, args ...string) []string {
	t.Helper()
	nstest.RequireTool(t, "setpriv")
	nstest.RequireTool(t, "unshare")
	dir, err := os.MkdirTemp("/tmp", "sshvpn-premade-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	key, known := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
	for dst, src := range map[string]string{key: priv, known: sshd.KnownHosts} {
		copyFile(t, src, dst)
		if err := os.Chown(dst, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	script := `mount -t tmpfs -o mode=0755 premade /dev/net && mknod -m 0666 /dev/net/tun c 10 200 &&
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all "$@"`
	args = append(args, "root@"+underGW.Addr().String())
	return append([]string{"unshare", "--mount", "sh", "-c", script, "sh"}, connectArgs(key, known, args...)...)
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

// premadeServer is a stock sshd whose tun0 at tunGW routes tun7's network
// back.
func (tp *topo) premadeServer(t *testing.T, o nstest.OpenSSH) (priv string, sshd *nstest.SSHD) {
	t.Helper()
	priv, pub := tp.key(t, o, "client")
	sshd = tp.stockServer(t, o, pub, "tun")
	tp.gw.Run(t, "ip", "route", "add", premadeAddr.Masked().String(), "dev", "tun0")
	return priv, sshd
}

// sshvpn connect as a user without CAP_NET_ADMIN, on the tun root made for
// it: ping and a checksummed transfer across, nothing missing reported,
// and the device as root left it.
func TestConnectPremade(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		t.Parallel()
		tp := newTopo(t)
		priv, sshd := tp.premadeServer(t, o)
		tp.prepareTun7(t, true)
		// What sshvpn as root would change: MTU, addresses, routes, rules.
		// The kernel's own response to a first attach (the carrier, an
		// IPv6 link-local address) is not sshvpn's, and ssh -w's too.
		state := func() string {
			mtu := regexp.MustCompile(`mtu \d+`).FindString(tp.client.Run(t, "ip", "-o", "link", "show", "tun7"))
			routes := strings.ReplaceAll(tp.client.Run(t, "ip", "-4", "route", "show", "table", "all"), " linkdown", "")
			return mtu + "\n" + tp.client.Run(t, "ip", "-4", "-o", "addr", "show", "dev", "tun7") + routes + tp.client.Run(t, "ip", "rule")
		}
		before := state()
		c := tp.startPremadeConnect(t, o, priv, sshd, "--address", premadeAddr.String(), "--route", premadeNet.String())
		nstest.Ping(t, tp.client, tunGW.Addr().String(), 2)
		r := nstest.Transfer(t, tp.gw, tunGW.Addr().String()+":0", tp.client, tunGW.Addr().String(), 20<<20, true)
		t.Logf("unprivileged sshvpn connect on a premade tun7 → OpenSSH %s sshd: %v", o.Version, r)
		nstest.Transfer(t, tp.gw, tunGW.Addr().String()+":0", tp.client, tunGW.Addr().String(), 5<<20, false)
		log := c.Log()
		if !strings.Contains(log, "attached the device root prepared; sshvpn changes nothing on it") || strings.Contains(log, "missing on tun7") ||
			strings.Contains(log, "is down") {
			t.Errorf("want the device's state with nothing missing:\n%s", log)
		}
		if after := state(); after != before {
			t.Errorf("sshvpn changed tun7:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// Without the route root forgot, sshvpn still attaches tun7 and names the
// command that adds it.
func TestConnectPremadeMissingRoute(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, sshd := tp.premadeServer(t, o)
	tp.prepareTun7(t, false)
	c := tp.startPremadeConnect(t, o, priv, sshd, "--route", premadeNet.String())
	if want := `msg="missing on tun7: root runs: ip route add ` + premadeNet.String() + ` dev tun7"`; !strings.Contains(c.Log(), want) {
		t.Errorf("want %s in:\n%s", want, c.Log())
	}
	if strings.Contains(tp.client.Run(t, "ip", "route"), premadeNet.String()) {
		t.Errorf("sshvpn added the route itself")
	}
}

// With no device made for the user, -w any fails before connecting and
// names the choices: root prepares one, or the rootless proxies.
func TestConnectPremadeNone(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, sshd := tp.premadeServer(t, o)
	tp.client.Run(t, "ip", "tuntap", "add", "tun7", "mode", "tun", "user", "1000")
	out, code, _ := runIn(t, tp.client, 20*time.Second, premadeConnectArgs(t, priv, sshd, "-w", "any:0")...)
	for _, want := range []string{"-w any: no persistent tun device of nobody's is free",
		"root runs once: ip tuntap add tun0 mode tun user nobody && ip link set tun0 up", "-D, -L or --http-proxy"} {
		if !strings.Contains(out, want) {
			t.Errorf("exit %d: want %q in:\n%s", code, want, out)
		}
	}
	if code == 0 || strings.Contains(sshd.Log(), "Accepted publickey") {
		t.Errorf("exit %d; it should fail before connecting:\n%s", code, out)
	}
}

//go:build integration

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// Each failure a user can act on says what failed and what to do.
func TestActionableErrors(t *testing.T) {
	tp := newTopo(t)
	o := nstest.OpenSSHs(t)[0]
	priv, pub := tp.key(t, o, "client")

	// runServe runs a gateway that must fail at startup and returns its output.
	runServe := func(t *testing.T, prefix []string, args ...string) string {
		t.Helper()
		dir := t.TempDir()
		os.Chmod(dir, 0o777)
		keys := filepath.Join(dir, "authorized_keys")
		if err := os.WriteFile(keys, []byte(pub+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		argv := append(prefix, sshvpnBin, "serve", "--listen", gwListen,
			"--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", keys, "--backend", "kernel")
		p := tp.gw.Start(t, append(argv, args...)...)
		if err := p.Wait(10 * time.Second); err == nil {
			t.Fatalf("sshvpn serve %v succeeded, want a failure:\n%s", args, p.Log())
		}
		return p.Log()
	}
	expect := func(t *testing.T, out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}

	t.Run("not-root", func(t *testing.T) {
		nstest.RequireTool(t, "setpriv")
		out := runServe(t, []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"})
		expect(t, out, "run as root or use --backend netstack")
	})
	t.Run("address-in-use", func(t *testing.T) {
		out := runServe(t, nil, "--tun-address", underGW.String())
		expect(t, out, "address in use", underGW.Addr().String()+" is already on veth")
	})
	t.Run("bad-authorized-keys-line", func(t *testing.T) {
		dir := t.TempDir()
		keys := filepath.Join(dir, "authorized_keys")
		if err := os.WriteFile(keys, []byte(pub+"\nssh-ed25519 not-a-key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		p := tp.gw.Start(t, sshvpnBin, "serve", "--listen", gwListen, "--host-key", filepath.Join(dir, "hk"), "--authorized-keys", keys)
		if err := p.Wait(10 * time.Second); err == nil {
			t.Fatalf("started with a bad authorized_keys line:\n%s", p.Log())
		}
		expect(t, p.Log(), keys+":2: not a public key line")
	})
	t.Run("port-in-use", func(t *testing.T) {
		gw := tp.startGateway(t, pub+"\n")
		out := runServe(t, nil)
		expect(t, out, "listen on "+gwListen+": address already in use", "--listen")
		gw.Signal(os.Interrupt)
		gw.Wait(10 * time.Second)
	})
	t.Run("device-busy", func(t *testing.T) {
		gw := tp.startGateway(t, pub+"\n")
		first := tp.sshTunnel(t, o, priv, "point-to-point", "0:3", "-N")
		waitTunnel(t, tp.client, "tun0", first, gw, 1)
		second := tp.sshTunnel(t, o, priv, "point-to-point", "1:3", "-N")
		if err := second.Wait(15 * time.Second); err == nil {
			t.Fatalf("a second tunnel on the gateway's tun3 succeeded:\n%s", second.Log())
		}
		expect(t, second.Log(), "open failed", "tun3", "busy", "another process holds tun3")
		if first.Exited() {
			t.Fatalf("the first client lost its tunnel: %s", first.Log())
		}
		gw.Signal(os.Interrupt)
		gw.Wait(10 * time.Second)
	})
}

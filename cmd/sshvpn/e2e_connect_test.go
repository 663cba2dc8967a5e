//go:build integration

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// connectArgs is `sshvpn connect` reading no ssh_config, with one key,
// checking host keys against knownHosts ("" for none) and never prompting.
func connectArgs(key, knownHosts string, extra ...string) []string {
	check, file := "no", "/dev/null"
	if knownHosts != "" {
		check, file = "yes", knownHosts
	}
	state, err := os.MkdirTemp(clientStates, "")
	if err != nil {
		panic(err)
	}
	args := []string{sshvpnBin, "connect", "-F", "none", "-i", key, "--state-dir", state,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=" + check, "-o", "UserKnownHostsFile=" + file,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=2"}
	return append(args, extra...)
}

// stockServer is Debian's or the unpacked sshd on the gateway host with
// PermitTunnel yes and, as the usual recipe has it, a persistent device
// made and configured by hand (tun0 or tap0) that sshd attaches for
// unit 0.
func (tp *topo) stockServer(t *testing.T, o nstest.OpenSSH, pub, kind string) *nstest.SSHD {
	t.Helper()
	dev := kind + "0"
	tp.gw.Run(t, "ip", "tuntap", "add", "dev", dev, "mode", kind)
	if kind == "tun" {
		tp.gw.Run(t, "ip", "addr", "add", tunGW.String(), "dev", dev)
	}
	tp.gw.Run(t, "ip", "link", "set", dev, "up")
	return o.StartSSHD(t, tp.gw, nstest.SSHDConfig{ListenAddr: "198.18.1.1:22", PermitTunnel: "yes", AuthorizedKeys: pub + "\n"})
}

// routeBack lets the LAN host answer the tunnel network through the
// gateway, which forwards: a stock sshd does no NAT.
func (tp *topo) routeBack(t *testing.T) {
	tp.gw.EnableForwarding(t)
	tp.lan.AddRoute(t, tunGW.Masked(), lanGW.Addr())
}

// connectToStockSSHD starts a stock sshd on the gateway that routes back
// for the tunnel network, and sshvpn connect into it with a --route to the
// LAN, and waits for the tunnel.
func (tp *topo) connectToStockSSHD(t *testing.T, o nstest.OpenSSH) (*nstest.Proc, *nstest.SSHD) {
	t.Helper()
	priv, pub := tp.key(t, o, "client")
	sshd := tp.stockServer(t, o, pub, "tun")
	tp.routeBack(t)
	c := tp.client.Start(t, connectArgs(priv, sshd.KnownHosts, "-w", "any:0",
		"--address", tunClient.String(), "--route", lanHost.Masked().String(), "root@198.18.1.1")...)
	waitUp(t, c, 1)
	return c, sshd
}

// waitUp waits until sshvpn connect says its tunnel is up.
func waitUp(t *testing.T, p *nstest.Proc, n int) {
	t.Helper()
	nstest.WaitFor(t, 20*time.Second, "sshvpn connect: tunnel up", func() bool {
		if p.Exited() {
			t.Fatalf("sshvpn connect exited: %s", p.Log())
		}
		return strings.Count(p.Log(), `msg="tunnel up"`) >= n
	})
}

// 3a: a point-to-point tunnel to a stock sshd, a --route to the LAN behind
// it, and the same against an sshvpn gateway with no addressing flags.
func TestConnectPointToPoint(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		t.Run("sshd", func(t *testing.T) {
			tp := newTopo(t)
			tp.connectToStockSSHD(t, o)
			nstest.Ping(t, tp.client, tunGW.Addr().String(), 2)
			nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
			r := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 50<<20, true)
			t.Logf("sshvpn connect → OpenSSH %s sshd → LAN: %v", o.Version, r)
		})
		t.Run("sshvpn", func(t *testing.T) {
			tp := newTopo(t)
			priv, pub := tp.key(t, o, "client")
			tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(), "--nat", "--route", lanHost.Masked().String())
			c := tp.client.Start(t, connectArgs(priv, "", "-p", "2222", "root@198.18.1.1")...)
			waitUp(t, c, 1)
			nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
			if addr := tp.client.Run(t, "ip", "-o", "addr", "show", "dev", "tun0"); !regexp.MustCompile(`inet 198\.18\.3\.\d+/24`).MatchString(addr) {
				t.Fatalf("the gateway's address was not applied: %s", addr)
			}
			r := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 50<<20, true)
			t.Logf("sshvpn connect → sshvpn serve → LAN: %v", r)
		})
	})
}

// 3b: an ethernet tunnel into a stock sshd whose tap is bridged to the LAN:
// the client reaches the LAN host over ARP.
func TestConnectEthernetBridge(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		sshd := tp.stockServer(t, o, pub, "tap")
		lanDev := strings.Fields(tp.gw.Run(t, "ip", "-o", "-4", "addr", "show", "to", lanGW.Addr().String()))[1]
		tp.gw.Run(t, "ip", "addr", "flush", "dev", lanDev)
		tp.gw.Run(t, "ip", "link", "add", "br0", "type", "bridge")
		tp.gw.Run(t, "ip", "link", "set", lanDev, "master", "br0")
		tp.gw.Run(t, "ip", "link", "set", "tap0", "master", "br0")
		tp.gw.Run(t, "ip", "link", "set", "br0", "up")
		c := tp.client.Start(t, connectArgs(priv, sshd.KnownHosts, "-o", "Tunnel=ethernet", "-w", "any:0",
			"--address", "198.18.2.9/24", "root@198.18.1.1")...)
		waitUp(t, c, 1)
		nstest.Ping(t, tp.client, lanHost.Addr().String(), 3)
		if neigh := tp.client.Run(t, "ip", "neigh", "show", lanHost.Addr().String()); !strings.Contains(neigh, "lladdr") {
			t.Fatalf("ARP did not resolve the LAN host: %q", neigh)
		}
		r := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 10<<20, true)
		t.Logf("ethernet bridge: %v", r)
	})
}

// sshdSessions are the per-connection sshd processes in ns: everything
// named sshd but the listener.
func sshdSessions(t *testing.T, ns *nstest.NS, listener int) []int {
	t.Helper()
	var pids []int
	for _, f := range strings.Fields(ns.Run(t, "ip", "netns", "pids", ns.Name)) {
		var pid int
		fmt.Sscan(f, &pid)
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if pid != listener && bytes.Contains(cmd, []byte("sshd")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// 3c: the server's session process dies mid-transfer; the client
// reconnects within its backoff, the transfer resumes, and the local device
// never goes away.
func TestConnectReconnects(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		c, sshd := tp.connectToStockSSHD(t, o)
		index := tp.client.Run(t, "ip", "-o", "link", "show", "tun0")[:3]
		sessions := sshdSessions(t, tp.gw, sshd.PID())
		if len(sessions) == 0 {
			t.Fatal("found no sshd session process to kill")
		}

		// Kill the session as soon as the receiver has a few MiB, then
		// prove the kill landed mid-transfer: started, not yet complete.
		const size, threshold = 100 << 20, 8 << 20
		tr := nstest.StartTransfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), size, true)
		select {
		case <-tr.Reached(threshold): // or the transfer ended
		case <-time.After(30 * time.Second):
			t.Fatalf("the transfer did not reach %d bytes in 30 s: %d received", threshold, tr.Received())
		}
		for _, pid := range sessions {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatalf("kill sshd session %d: %v", pid, err)
			}
		}
		killed := time.Now()
		at := tr.Received()
		if at >= size {
			t.Fatalf("the kill did not land mid-transfer: all %d bytes had arrived", size)
		}
		if at < threshold { // Reached fired because the transfer ended
			_, err := tr.Wait()
			t.Fatalf("the transfer ended before the kill, with %d of %d bytes: %v", at, size, err)
		}
		t.Logf("killed the sshd session with %d of %d bytes received", at, size)
		waitUp(t, c, 2)
		t.Logf("reconnected %v after the kill", time.Since(killed).Round(time.Millisecond))
		r, err := tr.Wait()
		if err != nil {
			t.Fatalf("the transfer did not survive the reconnect: %v", err)
		}
		t.Logf("the transfer survived the reconnect: %v", r)
		if !strings.Contains(c.Log(), "reconnecting") {
			t.Errorf("no reconnect in the log:\n%s", c.Log())
		}
		if now := tp.client.Run(t, "ip", "-o", "link", "show", "tun0")[:3]; now != index {
			t.Errorf("the local device was replaced: index %q, then %q", index, now)
		}
	})
}

// 3d: a changed host key stops the client with OpenSSH's warning and
// changes nothing on the machine.
func TestConnectHostKeyMismatch(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		sshd := tp.stockServer(t, o, pub, "tun")
		_, other := tp.key(t, o, "impostor")
		known := filepath.Join(t.TempDir(), "known_hosts")
		// As ssh writes it: port 22 has no [host]:port form.
		content := []byte("198.18.1.1 " + strings.Join(strings.Fields(other)[:2], " ") + "\n")
		if err := os.WriteFile(known, content, 0o600); err != nil {
			t.Fatal(err)
		}
		before := hostState(t, tp.client)
		c := tp.client.Start(t, connectArgs(priv, known, "-w", "any:0", "--address", tunClient.String(), "root@198.18.1.1")...)
		switch err := c.Wait(20 * time.Second); {
		case err == nil:
			t.Fatalf("connected despite a changed host key:\n%s", c.Log())
		case errors.Is(err, nstest.ErrWaitTimeout):
			t.Fatalf("still running 20 s after a changed host key, want it to stop: %v\n%s", err, c.Log())
		}
		for _, want := range []string{"REMOTE HOST IDENTIFICATION HAS CHANGED", "Offending ED25519 key in " + known + ":1", "Host key verification failed"} {
			if !strings.Contains(c.Log(), want) {
				t.Errorf("output lacks %q:\n%s", want, c.Log())
			}
		}
		if strings.Contains(c.Log(), "handshake failed") || c.ExitCode() != 255 {
			t.Errorf("exit %d; like ssh, nothing but ssh's words and exit 255 after a refused host key:\n%s", c.ExitCode(), c.Log())
		}
		t.Logf("sshvpn connect said:\n%s", c.Log())
		if got, _ := os.ReadFile(known); !bytes.Equal(got, content) {
			t.Errorf("known_hosts changed:\n%s", got)
		}
		if after := hostState(t, tp.client); after != before {
			t.Errorf("the machine changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		_ = sshd
	})
}

// 3e: the client leaves links, addresses and routes exactly as it found
// them on SIGINT and SIGTERM, and a run after a SIGKILLed one starts clean.
func TestConnectTeardown(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, pub := tp.key(t, o, "client")
	tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(), "--tun-address", "2001:2:0:3::1/64",
		"--route", lanHost.Masked().String(), "--nat")
	nstest.Ping(t, tp.client, underGW.Addr().String(), 1)
	before := hostState(t, tp.client)
	run := func(t *testing.T) *nstest.Proc {
		c := tp.client.Start(t, connectArgs(priv, "", "-p", "2222", "--route", "2001:2:0:9::/64", "root@198.18.1.1")...)
		waitUp(t, c, 1)
		nstest.Ping(t, tp.client, lanHost.Addr().String(), 1)
		if during := hostState(t, tp.client); !strings.Contains(during, "tun0") || !strings.Contains(during, "2001:2:0:9::/64") {
			t.Fatalf("while connected, the client's state lacks its device or routes:\n%s", during)
		}
		return c
	}
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			c := run(t)
			if err := c.Signal(sig); err != nil {
				t.Fatalf("signal %v: %v", sig, err)
			}
			err := c.Wait(15 * time.Second)
			switch {
			case errors.Is(err, nstest.ErrWaitTimeout):
				t.Fatalf("sshvpn connect still runs 15 s after %v: %v\n%s", sig, err, c.Log())
			case sig != syscall.SIGKILL && err != nil:
				t.Fatalf("sshvpn connect did not end cleanly on %v: %v\n%s", sig, err, c.Log())
			}
			if sig == syscall.SIGKILL {
				// What a dead run left must not trouble the next one.
				c = run(t)
				c.Signal(syscall.SIGINT)
				if err := c.Wait(15 * time.Second); err != nil {
					t.Fatalf("after a SIGKILLed run, the next one did not end cleanly: %v\n%s", err, c.Log())
				}
			}
			if after := hostState(t, tp.client); after != before {
				t.Errorf("the client left state behind after %v.\nbefore:\n%s\nafter:\n%s", sig, before, after)
			}
		})
	}
}

//go:build integration

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// runIn runs args in ns to the end and returns stderr+stdout, the exit
// status and how long it took; bound keeps a hang from holding the suite.
func runIn(t *testing.T, ns *nstest.NS, bound time.Duration, args ...string) (out string, code int, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	// A file, not a pipe: a process the command leaves behind (-f) keeps
	// its stderr, and Run would wait for that to close.
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	start := time.Now()
	err = cmd.Run()
	took = time.Since(start)
	b, _ := os.ReadFile(f.Name())
	if ctx.Err() != nil {
		t.Fatalf("%s still running after %v:\n%s", strings.Join(args, " "), bound, b)
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return string(b), ee.ExitCode(), took
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b), 0, took
}

// silentListener accepts TCP on addr in ns and never says a word.
func silentListener(t *testing.T, ns *nstest.NS, addr string) {
	t.Helper()
	ln := ns.Listen(t, "tcp", addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
}

// Item 4 and 5: ConnectTimeout bounds the banner exchange, and a first
// contact that fails ends sshvpn as it ends ssh: exit 255, ssh's words,
// no "reconnecting". Stock ssh is run on the same targets as the oracle.
func TestConnectFirstContactFailsLikeSSH(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, _ := tp.key(t, o, "client")
		silentListener(t, tp.gw, "198.18.1.1:2022")
		for _, tt := range []struct {
			name string
			args []string
			want string
		}{
			{"banner timeout", []string{"-o", "ConnectTimeout=2", "-p", "2022", "root@198.18.1.1"}, "Connection timed out during banner exchange"},
			{"refused", []string{"-p", "2023", "root@198.18.1.1"}, "connect to host 198.18.1.1 port 2023: Connection refused"},
			{"no such host", []string{"root@no-such-host.invalid"}, "Could not resolve hostname no-such-host.invalid: "},
		} {
			t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
				sshArgs := o.ClientArgs(t, priv, "", append(tt.args, "true")...)
				for i, a := range sshArgs {
					if a == "ConnectTimeout=10" { // ClientArgs' own, which would come first
						sshArgs[i] = "ConnectTimeout=2"
					}
				}
				sshOut, sshCode, _ := runIn(t, tp.client, 20*time.Second, sshArgs...)
				out, code, took := runIn(t, tp.client, 20*time.Second, connectArgs(priv, "", tt.args...)...)
				if sshCode != 255 || !strings.Contains(sshOut, tt.want) {
					t.Fatalf("the oracle changed: ssh exited %d with %q, want 255 and %q", sshCode, sshOut, tt.want)
				}
				if code != 255 || !strings.Contains(out, tt.want) {
					t.Errorf("sshvpn connect exited %d with:\n%s\nwant 255 and %q (ssh: %q)", code, out, tt.want, sshOut)
				}
				if strings.Contains(out, "reconnecting") || strings.Contains(out, "tunnel down") {
					t.Errorf("reported a tunnel that was never up:\n%s", out)
				}
				if tt.name == "banner timeout" && took > 8*time.Second {
					t.Errorf("ConnectTimeout=2 took %v", took)
				}
			})
		}
		t.Run("persist", func(t *testing.T) {
			p := tp.client.Start(t, connectArgs(priv, "", "--persist", "-p", "2023", "root@198.18.1.1")...)
			nstest.WaitFor(t, 10*time.Second, "a retry", func() bool { return strings.Contains(p.Log(), "retrying") })
			if p.Exited() {
				t.Fatalf("--persist gave up:\n%s", p.Log())
			}
			p.Signal(syscall.SIGTERM)
			if err := p.Wait(5 * time.Second); errors.Is(err, nstest.ErrWaitTimeout) || p.ExitCode() != 255 ||
				!strings.Contains(p.Log(), "interrupted before a tunnel was up") {
				t.Fatalf("--persist after SIGTERM: %v, exit %d, want 255: no tunnel was ever up\n%s", err, p.ExitCode(), p.Log())
			}
		})
	})
}

// Item 8: a refused key reads as ssh's, and a stock sshd that refuses the
// tunnel gets the hint that names what to change on the server.
func TestConnectRefusalsReadLikeSSH(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		other, _ := tp.key(t, o, "other")
		sshd := o.StartSSHD(t, tp.gw, nstest.SSHDConfig{ListenAddr: "198.18.1.1:22", PermitTunnel: "no", AuthorizedKeys: pub + "\n"})

		sshOut, _, _ := runIn(t, tp.client, 20*time.Second, o.ClientArgs(t, other, sshd.KnownHosts, "root@198.18.1.1", "true")...)
		want := regexp.MustCompile(`root@198\.18\.1\.1: Permission denied \(publickey\)\.`)
		if !want.MatchString(sshOut) {
			t.Fatalf("the oracle changed: ssh said %q", sshOut)
		}
		out, code, _ := runIn(t, tp.client, 20*time.Second, connectArgs(other, sshd.KnownHosts, "root@198.18.1.1")...)
		if code != 255 || !want.MatchString(out) {
			t.Errorf("a refused key: exit %d:\n%s\nwant 255 and %q", code, out, want)
		}

		out, code, _ = runIn(t, tp.client, 20*time.Second, connectArgs(priv, sshd.KnownHosts, "root@198.18.1.1")...)
		if code != 255 || !strings.Contains(out, `("open failed")`) || !strings.Contains(out, "PermitTunnel yes") {
			t.Errorf("a refused tunnel: exit %d:\n%s\nwant 255, sshd's reason and the PermitTunnel hint", code, out)
		}
		for _, bad := range []string{"err=<nil>", "map[]", "=[]", "Usage:"} {
			if strings.Contains(out, bad) {
				t.Errorf("output shows %q:\n%s", bad, out)
			}
		}
	})
}

// Item 9: leaving on SIGTERM closes the channel and says goodbye as ssh
// does; sshd logs the same "Received disconnect ... disconnected by user"
// for both clients.
func TestConnectLeavesPolitely(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		sshd := tp.stockServer(t, o, pub, "tun")
		bye := regexp.MustCompile(`Received disconnect from 198\.18\.1\.2 port \d+:11: disconnected by user`)

		ssh := tp.client.Start(t, o.ClientArgs(t, priv, sshd.KnownHosts, "-N", "-w", "any:0", "root@198.18.1.1")...)
		nstest.WaitFor(t, 15*time.Second, "ssh's tunnel", func() bool {
			return strings.Contains(sshd.Log(), "session_tun_open") || strings.Contains(sshd.Log(), "tun@openssh.com")
		})
		time.Sleep(300 * time.Millisecond)
		ssh.Signal(syscall.SIGTERM)
		ssh.Wait(10 * time.Second)
		nstest.WaitFor(t, 10*time.Second, "sshd logs ssh's goodbye", func() bool { return len(bye.FindAllString(sshd.Log(), -1)) == 1 })

		c := tp.client.Start(t, connectArgs(priv, sshd.KnownHosts, "-w", "any:0", "--address", tunClient.String(), "root@198.18.1.1")...)
		waitUp(t, c, 1)
		c.Signal(syscall.SIGTERM)
		if err := c.Wait(10 * time.Second); err != nil {
			t.Fatalf("sshvpn connect after SIGTERM: %v\n%s", err, c.Log())
		}
		nstest.WaitFor(t, 10*time.Second, "sshd logs sshvpn's goodbye", func() bool { return len(bye.FindAllString(sshd.Log(), -1)) == 2 })
		for _, l := range strings.Split(sshd.Log(), "\n") {
			if strings.Contains(l, "Socket operation on non-socket") {
				t.Errorf("sshd saw the tunnel torn, not closed: %s\n%s", l, sshd.Log())
			}
		}
	})
}

// Item 7: -f goes to the background once the tunnel is up: the command
// returns 0, the tunnel carries traffic, and the background sshvpn tears
// it down on SIGTERM.
func TestConnectBackground(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		sshd := tp.stockServer(t, o, pub, "tun")
		args := connectArgs(priv, sshd.KnownHosts, "-fN", "-wany:0", "--address", tunClient.String(), "root@198.18.1.1")
		out, code, _ := runIn(t, tp.client, 30*time.Second, args...)
		if code != 0 {
			t.Fatalf("sshvpn connect -f exited %d:\n%s", code, out)
		}
		pids := strings.Fields(tp.client.Run(t, "ip", "netns", "pids", tp.client.Name))
		var bg int
		for _, p := range pids {
			pid, _ := strconv.Atoi(p)
			if cmdline, _ := readCmdline(pid); strings.Contains(cmdline, "connect") && strings.Contains(cmdline, "-fN") {
				bg = pid
			}
		}
		if bg == 0 {
			t.Fatalf("no background sshvpn in %s (pids %v)", tp.client.Name, pids)
		}
		t.Cleanup(func() { syscall.Kill(bg, syscall.SIGKILL) })
		nstest.Ping(t, tp.client, tunGW.Addr().String(), 2)
		syscall.Kill(bg, syscall.SIGTERM)
		nstest.WaitFor(t, 10*time.Second, "the background sshvpn to tear down", func() bool {
			return !strings.Contains(tp.client.Run(t, "ip", "-o", "link"), "tun0")
		})
	})
}

// readCmdline is /proc/PID/cmdline with spaces for the NULs.
func readCmdline(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), err
}

// Without root the client says what it needs root for, and does not send
// the user to the gateway's rootless backend.
func TestConnectNotRoot(t *testing.T) {
	nstest.RequireTool(t, "setpriv")
	tp := newTopo(t)
	out, code, _ := runIn(t, tp.client, 20*time.Second, append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"},
		connectArgs("/nonexistent", "", "root@198.18.1.1")...)...)
	if code != 255 || !strings.Contains(out, "open /dev/net/tun: permission denied: sshvpn connect makes a tun/tap device, its addresses and routes: run as root") ||
		!strings.Contains(out, "-D [bind:]port") || !strings.Contains(out, "ip tuntap add tun0 mode tun user nobody") ||
		strings.Contains(out, "netstack") {
		t.Errorf("exit %d:\n%s\nwant 255 and the reason it needs root", code, out)
	}
}

//go:build integration

package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The session's "Press Ctrl-D to close it" holds for a stock ssh -w on a
// terminal: Ctrl-D ends ssh and the gateway's tunnel device goes within
// 2 s. Tunnels without a terminal session (ssh -N, or ssh whose stdin is
// /dev/null) stay up whatever their stdin does.
func TestSessionCtrlDClosesTunnel(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		gw := tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String())

		// Without a terminal: -N, and a session on /dev/null.
		quiet := tp.sshTunnel(t, o, priv, "point-to-point", "0:any", "-N")
		waitTunnel(t, tp.client, "tun0", quiet, gw, 1)
		session := tp.sshTunnel(t, o, priv, "point-to-point", "1:any")
		waitTunnel(t, tp.client, "tun1", session, gw, 2)

		// On a terminal, as a user types it.
		args := o.ClientArgs(t, priv, "", "-o", "Tunnel=point-to-point", "-w", "2:any", "-p", "2222", "root@"+underGW.Addr().String())
		ssh, term := tp.client.StartTerminal(t, args...)
		waitTunnel(t, tp.client, "tun2", ssh, gw, 3)
		nstest.WaitFor(t, 10*time.Second, "the session's text on the terminal", func() bool {
			return strings.Contains(ssh.Log(), "Press Ctrl-D")
		})
		devs := regexp.MustCompile(`msg="tunnel up".* tunnel=(\S+)`).FindAllStringSubmatch(gw.Log(), -1)
		if len(devs) != 3 {
			t.Fatalf("%d tunnels up in the gateway's log, want 3:\n%s", len(devs), gw.Log())
		}
		last := devs[2][1] // the terminal's: it opened last
		if _, err := term.Write([]byte{4}); err != nil {
			t.Fatal(err)
		}
		hungUp := time.Now()
		if err := ssh.Wait(5 * time.Second); err != nil {
			t.Fatalf("ssh after Ctrl-D: %v\n%s", err, ssh.Log())
		}
		nstest.WaitFor(t, 2*time.Second-time.Since(hungUp), "the gateway's "+last+" gone", func() bool {
			_, err := tp.gw.Cmd("ip", "link", "show", "dev", last).CombinedOutput()
			return err != nil
		})
		t.Logf("ssh exited and %s went %v after Ctrl-D", last, time.Since(hungUp).Round(time.Millisecond))

		// The others stay, their devices with them, for a while.
		time.Sleep(3 * time.Second)
		for i, p := range []*nstest.Proc{quiet, session} {
			if p.Exited() {
				t.Errorf("ssh %s exited with the terminal's session: %s", []string{"-N", "</dev/null"}[i], p.Log())
			}
			if out, err := tp.gw.Cmd("ip", "link", "show", "dev", devs[i][1]).CombinedOutput(); err != nil {
				t.Errorf("the gateway's %s went with the terminal's session: %s", devs[i][1], out)
			}
		}
	})
}

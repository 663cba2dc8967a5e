//go:build integration

package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/net/proxy"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The rootless client's rows: a SOCKS5 proxy on the client host's
// loopback carries each TCP connection as an SSH direct-tcpip channel of
// its own, and the far end dials the destination. iperf3 speaks no SOCKS,
// so it aims at socksfwd (bench/socksfwd), which makes the CONNECT for
// each of its connections: the same adapter, at the same cost, in every
// one of these rows. The client side is stopped and started anew every
// round (the gateway keeps running), and its connect time runs to the
// first CONNECT that reaches the LAN host through it.

const (
	socksAddr = "127.0.0.1:1080" // the proxy, on the client host
	probePort = "5202"           // the LAN host's listener for the connect probe
)

// ssh-D: stock ssh -N -D into stock sshd (AllowTcpForwarding yes, its
// default): the anchor of the rootless client's rows.
func startSSHDynamic(e *env) *path {
	tb, o := e.tb, e.o
	t := newTopo(tb, e.pr)
	key, pub := o.Keygen(tb, tb.TempDir(), "id_ed25519")
	s := o.StartSSHD(tb, t.gw, nstest.SSHDConfig{ListenAddr: underGW.Addr().String() + ":" + sshdPort,
		AuthorizedKeys: pub + "\n"})
	p := socksPath(t)
	p.cipher = func() string { return negotiatedCipher(s.Log()) }
	var ssh *nstest.Proc
	p.alive = func() error { return exitedIf("ssh -D", ssh) }
	p.connect = func() (time.Duration, error) {
		if ssh != nil {
			ssh.Signal(syscall.SIGTERM)
			ssh.Wait(10 * time.Second)
			sshdReleased(t.gw, s)
		}
		return timeToFirstConnect(t, 30*time.Second, func() {
			ssh = t.client.Start(tb, o.ClientArgs(tb, key, s.KnownHosts, "-o", "ExitOnForwardFailure=yes",
				"-N", "-D", socksAddr, "root@"+underGW.Addr().String())...)
		}, p.alive)
	}
	return p
}

// sshvpn-D→sshd and sshvpn-D→sshvpn-netstack: sshvpn connect -D, run as
// uid 65534 with no capabilities (the rootless client needs no device),
// into the ssh-D row's kind of sshd, or into the rootless gateway as the
// sshvpn⇄sshvpn-netstack row starts it.
func startConnectSOCKS(e *env, netstack bool) *path {
	tb, o := e.tb, e.o
	t := newTopo(tb, e.pr)
	dir := nobodyDir(tb)
	key, pub := o.Keygen(tb, dir, "id_ed25519")
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		tb.Fatal(err)
	}
	chownNobody(tb, key, key+".pub", state)
	p := socksPath(t)
	dest := []string{"root@" + underGW.Addr().String()}
	var released func()
	if netstack {
		gw := startNetstackServe(tb, t, pub)
		dest = append([]string{"-p", sshvpnPort}, dest...)
		p.cipher = func() string { return serveCipher() + inferred }
		released = func() { serveReleased(gw) }
		p.alive = func() error { return exitedIf("sshvpn serve", gw) }
	} else {
		s := o.StartSSHD(tb, t.gw, nstest.SSHDConfig{ListenAddr: underGW.Addr().String() + ":" + sshdPort,
			AuthorizedKeys: pub + "\n"})
		p.cipher = func() string { return negotiatedCipher(s.Log()) }
		released = func() { sshdReleased(t.gw, s) }
		p.alive = func() error { return nil }
	}
	gwAlive := p.alive
	var c *nstest.Proc
	p.alive = func() error {
		if err := gwAlive(); err != nil {
			return err
		}
		return connectAlive(c)
	}
	p.connect = func() (time.Duration, error) {
		if c != nil {
			c.Signal(os.Interrupt)
			if err := c.Wait(15 * time.Second); err != nil {
				return 0, fmt.Errorf("sshvpn connect -D did not stop on SIGINT: %v\n%s", err, c.Tail(20))
			}
			released()
		}
		return timeToFirstConnect(t, 30*time.Second, func() {
			c = t.client.Start(tb, asNobody(tb, connectArgs(state, key, "", append([]string{"-D", socksAddr}, dest...)...)...)...)
		}, func() error { return connectAlive(c) })
	}
	return p
}

// socksPath is a path whose iperf3 aims at socksfwd on the client host's
// loopback, which reaches the LAN host's iperf3 -s through the proxy at
// socksAddr; the LAN host also gets the connect probe's listener.
func socksPath(t *topo) *path {
	tb := t.tb
	probe := t.lan.Listen(tb, "tcp", net.JoinHostPort(lanHost.Addr().String(), probePort))
	go func() {
		for {
			c, err := probe.Accept()
			if err != nil {
				return // closed when the profile ends
			}
			c.Close()
		}
	}()
	fwd := t.client.Start(tb, socksfwdBin, "-listen", "127.0.0.1:"+iperfPort, "-proxy", socksAddr,
		"-target", net.JoinHostPort(lanHost.Addr().String(), iperfPort))
	waitLine(tb, fwd, "ready", "socksfwd")
	return &path{topo: t, target: "127.0.0.1", port: iperfPort,
		noPing: "SOCKS carries TCP only",
		cipher: func() string { return "" }, alive: func() error { return nil }}
}

// socksDialer is x/net/proxy's SOCKS5 dialer doing the CONNECT over a
// connection dialled inside the client's namespace.
type socksDialer interface {
	DialWithConn(ctx context.Context, c net.Conn, network, address string) (net.Addr, error)
}

// timeToFirstConnect starts a proxy client with start and measures the
// time from just before its exec until a SOCKS5 CONNECT through
// socksAddr reaches the LAN host's probe listener, trying every 20 ms:
// the proxy refuses connections until it listens, and answers a failure
// until its SSH connection can open channels. alive fails early when the
// client died.
func timeToFirstConnect(t *topo, timeout time.Duration, start func(), alive func() error) (time.Duration, error) {
	d, err := proxy.SOCKS5("tcp", socksAddr, nil, nil)
	if err != nil {
		return 0, err
	}
	sd, ok := d.(socksDialer)
	if !ok {
		return 0, fmt.Errorf("x/net/proxy's SOCKS5 dialer (%T) has no DialWithConn any more", d)
	}
	target := net.JoinHostPort(lanHost.Addr().String(), probePort)
	try := func() error {
		c, err := t.client.Connect("tcp", socksAddr)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = sd.DialWithConn(ctx, c, "tcp", target)
		return err
	}
	t0 := time.Now()
	start()
	var last error
	for time.Since(t0) < timeout {
		next := time.Now().Add(20 * time.Millisecond)
		if last = try(); last == nil {
			return time.Since(t0), nil
		}
		if err := alive(); err != nil {
			return 0, err
		}
		time.Sleep(time.Until(next))
	}
	return 0, fmt.Errorf("no CONNECT to %s through %s within %v of starting the client: %v", target, socksAddr, timeout, last)
}

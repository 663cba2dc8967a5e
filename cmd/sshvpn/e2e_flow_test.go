//go:build integration

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sshvpn/sshvpn/internal/nstest"
	"github.com/sshvpn/sshvpn/stack"
)

// --transport flow: the client's TCP crosses as direct-tcpip channels, the
// rest as packets on the same tunnel. Against a stock sshd (which dials
// from the gateway's LAN address, where packets would come from the
// tunnel's), the rootless gateway and the kernel gateway, which dials
// from the host as sshd does.
func TestConnectFlowTransport(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		t.Run("sshd", func(t *testing.T) {
			tp := newTopo(t)
			tp.lanServices(t)
			priv, pub := tp.key(t, o, "client")
			sshd := tp.stockServer(t, o, pub, "tun")
			tp.routeBack(t)
			c := tp.client.Start(t, connectArgs(priv, sshd.KnownHosts, "--transport", "flow", "-w", "any:0",
				"--address", tunClient.String(), "--route", lanHost.Masked().String(), "root@198.18.1.1")...)
			waitUp(t, c, 1)
			checkFlowTransport(t, tp, c, lanGW.Addr(), "OpenSSH "+o.Version+" sshd")
		})
		t.Run("kernel", func(t *testing.T) {
			tp := newTopo(t)
			tp.lanServices(t)
			priv, pub := tp.key(t, o, "client")
			tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(), "--nat", "--route", lanHost.Masked().String())
			c := tp.client.Start(t, connectArgs(priv, "", "--transport", "flow", "-p", "2222", "root@198.18.1.1")...)
			waitUp(t, c, 1)
			checkFlowTransport(t, tp, c, lanGW.Addr(), "the kernel gateway")
		})
		t.Run("rootless", func(t *testing.T) {
			tp := newTopo(t)
			tp.lanServices(t)
			priv, pub := tp.key(t, o, "client")
			tp.startRootless(t, pub+"\n", "--route", lanHost.Masked().String())
			c := tp.client.Start(t, connectArgs(priv, "", "--transport", "flow", "-p", "2222", "root@198.18.1.1")...)
			waitUp(t, c, 1)
			checkFlowTransport(t, tp, c, lanGW.Addr(), "the rootless gateway")
		})
	})
}

// A key with no-port-forwarding may not open direct-tcpip, but its tunnel
// is allowed: TCP goes on as packets, and the client says so once.
func TestConnectFlowTransportFallsBack(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanServices(t)
	priv, pub := tp.key(t, o, "client")
	tp.startGateway(t, "no-port-forwarding "+pub+"\n", "--tun-address", tunGW.String(), "--nat", "--route", lanHost.Masked().String())
	c := tp.client.Start(t, connectArgs(priv, "", "--transport", "flow", "-p", "2222", "root@198.18.1.1")...)
	waitUp(t, c, 1)
	for range 2 {
		body, err := httpGet(t, tp.client, "http://"+lanHost.Addr().String()+"/")
		if err != nil || !strings.Contains(body, "hello from the lan") {
			t.Fatalf("HTTP to the LAN through the fallback: %q %v\n%s", body, err, c.Tail(20))
		}
	}
	if n := strings.Count(c.Log(), `msg="the server refuses TCP forwarding`); n != 1 {
		t.Errorf("the fallback was logged %d times, want once:\n%s", n, c.Log())
	}
	r := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 50<<20, true)
	t.Logf("--transport flow falling back to packets → kernel gateway: %v", r)
}

// checkFlowTransport runs everything --transport flow promises through a
// tunnel that is up: the LAN sees the gateway's address, a refused port
// fails at once, a missing host as soon as the far end knows, 100 MiB each way byte for byte, UDP (DNS) and ping on the
// same tunnel, and 1,000 connections at once leave the client as it was.
func checkFlowTransport(t *testing.T, tp *topo, c *nstest.Proc, wantSrc netip.Addr, server string) {
	t.Helper()
	body, err := httpGet(t, tp.client, "http://"+lanHost.Addr().String()+"/")
	if err != nil || !strings.Contains(body, "hello from the lan, "+wantSrc.String()+":") {
		t.Fatalf("HTTP to the LAN: %q %v: want it from %s, the gateway's address\n%s", body, err, wantSrc, c.Tail(20))
	}
	checkFlowStatus(t, c)
	start := time.Now()
	conn, err := tp.client.Connect("tcp", lanHost.Addr().String()+":9")
	if err == nil {
		conn.Close()
		t.Fatal("connected to a port nothing listens on")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a refused port: %v, want ECONNREFUSED", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("a refused port took %v to fail, want well under a second", d)
	}
	// No host answers ARP for this address: the far dial fails with "no
	// route to host" after the neighbour's retries, and the application
	// hears so from an ICMP unreachable, before its own SYN retries end.
	start = time.Now()
	conn, err = tp.client.Connect("tcp", "198.18.2.99:80")
	if err == nil {
		conn.Close()
		t.Fatal("connected to a host that does not exist")
	}
	if !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Fatalf("a host that does not exist: %v, want EHOSTUNREACH", err)
	}
	if d := time.Since(start); d > stack.DefaultFlowDialTimeout+time.Second {
		t.Errorf("a host that does not exist took %v to fail, want the far dial's failure or the dial timeout", d)
	}
	up := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 100<<20, false)
	down := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 100<<20, true)
	t.Logf("--transport flow → %s: upload %v, download %v", server, up, down)
	checkDNS(t, tp.client, lanHost.Addr().String()+":53")
	nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
	thousandFlows(t, tp, c)
}

// checkDNS asks the LAN's name server over UDP from ns.
func checkDNS(t *testing.T, ns *nstest.NS, server string) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("lan.test.", dns.TypeA)
	var r *dns.Msg
	var err error
	ns.Do(t, func() {
		cl := &dns.Client{Net: "udp", Timeout: 3 * time.Second}
		r, _, err = cl.Exchange(q, server)
	})
	if err != nil || len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), lanHost.Addr().String()) {
		t.Fatalf("DNS over UDP through the tunnel: %v %v", r, err)
	}
}

// thousandFlows opens 1,000 connections to the LAN's web server through
// the tunnel's device at once and wants every answer, and the client's
// descriptors and goroutines back where they were afterwards.
func thousandFlows(t *testing.T, tp *topo, c *nstest.Proc) {
	t.Helper()
	concurrentFlows(t, tp, c, 1000, "hello from the lan", func(int) (net.Conn, error) {
		return net.DialTimeout("tcp", lanHost.Addr().String()+":80", 20*time.Second)
	}, 30*time.Second)
}

// concurrentFlows dials n connections with dial (inside the client's
// namespace: the dialer's sockets are made on the calling thread), then
// asks each for a page at once and wants want in every answer; then the
// client c's descriptors and goroutines must be back to what they were
// before, within settle.
func concurrentFlows(t *testing.T, tp *topo, c *nstest.Proc, n int, want string, dial func(i int) (net.Conn, error), settle time.Duration) {
	t.Helper()
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.PID()))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	goroutines := func() int64 {
		n := strings.Count(c.Log(), `msg=footprint`)
		c.Signal(syscall.SIGUSR1)
		nstest.WaitFor(t, 5*time.Second, "footprint line", func() bool { return strings.Count(c.Log(), `msg=footprint`) > n })
		return counter(c.Log(), "goroutines")
	}
	fd0, g0 := fds(), goroutines()
	conns := make([]net.Conn, n)
	tp.client.Do(t, func() {
		for i := range conns {
			var err error
			if conns[i], err = dial(i); err != nil {
				t.Fatalf("connection %d of %d: %v\n%s", i+1, n, err, c.Tail(20))
			}
		}
	})
	var done atomic.Int32
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Go(func() {
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(conn, "GET /?flow=%d HTTP/1.0\r\nHost: lan.test\r\n\r\n", i)
			body, err := io.ReadAll(conn)
			if err == nil && strings.Contains(string(body), want) {
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if done.Load() != int32(n) {
		t.Fatalf("%d of %d concurrent flows completed\n%s", done.Load(), n, c.Tail(20))
	}
	var fd1 int
	var g1 int64
	nstest.WaitFor(t, settle, "fds and goroutines back to the baseline", func() bool {
		fd1, g1 = fds(), goroutines()
		return fd1 <= fd0 && g1 <= g0+2
	})
	t.Logf("after %d concurrent flows: fds %d → %d, goroutines %d → %d", n, fd0, fd1, g0, g1)
}

// A reconnect does not resurrect flows: a transfer whose SSH connection
// dies fails at once with a reset (where --transport packet carries it
// over), and new connections go as flows on the next connection.
func TestConnectFlowTransportReconnect(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanServices(t)
	priv, pub := tp.key(t, o, "client")
	sshd := tp.stockServer(t, o, pub, "tun")
	tp.routeBack(t)
	c := tp.client.Start(t, connectArgs(priv, sshd.KnownHosts, "--transport", "flow", "-w", "any:0",
		"--address", tunClient.String(), "--route", lanHost.Masked().String(), "root@198.18.1.1")...)
	waitUp(t, c, 1)
	sessions := sshdSessions(t, tp.gw, sshd.PID())
	if len(sessions) == 0 {
		t.Fatal("found no sshd session process to kill")
	}
	const size, threshold = 1 << 30, 8 << 20
	tr := nstest.StartTransfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), size, true)
	select {
	case <-tr.Reached(threshold):
	case <-time.After(30 * time.Second):
		t.Fatalf("the transfer did not reach %d bytes in 30 s: %d received", threshold, tr.Received())
	}
	for _, pid := range sessions {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill sshd session %d: %v", pid, err)
		}
	}
	killed := time.Now()
	if _, err := tr.Wait(); err == nil {
		t.Fatal("a flow survived its SSH connection's death whole")
	} else if d := time.Since(killed); d > 10*time.Second {
		t.Errorf("the cut flow failed %v after its connection died, want at once: %v", d, err)
	} else {
		t.Logf("the cut flow failed %v after the kill: %v", d.Round(time.Millisecond), err)
	}
	waitUp(t, c, 2)
	body, err := httpGet(t, tp.client, "http://"+lanHost.Addr().String()+"/")
	if err != nil || !strings.Contains(body, "hello from the lan, "+lanGW.Addr().String()+":") {
		t.Fatalf("a new flow after the reconnect: %q %v\n%s", body, err, c.Tail(20))
	}
}

// checkFlowStatus wants sshvpn status to show the terminator's flows
// against their limit on the client's tunnel.
func checkFlowStatus(t *testing.T, c *nstest.Proc) {
	t.Helper()
	args := c.Cmd.Args
	i := slices.Index(args, "--state-dir")
	if i < 0 {
		t.Fatalf("no --state-dir in %q", args)
	}
	for _, r := range statusJSON(t, "0", args[i+1]) {
		if r.Client == nil || r.Client.Tunnel == nil {
			continue
		}
		if f := r.Client.Tunnel.Flows; f == nil || f.Limit != stack.DefaultMaxFlows {
			t.Fatalf("the client's tunnel shows flows %+v, want the terminator's, limit %d", f, stack.DefaultMaxFlows)
		}
		return
	}
	t.Fatal("sshvpn status shows no client tunnel")
}

//go:build integration

package main

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// silentServer makes addr (host:port in ns) a server that never closes:
// it accepts and closes at once, but ns drops every FIN and RST it sends
// from that port, so to its peers the connection stays open and silent,
// while the test holds no fd for it. A forward to it ends only when the
// gateway ends it.
func silentServer(t *testing.T, ns *nstest.NS, addr string) {
	t.Helper()
	nstest.RequireTool(t, "nft")
	_, port, _ := net.SplitHostPort(addr)
	ns.Run(t, "nft", "add table inet silent")
	ns.Run(t, "nft", "add chain inet silent out { type filter hook output priority 0 ; }")
	ns.Run(t, "nft", "add rule inet silent out tcp sport "+port+" tcp flags & (fin|rst) != 0 drop")
	ln := ns.Listen(t, "tcp", addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
}

// forwardFlood logs in conns times with signer, one connection after the
// other; each opens perConn direct-tcpip channels to target (ssh -W's
// channel), all at once, and is then dropped at once, without closing a
// channel first. While forwards outlived their connection, 80 such
// connections of 256 forwards held a gateway at its fd limit.
func forwardFlood(t *testing.T, tp *topo, signer ssh.Signer, target string, conns, perConn int) (opened, refused int64) {
	t.Helper()
	cfg := &ssh.ClientConfig{User: "flood", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	var ok, no atomic.Int64
	for range conns {
		conn, err := tp.client.Dial(t, "tcp", gwListen)
		if err != nil {
			t.Fatalf("forward flood: dial the gateway: %v", err)
		}
		c, chans, reqs, err := ssh.NewClientConn(conn, gwListen, cfg)
		if err != nil {
			conn.Close()
			t.Fatalf("forward flood: log in: %v", err)
		}
		client := ssh.NewClient(c, chans, reqs)
		var wg sync.WaitGroup
		for range perConn {
			wg.Go(func() {
				if _, err := client.Dial("tcp", target); err != nil {
					no.Add(1)
					return
				}
				ok.Add(1)
			})
		}
		wg.Wait()
		conn.Close()
	}
	return ok.Load(), no.Load()
}

// One key's 80 connections of 256 forwards each, to a LAN server that never
// closes, each connection dropped at once: the gateway's sockets go with
// each connection, so its fds come back to where they were.
func TestRootlessForwardFlood(t *testing.T) {
	nstest.RequireRoot(t)
	t.Parallel()
	tp := newTopo(t)
	silentServer(t, tp.lan, lanHost.Addr().String()+":9")
	signer, line := goKey(t)
	gw := tp.startRootless(t, line+"\n")
	_, fds0 := procUsage(t, gw.PID())
	start := time.Now()
	opened, refused := forwardFlood(t, tp, signer, lanHost.Addr().String()+":9", 80, 256)
	t.Logf("forward flood: %d forwards opened, %d refused, in %v", opened, refused, time.Since(start).Round(time.Millisecond))
	if opened < 80*256/2 {
		t.Errorf("only %d of %d forwards opened: the flood did not load the gateway", opened, 80*256)
	}
	nstest.WaitFor(t, 15*time.Second, "the gateway's fds back to where they were", func() bool {
		_, fds := procUsage(t, gw.PID())
		return fds <= fds0+8
	})
}

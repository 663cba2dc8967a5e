//go:build integration

package main

import (
	"fmt"
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
// connections of 256 forwards held a gateway at its fd limit. It runs on
// any goroutine.
func forwardFlood(tp *topo, signer ssh.Signer, target string, conns, perConn int) (opened, refused int64, err error) {
	cfg := &ssh.ClientConfig{User: "flood", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}
	var ok, no atomic.Int64
	for i := range conns {
		conn, err := tp.client.Connect("tcp", gwListen)
		if err != nil {
			return ok.Load(), no.Load(), fmt.Errorf("connection %d: %w", i, err)
		}
		c, chans, reqs, err := ssh.NewClientConn(conn, gwListen, cfg)
		if err != nil {
			conn.Close()
			return ok.Load(), no.Load(), fmt.Errorf("connection %d: log in: %w", i, err)
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
	return ok.Load(), no.Load(), nil
}

// floodForwards is forwardFlood as a neighbourPhase, by the neighbours'
// forwarding key, 80 connections of 256 forwards to forwardTarget. With
// forwards outliving their connection (their channel's end and their
// connection's context both taken out), the key's forward slots stay held
// and the gateway's fds never come back.
func floodForwards(t *testing.T, n *neighbours) (stop func()) {
	const conns, perConn = 80, 256
	type result struct {
		opened, refused int64
		err             error
		took            time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		o, r, err := forwardFlood(n.tp, n.forwarder, forwardTarget, conns, perConn)
		done <- result{o, r, err, time.Since(start)}
	}()
	return func() {
		r := <-done
		if r.err != nil {
			t.Fatalf("forward flood: %v", r.err)
		}
		t.Logf("forward flood: %d forwards opened, %d refused, in %v", r.opened, r.refused, r.took.Round(time.Millisecond))
		if r.opened < conns*perConn/2 {
			t.Errorf("only %d of %d forwards opened: the flood did not load the gateway", r.opened, conns*perConn)
		}
	}
}

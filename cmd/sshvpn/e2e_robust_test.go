//go:build integration

package main

import (
	"crypto/rand"
	"encoding/binary"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/internal/nstest"
	"github.com/sshvpn/sshvpn/relay/gateway/gatewaytest"
)

// 6e: a 2 GiB download from the LAN through the gateway into a stock client
// at full speed. The gateway must charge OpenSSH's window as OpenSSH does
// (len+4 per datagram) and never split a datagram: the client must not log
// "rcvd too much data", must not disconnect, must not see corrupt packets,
// and the packet rate must not collapse.
func TestBulkDownloadIntoStockClient(t *testing.T) {
	size := int64(2 << 30)
	if testing.Short() {
		size = 200 << 20
	}
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "client")
		gw, ssh := tp.stockTunnel(t, o, priv, pub+"\n", "point-to-point", []string{"--tun-address", tunGW.String(), "--nat"}, lanHost.Masked())
		before := ipErrors(t, tp.client)

		r := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), size, true)

		t.Logf("gateway:\n%s\nclient:\n%s", tp.gw.Run(t, "ip", "-s", "link", "show", "tun0"), tp.client.Run(t, "ip", "-s", "link", "show", "tun0"))
		if ssh.Exited() {
			t.Fatalf("the stock client disconnected during the download: %s", ssh.Log())
		}
		if after := ipErrors(t, tp.client); after != before {
			t.Errorf("the client's IP layer saw corrupt packets (split datagrams?): InHdrErrors+InTruncatedPkts %d → %d", before, after)
		}
		ssh.Signal(syscall.SIGTERM)
		ssh.Wait(10 * time.Second)
		for _, bad := range []string{"rcvd too much data", "peer ignored channel window", "bad ext data"} {
			if strings.Contains(ssh.Log(), bad) {
				t.Errorf("the client logged %q:\n%s", bad, ssh.Log())
			}
		}
		nstest.WaitFor(t, 10*time.Second, "tunnel down in the gateway log", func() bool {
			return strings.Contains(gw.Log(), "tunnel down")
		})
		pkts := counter(gw.Log(), "out.packets")
		if pkts < 0 {
			t.Fatalf("no out.packets counter in the gateway log:\n%s", gw.Log())
		}
		pps := float64(pkts) / r.Duration.Seconds()
		t.Logf("OpenSSH %s client: %v; gateway sent %d packets, %.0f packets/s", o.Version, r, pkts, pps)
		// A collapse (x/crypto splitting datagrams once the window drifts) is a
		// few hundred packets per second.
		if pps < 5000 {
			t.Errorf("throughput collapsed: %.0f packets/s", pps)
		}
	})
}

// ipErrors sums the IP input errors that a corrupt (split) datagram written
// to the client's tun would raise.
func ipErrors(t *testing.T, ns *nstest.NS) int64 {
	t.Helper()
	out := ns.Run(t, "cat", "/proc/net/snmp")
	var names, values []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "Ip: ") {
			continue
		}
		if names == nil {
			names = strings.Fields(l)
		} else {
			values = strings.Fields(l)
		}
	}
	var sum int64
	for i, n := range names {
		if (n == "InHdrErrors" || n == "InTruncatedPkts") && i < len(values) {
			v, _ := strconv.ParseInt(values[i], 10, 64)
			sum += v
		}
	}
	return sum
}

// 6f: a misbehaving client sends garbage, truncated, oversized and
// wrong-family frames. The gateway counts and drops them while it keeps
// serving a well-behaved stock client, and tears the bad tunnel down cleanly.
func TestMisbehavingClient(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		priv, pub := tp.key(t, o, "good")
		bad, badPub := goKey(t)
		gw := tp.startGateway(t, pub+"\n"+badPub+"\n", "--tun-address", tunGW.String())
		good := tp.sshTunnel(t, o, priv, "point-to-point", "0:any", "-N")
		waitTunnel(t, tp.client, "tun0", good, gw, 1)
		upClient(t, tp.client, "tun0", tunClient)

		conn := dialTCP(t, tp.client, gwListen)
		c, chans, reqs, err := ssh.NewClientConn(conn, gwListen, &ssh.ClientConfig{
			User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(bad)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		})
		if err != nil {
			t.Fatal(err)
		}
		client := ssh.NewClient(c, chans, reqs)
		defer client.Close()
		ch, creqs, err := client.OpenChannel("tun@openssh.com", ssh.Marshal(struct{ Mode, Unit uint32 }{1, 0x7fffffff}))
		if err != nil {
			t.Fatal(err)
		}
		go ssh.DiscardRequests(creqs)

		tr := nstest.StartTransfer(t, tp.gw, tunGW.Addr().String()+":0", tp.client, tunGW.Addr().String(), 20<<20, true)
		const rounds = 200
		for range rounds {
			for _, m := range badFrames() {
				if _, err := ch.Write(m); err != nil {
					t.Fatalf("the gateway closed the bad channel instead of dropping frames: %v", err)
				}
			}
		}
		nstest.Ping(t, tp.client, tunGW.Addr().String(), 3)
		r, err := tr.Wait()
		if err != nil {
			t.Fatalf("the well-behaved client's download while the bad one sent garbage: %v", err)
		}
		t.Logf("well-behaved client's download while the bad one sent %d bad frames: %v", rounds*len(badFrames()), r)
		ch.Close()
		client.Close()

		nstest.WaitFor(t, 10*time.Second, "bad tunnel down", func() bool {
			return strings.Contains(gw.Log(), "tunnel down")
		})
		log := gw.Log()
		for _, reason := range []string{"malformed", "truncated", "oversized", "family"} {
			if !strings.Contains(log, "in.drops."+reason+"=") {
				t.Errorf("gateway did not count %s drops:\n%s", reason, log)
			}
		}
		if out := tp.gw.Run(t, "ip", "-o", "link"); strings.Contains(out, "tun1") {
			t.Errorf("the bad client's device outlived its tunnel:\n%s", out)
		}
		if gw.Exited() || good.Exited() {
			t.Fatalf("gateway or good client died: gw %v good %v", gw.Log(), good.Log())
		}
		nstest.Ping(t, tp.client, tunGW.Addr().String(), 2)
	})
}

// badFrames is one of each kind of frame a gateway must drop.
func badFrames() [][]byte {
	ipv4 := func(total int, body int) []byte {
		p := make([]byte, 20+body)
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(total))
		p[8], p[9] = 64, 17
		copy(p[12:], []byte{198, 18, 3, 9, 198, 18, 3, 1})
		return p
	}
	af := func(f uint32, pkt []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, f), pkt...)
	}
	garbage := make([]byte, 97)
	rand.Read(garbage)
	badHeader := ipv4(60, 40)
	badHeader[0] = 0x41 // a 4-byte IPv4 header cannot be
	return [][]byte{
		garbage,                      // whatever it is, not a packet
		{0, 0},                       // shorter than the family word
		af(2, badHeader),             // malformed
		af(2, ipv4(120, 20)),         // truncated: header says 120, 40 present
		af(2, ipv4(20000, 20000-20)), // oversized: beyond the frame limit
		af(24, ipv4(60, 40)),         // family: IPv4 behind the IPv6 family
		af(2, append([]byte{0x60}, make([]byte, 47)...)), // family: IPv6 behind the IPv4 family
	}
}

// goKey makes an Ed25519 key for the x/crypto client and its
// authorized_keys line.
func goKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	s := gatewaytest.NewSigner(t)
	return s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

// Everything the gateway created is gone when a client leaves and when
// the gateway stops, by SIGINT or SIGTERM.
func TestTeardown(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			tp := newTopo(t)
			priv, pub := tp.key(t, o, "client")
			// Once the underlay answers, the veths' carrier is settled.
			nstest.Ping(t, tp.client, underGW.Addr().String(), 1)
			before := hostState(t, tp.gw)
			gw := tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(),
				"--tun-address", "2001:2:0:3::1/64", "--nat")
			l3 := tp.sshTunnel(t, o, priv, "point-to-point", "0:any", "-N")
			waitTunnel(t, tp.client, "tun0", l3, gw, 1)
			l2 := tp.sshTunnel(t, o, priv, "ethernet", "0:any", "-N")
			waitTunnel(t, tp.client, "tap0", l2, gw, 2)
			during := hostState(t, tp.gw)
			for _, want := range []string{"tun0", "tap0", "198.18.3.1/24", "2001:2:0:3::1/64", "masquerade", "ip_forward=1"} {
				if !strings.Contains(during, want) {
					t.Fatalf("while running, the gateway's state lacks %q:\n%s", want, during)
				}
			}

			l2.Signal(syscall.SIGTERM)
			nstest.WaitFor(t, 10*time.Second, "tap0 removed after its client left", func() bool {
				return !strings.Contains(tp.gw.Run(t, "ip", "-o", "link"), "tap0")
			})
			gw.Signal(sig)
			if err := gw.Wait(15 * time.Second); err != nil {
				t.Fatalf("gateway did not exit on %v: %v\n%s", sig, err, gw.Log())
			}
			if code := gw.ExitCode(); code != 0 {
				t.Errorf("gateway exit code %d on %v", code, sig)
			}
			if after := hostState(t, tp.gw); after != before {
				t.Errorf("the gateway left state behind after %v.\nbefore:\n%s\nafter:\n%s", sig, before, after)
			}
		})
	}
}

// hostState is what the gateway may change: links, addresses, routes, the
// NAT table and the forwarding sysctls.
func hostState(t *testing.T, ns *nstest.NS) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-o", "-d", "link"}, {"ip", "-o", "addr"}, {"ip", "route"}, {"ip", "-6", "route"},
		{"nft", "list", "ruleset"},
		{"sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"},
	} {
		b.WriteString("$ " + strings.Join(args, " ") + "\n")
		for _, l := range strings.Split(ns.Run(t, args...), "\n") {
			if strings.Contains(l, "fe80::") {
				continue // link-local addresses come and go with carrier
			}
			l = carrierRE.ReplaceAllString(l, "")
			b.WriteString(strings.ReplaceAll(l, " = ", "=") + "\n")
		}
	}
	return b.String()
}

// carrierRE matches what a veth's carrier changes on its own after the
// namespaces are linked; the gateway never touches it.
var carrierRE = regexp.MustCompile(`NO-CARRIER,|state (UP|DOWN|UNKNOWN) `)

// A client that stops answering (its machine froze, its network vanished)
// is disconnected after ClientAliveInterval×CountMax, and its device and
// address go with it.
func TestDeadClientIsReaped(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	priv, pub := tp.key(t, o, "client")
	gw := tp.startGateway(t, pub+"\n", "--tun-address", tunGW.String(),
		"--client-alive-interval", "500ms", "--client-alive-count-max", "2")
	// -v: the client logs each keepalive it is sent (and answers).
	ssh := tp.sshTunnel(t, o, priv, "point-to-point", "0:any", "-N", "-v")
	waitTunnel(t, tp.client, "tun0", ssh, gw, 1)
	upClient(t, tp.client, "tun0", tunClient)
	// Answered keepalives keep it up: four of them span three intervals,
	// more than the interval×count-max (1 s) after which an unanswered
	// client is dropped.
	const keepalive = "rtype keepalive@openssh.com want_reply 1"
	nstest.WaitFor(t, 10*time.Second, "4 keepalives at the client", func() bool {
		if ssh.Exited() {
			t.Fatalf("ssh exited: %s", ssh.Log())
		}
		return strings.Count(ssh.Log(), keepalive) >= 4
	})
	if log := gw.Log(); strings.Contains(log, "tunnel down") || strings.Contains(log, "client not responding") {
		t.Fatalf("a live client was disconnected:\n%s", log)
	}
	nstest.Ping(t, tp.client, tunGW.Addr().String(), 2)
	ssh.Signal(syscall.SIGSTOP)
	defer ssh.Signal(syscall.SIGCONT)
	stopped := time.Now()
	nstest.WaitFor(t, 10*time.Second, "the frozen client's tunnel torn down", func() bool {
		return strings.Contains(gw.Log(), "tunnel down") && !strings.Contains(tp.gw.Run(t, "ip", "-o", "link"), "tun0")
	})
	t.Logf("reaped %v after the client froze", time.Since(stopped).Round(100*time.Millisecond))
	if !strings.Contains(gw.Log(), "client not responding") {
		t.Errorf("the gateway did not say why:\n%s", gw.Log())
	}
}

//go:build integration

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The rootless gateway's virtual subnet in these tests: the first address
// is the gateway's, and its DNS.
var rootlessSubnet = netip.MustParsePrefix("198.18.3.0/24")

// startRootless runs sshvpn serve with the default backend as uid 65534,
// its files in a directory that uid owns, its DNS forwarded to the LAN
// host's server. The namespace lets that uid open ping sockets (the
// sysctl is per namespace, and set before anything is compared).
func (tp *topo) startRootless(t *testing.T, authKeys string, args ...string) *gatewayProc {
	t.Helper()
	return tp.startRootlessPinging(t, "0 2147483647", authKeys, args...)
}

// startRootlessPinging is startRootless with the namespace's
// net.ipv4.ping_group_range set to pingGroups first.
func (tp *topo) startRootlessPinging(t *testing.T, pingGroups, authKeys string, args ...string) *gatewayProc {
	t.Helper()
	nstest.RequireTool(t, "setpriv")
	tp.gw.Run(t, "sysctl", "-qw", "net.ipv4.ping_group_range="+pingGroups)
	dir, err := os.MkdirTemp("/tmp", "sshvpn-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	keys := filepath.Join(dir, "authorized_keys")
	resolv := filepath.Join(dir, "resolv.conf")
	for path, body := range map[string]string{keys: authKeys, resolv: "nameserver " + lanHost.Addr().String() + "\n"} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		sshvpnBin, "serve", "--listen", gwListen, "--host-key", filepath.Join(dir, "host_key"),
		"--authorized-keys", keys, "--resolv-conf", resolv, "--subnet", rootlessSubnet.String()}, args...)
	p := tp.gw.Start(t, argv...)
	nstest.WaitFor(t, 10*time.Second, "rootless sshvpn serve listening", func() bool {
		if p.Exited() {
			t.Fatalf("sshvpn serve exited: %s", p.Log())
		}
		return strings.Contains(p.Log(), "listening")
	})
	if !strings.Contains(p.Log(), "backend=netstack") {
		t.Fatalf("the default backend is not netstack: %s", p.Log())
	}
	return &gatewayProc{Proc: p, keys: keys}
}

// The rootless gateway's IPv6 subnet; the LAN link's IPv6 addresses are
// the full-tunnel tests' lanGW6 and lanHost6.
var subnet6 = netip.MustParsePrefix("2001:2:0:3::/64")

// addLAN6 puts IPv6 on the gateway–LAN link (without DAD, so that it can
// be bound at once) and an HTTP server on the LAN host's IPv6 address.
func (tp *topo) addLAN6(t *testing.T) {
	t.Helper()
	for _, x := range []struct {
		ns   *nstest.NS
		addr netip.Prefix
	}{{tp.gw, lanGW6}, {tp.lan, lanHost6}} {
		dev := strings.Fields(x.ns.Run(t, "ip", "-o", "addr", "show", "to", lanGW.Masked().String()))[1]
		x.ns.Run(t, "ip", "-6", "addr", "add", x.addr.String(), "dev", dev, "nodad")
	}
	udpEcho(t, tp.lan, "["+lanHost6.Addr().String()+"]:7")
	ln := tp.lan.Listen(t, "tcp", "["+lanHost6.Addr().String()+"]:80")
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the lan, %s\n", r.RemoteAddr)
	}))
}

// lanServices runs an HTTP server on the LAN host's port 80 and a DNS
// server answering lan.test. there.
func (tp *topo) lanServices(t *testing.T) {
	t.Helper()
	ln := tp.lan.Listen(t, "tcp", lanHost.Addr().String()+":80")
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the lan, %s\n", r.RemoteAddr)
	}))
	udpEcho(t, tp.lan, lanHost.Addr().String()+":7")
	pc := tp.lan.ListenPacket(t, "udp", lanHost.Addr().String()+":53")
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 && q.Question[0].Name == "lan.test." && q.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR("lan.test. 60 IN A " + lanHost.Addr().String())
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
}

// udpEcho answers each datagram to addr with itself.
func udpEcho(t *testing.T, ns *nstest.NS, addr string) {
	pc := ns.ListenPacket(t, "udp", addr)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// checkUDPEcho sends datagrams to addr's echo service from ns and wants
// each back.
func checkUDPEcho(t *testing.T, ns *nstest.NS, addr string) {
	t.Helper()
	ns.Do(t, func() {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatalf("udp to %s: %v", addr, err)
		}
		defer c.Close()
		for i, size := range []int{1, 1200, 8000} {
			msg := []byte(strings.Repeat(fmt.Sprint(i), size))
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(msg); err != nil {
				t.Fatalf("udp to %s: %v", addr, err)
			}
			buf := make([]byte, 65536)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != string(msg) {
				t.Fatalf("udp echo from %s of %d bytes: got %d bytes, %v", addr, size, n, err)
			}
		}
	})
}

// httpGet fetches url with curl from inside ns (Go's HTTP client dials on
// goroutines of its own, which may run outside the namespace).
func httpGet(t *testing.T, ns *nstest.NS, url string) (string, error) {
	t.Helper()
	nstest.RequireTool(t, "curl")
	out, err := ns.Cmd("curl", "-sS", "-m", "10", "--fail", url).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("curl %s: %v: %s", url, err, out)
	}
	return string(out), nil
}

// The rootless gateway with stock ssh -w: the LAN has no route back to the
// tunnel subnet, so every flow is proven NATed; the gateway process has
// no privilege and leaves the host as it found it.
func TestRootlessGateway(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		tp.lanServices(t)
		tp.addLAN6(t)
		// The gateway host's own service, on loopback only.
		local := tp.gw.Listen(t, "tcp", "127.0.0.1:8080")
		go http.Serve(local, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "gateway loopback\n") }))
		// The test's own setup, before the comparison: startRootless sets it.
		tp.gw.Run(t, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
		before := untouchedState(t, tp.gw)
		priv, pub := tp.key(t, o, "client")
		gw := tp.startRootless(t, pub+"\n", "--subnet", subnet6.String())

		ssh := tp.sshTunnel(t, o, priv, "point-to-point", "any:any")
		yours := regexp.MustCompile(`your address (198\.18\.3\.\d+/24), the gateway's 198\.18\.3\.1`)
		nstest.WaitFor(t, 15*time.Second, "status text", func() bool {
			if ssh.Exited() {
				t.Fatalf("ssh exited: %s", ssh.Log())
			}
			return yours.MatchString(ssh.Log())
		})
		mine := netip.MustParsePrefix(yours.FindStringSubmatch(ssh.Log())[1])
		if mine.Addr().As4()[3] < 128 {
			t.Errorf("address %s not in the subnet's upper half", mine)
		}
		tp.client.Run(t, "ip", "link", "set", "tun0", "mtu", "16380")
		upClient(t, tp.client, "tun0", mine, lanHost.Masked())
		yours6 := regexp.MustCompile(`your address (2001:2:0:3:[0-9a-f:]+/64), the gateway's 2001:2:0:3::1`)
		m6 := yours6.FindStringSubmatch(ssh.Log())
		if m6 == nil {
			t.Fatalf("no IPv6 address in the status text:\n%s", ssh.Log())
		}
		tp.client.Run(t, "ip", "-6", "addr", "add", m6[1], "dev", "tun0", "nodad")
		tp.client.Run(t, "ip", "-6", "route", "add", lanHost6.Masked().String(), "dev", "tun0")

		// a, IPv6: NAT66 to the LAN, which has no route back either.
		if body, err := httpGet(t, tp.client, "http://["+lanHost6.Addr().String()+"]/"); err != nil || !strings.Contains(body, "hello from the lan, ["+lanGW6.Addr().String()+"]:") {
			t.Fatalf("HTTP over IPv6 to the LAN: %q %v", body, err)
		}
		nstest.Ping(t, tp.client, lanHost6.Addr().String(), 2)
		checkUDPEcho(t, tp.client, "["+lanHost6.Addr().String()+"]:7")
		up6 := nstest.Transfer(t, tp.lan, "["+lanHost6.Addr().String()+"]:0", tp.client, lanHost6.Addr().String(), 100<<20, false)
		down6 := nstest.Transfer(t, tp.lan, "["+lanHost6.Addr().String()+"]:0", tp.client, lanHost6.Addr().String(), 100<<20, true)
		t.Logf("IPv6: upload %v, download %v", up6, down6)

		// a: HTTP, 100 MiB each way, ping, DNS through the gateway's address.
		if body, err := httpGet(t, tp.client, "http://"+lanHost.Addr().String()+"/"); err != nil || !strings.Contains(body, "hello from the lan, 198.18.2.1:") {
			t.Fatalf("HTTP to the LAN: %q %v (the LAN must see the gateway's address)", body, err)
		}
		up := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 100<<20, false)
		down := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 100<<20, true)
		t.Logf("OpenSSH %s → rootless gateway: upload %v, download %v", o.Version, up, down)
		nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
		checkUDPEcho(t, tp.client, lanHost.Addr().String()+":7")
		if nstest.CanPing(tp.client, "198.18.2.99") {
			t.Fatal("a ping to a host that does not exist was answered")
		}
		var answer *dns.Msg
		tp.client.Do(t, func() {
			q := new(dns.Msg)
			q.SetQuestion("lan.test.", dns.TypeA)
			for _, server := range []string{"198.18.3.1:53", "[2001:2:0:3::1]:53"} {
				for _, net := range []string{"udp", "tcp"} {
					c := &dns.Client{Net: net, Timeout: 5 * time.Second}
					var err error
					if answer, _, err = c.Exchange(q, server); err != nil {
						t.Errorf("DNS over %s through the gateway's %s: %v", net, server, err)
						return
					}
				}
			}
		})
		if answer == nil || len(answer.Answer) != 1 || !strings.Contains(answer.Answer[0].String(), lanHost.Addr().String()) {
			t.Fatalf("DNS answer through the gateway: %v", answer)
		}

		// b: the gateway host's loopback is refused, at once.
		start := time.Now()
		if _, err := httpGet(t, tp.client, "http://198.18.3.1:8080/"); err == nil || time.Since(start) > 3*time.Second {
			t.Fatalf("the gateway's loopback service was reachable or refused slowly (%v): %v", time.Since(start), err)
		}

		// g: rootless, and the host untouched.
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", gw.PID()))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^Uid:\s+65534\s`).Match(status) || !regexp.MustCompile(`(?m)^CapEff:\s+0+$`).Match(status) {
			t.Fatalf("the gateway is not unprivileged:\n%s", status)
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", gw.PID()))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", gw.PID(), fd.Name())); strings.Contains(l, "/dev/net/tun") {
				t.Fatalf("the gateway holds %s", l)
			}
		}
		if during := untouchedState(t, tp.gw); during != before {
			t.Fatalf("the gateway host changed while tunnels ran:\nbefore:\n%s\nduring:\n%s", before, during)
		}
		ssh.Signal(os.Interrupt)
		nstest.WaitFor(t, 10*time.Second, "tunnel down", func() bool { return strings.Contains(gw.Log(), "tunnel down") })
		if after := untouchedState(t, tp.gw); after != before {
			t.Fatalf("the gateway host changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// untouchedState is what a rootless gateway must never change: hostState
// and every routing table, rule and net sysctl.
func untouchedState(t *testing.T, ns *nstest.NS) string {
	t.Helper()
	b := strings.Builder{}
	b.WriteString(hostState(t, ns))
	for _, cmd := range [][]string{{"ip", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"}, {"ip", "rule"}, {"ip", "-6", "rule"}} {
		for _, l := range strings.Split(ns.Run(t, cmd...), "\n") {
			if !strings.Contains(l, "fe80::") {
				b.WriteString(l + "\n")
			}
		}
	}
	for _, line := range strings.Split(ns.Run(t, "sysctl", "-a"), "\n") {
		if strings.HasPrefix(line, "net.") && !strings.Contains(line, "nf_conntrack_count") && !strings.Contains(line, "stable_secret") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// c: ssh -D and ssh -L through the rootless gateway, with no tun on either
// side; the gateway's loopback stays refused through them too, until
// --allow opens it.
func TestRootlessForwarding(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		tp := newTopo(t)
		tp.lanServices(t)
		local := tp.gw.Listen(t, "tcp", "127.0.0.1:8080")
		go http.Serve(local, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "gateway loopback\n") }))
		priv, pub := tp.key(t, o, "client")
		for _, allow := range []bool{false, true} {
			var args []string
			if allow {
				args = []string{"--allow", "127.0.0.1:8080/tcp"}
			}
			gw := tp.startRootless(t, pub+"\n", args...)
			ssh := tp.client.Start(t, o.ClientArgs(t, priv, "", "-N", "-p", "2222", "-o", "ExitOnForwardFailure=yes",
				"-D", "127.0.0.1:1080", "-L", "127.0.0.1:8081:"+lanHost.Addr().String()+":80", "-L", "127.0.0.1:8082:127.0.0.1:8080",
				"root@"+underGW.Addr().String())...)
			nstest.WaitFor(t, 10*time.Second, "ssh forwards listening", func() bool {
				if ssh.Exited() {
					t.Fatalf("ssh exited: %s", ssh.Log())
				}
				c, err := tp.client.Dial(t, "tcp", "127.0.0.1:8081")
				if err == nil {
					c.Close()
				}
				return err == nil
			})
			if body, err := httpGet(t, tp.client, "http://127.0.0.1:8081/"); err != nil || !strings.Contains(body, "hello from the lan") {
				t.Fatalf("ssh -L to the LAN: %q %v", body, err)
			}
			out, err := tp.client.Cmd("curl", "-s", "-m", "10", "--socks5-hostname", "127.0.0.1:1080", "http://"+lanHost.Addr().String()+"/").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "hello from the lan") {
				t.Fatalf("ssh -D SOCKS to the LAN: %q %v", out, err)
			}
			body, err := httpGet(t, tp.client, "http://127.0.0.1:8082/")
			if got := err == nil && strings.Contains(body, "gateway loopback"); got != allow {
				t.Fatalf("allow=%v: ssh -L to the gateway's 127.0.0.1:8080 reached it: %v (%q %v)\n%s", allow, got, body, err, ssh.Log())
			}
			for _, ns := range []*nstest.NS{tp.client, tp.gw} {
				if l := ns.Run(t, "ip", "-o", "link"); strings.Contains(l, "tun") {
					t.Fatalf("a tun device in %s: %s", ns, l)
				}
			}
			ssh.Signal(os.Interrupt)
			ssh.Wait(5 * time.Second)
			gw.Signal(os.Interrupt)
			if err := gw.Wait(10 * time.Second); err != nil {
				t.Fatalf("the gateway did not stop cleanly: %v\n%s", err, gw.Log())
			}
		}
	})
}

// sshvpn connect needs no flag against a rootless gateway: it takes the
// address, the MTU, the routes the gateway names and its DNS address.
func TestRootlessSSHVPNClient(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanServices(t)
	priv, pub := tp.key(t, o, "client")
	tp.startRootless(t, pub+"\n", "--route", lanHost.Masked().String())
	c := tp.client.Start(t, connectArgs(priv, "", "-p", "2222", "root@198.18.1.1")...)
	waitUp(t, c, 1)
	link := tp.client.Run(t, "ip", "-o", "addr", "show", "dev", "tun0")
	if !regexp.MustCompile(`inet 198\.18\.3\.\d+/24`).MatchString(link) {
		t.Fatalf("the gateway's address was not applied: %s", link)
	}
	if mtu := tp.client.Run(t, "cat", "/sys/class/net/tun0/mtu"); strings.TrimSpace(mtu) != "65535" {
		t.Errorf("tun0 MTU %s, want the gateway's 65535 for a framed channel", mtu)
	}
	nstest.Ping(t, tp.client, lanHost.Addr().String(), 2)
	if body, err := httpGet(t, tp.client, "http://"+lanHost.Addr().String()+"/"); err != nil || !strings.Contains(body, "hello from the lan") {
		t.Fatalf("HTTP to the LAN: %q %v", body, err)
	}
	up := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 100<<20, false)
	down := nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 100<<20, true)
	t.Logf("sshvpn connect → rootless gateway: upload %v, download %v", up, down)
}

// e and f: tunnels that come and go leave the gateway's fds and threads
// where they were, and many clients at once each get through; the
// gateway's resident memory per client is reported.
func TestRootlessClientsComeAndGo(t *testing.T) {
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanServices(t)
	priv, pub := tp.key(t, o, "client")
	gw := tp.startRootless(t, pub+"\n")
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", gw.PID()))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	rss := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", gw.PID()))
		if err != nil {
			t.Fatal(err)
		}
		var kb int64
		if m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b); m != nil {
			fmt.Sscan(string(m[1]), &kb)
		}
		return kb << 10
	}
	// One tunnel first, so that what is made once (the DNS forwarder's
	// state, the runtime's threads) is in the baseline.
	warm := tp.sshTunnel(t, o, priv, "point-to-point", "any:any", "-N")
	nstest.WaitFor(t, 10*time.Second, "first tunnel", func() bool { return strings.Count(gw.Log(), "tunnel up") >= 1 })
	warm.Signal(os.Interrupt)
	nstest.WaitFor(t, 10*time.Second, "first tunnel down", func() bool { return strings.Count(gw.Log(), "tunnel down") >= 1 })
	// goroutines asks the gateway for its footprint line (SIGUSR1).
	goroutines := func() int64 {
		n := strings.Count(gw.Log(), `msg=footprint`)
		gw.Signal(syscall.SIGUSR1)
		nstest.WaitFor(t, 5*time.Second, "footprint line", func() bool { return strings.Count(gw.Log(), `msg=footprint`) > n })
		return counter(gw.Log(), "goroutines")
	}
	baseFDs, baseRSS, baseG := fds(), rss(), goroutines()

	const cycles, batch = 200, 8
	for i := 0; i < cycles; i += batch {
		var procs []*nstest.Proc
		for j := 0; j < batch; j++ {
			procs = append(procs, tp.sshTunnel(t, o, priv, "point-to-point", "any:any", "-N"))
		}
		want := 1 + i + batch
		nstest.WaitFor(t, 20*time.Second, "tunnels up", func() bool { return strings.Count(gw.Log(), "tunnel up") >= want })
		for _, p := range procs {
			p.Signal(os.Interrupt)
		}
		nstest.WaitFor(t, 20*time.Second, "tunnels down", func() bool { return strings.Count(gw.Log(), "tunnel down") >= want })
		for _, p := range procs {
			p.Wait(5 * time.Second)
		}
	}
	nstest.WaitFor(t, 10*time.Second, "fds and goroutines back at the baseline", func() bool { return fds() <= baseFDs && goroutines() <= baseG })
	t.Logf("after %d tunnels: %d fds (baseline %d), %d goroutines (baseline %d), RSS %d KiB (baseline %d KiB)",
		cycles, fds(), baseFDs, counter(gw.Log(), "goroutines"), baseG, rss()>>10, baseRSS>>10)

	// f: many stock clients at once, each its own key and so its own
	// address, each pinging and fetching from the LAN through its own tun
	// (source routing picks the tun in the one client namespace).
	const clients = 100
	var keys strings.Builder
	privs := make([]string, clients)
	for i := range privs {
		var pub string
		privs[i], pub = tp.key(t, o, fmt.Sprintf("c%d", i))
		keys.WriteString(pub + "\n")
	}
	if err := os.WriteFile(gw.keys, []byte(keys.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	yours := regexp.MustCompile(`your address (198\.18\.3\.\d+)/24`)
	goroutines()
	before, heapBefore := rss(), counter(gw.Log(), "heap_inuse")
	for i, priv := range privs {
		ssh := tp.sshTunnel(t, o, priv, "point-to-point", fmt.Sprintf("%d:any", i), "-o", "RequestTTY=no")
		dev := fmt.Sprintf("tun%d", i)
		nstest.WaitFor(t, 15*time.Second, dev+" status", func() bool {
			if ssh.Exited() {
				t.Fatalf("client %d: ssh exited: %s", i, ssh.Log())
			}
			return yours.MatchString(ssh.Log())
		})
		a := yours.FindStringSubmatch(ssh.Log())[1]
		table := fmt.Sprint(100 + i)
		tp.client.Run(t, "ip", "addr", "add", a+"/32", "dev", dev)
		tp.client.Run(t, "ip", "link", "set", dev, "up")
		tp.client.Run(t, "ip", "route", "add", lanHost.Masked().String(), "dev", dev, "table", table)
		tp.client.Run(t, "ip", "rule", "add", "from", a, "lookup", table)
		defer func() {
			if out, err := tp.client.Cmd("ping", "-n", "-q", "-c", "1", "-W", "5", "-I", a, lanHost.Addr().String()).CombinedOutput(); err != nil {
				t.Errorf("client %d (%s): ping: %v\n%s", i, a, err, out)
			}
			if out, err := tp.client.Cmd("curl", "-sS", "-m", "10", "--interface", a, "http://"+lanHost.Addr().String()+"/").CombinedOutput(); err != nil || !strings.Contains(string(out), "hello from the lan") {
				t.Errorf("client %d (%s): HTTP: %v %s", i, a, err, out)
			}
		}()
	}
	goroutines()
	with, heapWith := rss(), counter(gw.Log(), "heap_inuse")
	t.Logf("rootless gateway with %d idle clients: RSS %d → %d KiB, Go heap in use %d → %d KiB: %d KiB resident and %d KiB of heap spans per client",
		clients, before>>10, with>>10, heapBefore>>10, heapWith>>10, (with-before)/clients>>10, (heapWith-heapBefore)/clients>>10)
}

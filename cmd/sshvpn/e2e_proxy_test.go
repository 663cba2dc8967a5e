//go:build integration

package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/proxy"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The rootless client's tests: sshvpn connect runs as uid 65534 with no
// capabilities, in a mount namespace of its own whose /etc/resolv.conf
// names a resolver in the client namespace that counts every query it
// gets: names in proxy requests must be resolved at the far end, so it
// must count none.

// The ports the rootless client listens on in the client namespace.
const (
	socksPort = "1080"
	httpPort  = "3128"
	webPort   = "8000" // the LAN's web server for these tests
)

// lanWeb serves, on the LAN host's port 8000 (both families): / a greeting,
// /big 100 MiB of seeded bytes, and /sum the SHA-256 of a request's body.
func (tp *topo) lanWeb(t *testing.T) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the lan web, %s\n", r.RemoteAddr)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(bigSize))
		io.Copy(w, bigBody())
	})
	mux.HandleFunc("/sum", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x\n", n, h.Sum(nil))
	})
	for _, a := range []string{lanHost.Addr().String() + ":" + webPort} {
		ln := tp.lan.Listen(t, "tcp", a)
		srv := &http.Server{Handler: mux}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
}

// bigSize is the byte-for-byte transfers' size each way.
const bigSize = 100 << 20

// bigBody is the seeded content of /big and of the upload.
func bigBody() io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{'s', 's', 'h', 'v', 'p', 'n'}), bigSize)
}

var bigSum = sync.OnceValue(func() string {
	h := sha256.New()
	io.Copy(h, bigBody())
	return hex.EncodeToString(h.Sum(nil))
})

// leakWatch is a DNS server on the client namespace's loopback that counts
// the queries it gets, and the resolv.conf that names it.
type leakWatch struct {
	resolvConf string
	mu         sync.Mutex
	names      []string
}

func (tp *topo) watchLeaks(t *testing.T) *leakWatch {
	t.Helper()
	w := &leakWatch{resolvConf: filepath.Join(t.TempDir(), "resolv.conf")}
	if err := os.WriteFile(w.resolvConf, []byte("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tp.client.Run(t, "ip", "link", "set", "lo", "up")
	pc := tp.client.ListenPacket(t, "udp", "127.0.0.1:53")
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(rw dns.ResponseWriter, q *dns.Msg) {
		w.mu.Lock()
		for _, x := range q.Question {
			w.names = append(w.names, x.Name)
		}
		w.mu.Unlock()
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeNameError)
		rw.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return w
}

func (w *leakWatch) seen() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.names...)
}

// heardNothing fails the test if the client host's resolver was asked
// anything: a name leaked.
func (w *leakWatch) heardNothing(t *testing.T) {
	t.Helper()
	if names := w.seen(); len(names) > 0 {
		t.Fatalf("the client host's resolver was asked %v: names leaked", names)
	}
}

// stopClean stops the client with Ctrl-C and wants it gone cleanly, the
// client host as it was before it started, and no name leaked.
func stopClean(t *testing.T, c *nstest.Proc, ns *nstest.NS, before string, w *leakWatch) {
	t.Helper()
	c.Signal(os.Interrupt)
	if err := c.Wait(10 * time.Second); err != nil {
		t.Fatalf("sshvpn connect did not stop cleanly: %v\n%s", err, c.Log())
	}
	if after := untouchedState(t, ns); after != before {
		t.Fatalf("the client host changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	w.heardNothing(t)
}

// throughEveryProxy fetches web (a name the far end's DNS knows) through
// SOCKS5 with the name resolved by the proxy, SOCKS4a and the HTTP
// proxies, and moves 100 MiB each way byte for byte through SOCKS5.
func throughEveryProxy(t *testing.T, ns *nstest.NS, c *nstest.Proc, web string) {
	t.Helper()
	for _, flag := range []string{"--socks5-hostname", "--socks4a"} {
		if body, err := socksGet(ns, flag, web+"/"); err != nil || !strings.Contains(body, "hello from the lan web") {
			t.Fatalf("curl %s to a name only the far end's DNS knows: %q %v\n%s", flag, body, err, c.Log())
		}
	}
	bigThrough(t, ns, web, "--socks5-hostname", "127.0.0.1:"+socksPort)
	throughHTTPProxy(t, ns, web+"/")
}

// throughHTTPProxy fetches url through the HTTP proxies with curl: plain
// requests and CONNECT on the --http-proxy port, and a plain request on
// the -D port, which answers HTTP too.
func throughHTTPProxy(t *testing.T, ns *nstest.NS, url string) {
	t.Helper()
	httpProxy := "http://127.0.0.1:" + httpPort
	for _, args := range [][]string{{"-x", httpProxy}, {"-p", "-x", httpProxy}, {"-x", "http://127.0.0.1:" + socksPort}} {
		out, err := ns.Cmd(append(append([]string{"curl", "-sS", "-m", "20", "--fail"}, args...), url)...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "hello from the lan web") {
			t.Fatalf("curl %v (the HTTP proxy): %q %v", args, out, err)
		}
	}
}

// rootlessClient runs sshvpn connect in ns as uid 65534 with no
// capabilities, /etc/resolv.conf replaced by w's in a mount namespace of
// its own, and waits for the line that says its connection is up.
func rootlessClient(t *testing.T, ns *nstest.NS, w *leakWatch, priv string, args ...string) *nstest.Proc {
	t.Helper()
	nstest.RequireTool(t, "setpriv")
	nstest.RequireTool(t, "unshare")
	dir, err := os.MkdirTemp("/tmp", "sshvpn-rootless-client-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	key := filepath.Join(dir, "id")
	b, err := os.ReadFile(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, key} {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	argv := connectArgs(key, "", append([]string{"--state-dir", filepath.Join(dir, "state")}, args...)...)
	script := fmt.Sprintf(`mount --bind %s /etc/resolv.conf && HOME=%s exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all "$@"`, w.resolvConf, dir)
	p := ns.Start(t, append([]string{"unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"}, argv...)...)
	nstest.WaitFor(t, 20*time.Second, "sshvpn connect: connection up", func() bool {
		if p.Exited() {
			t.Fatalf("sshvpn connect exited: %s", p.Log())
		}
		return strings.Contains(p.Log(), `msg="tunnel up"`) || strings.Contains(p.Log(), `msg="connection up"`)
	})
	return p
}

// checkUnprivileged fails unless p runs as uid 65534 with no capabilities
// and holds no tun device open.
func checkUnprivileged(t *testing.T, p *nstest.Proc) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`(?m)^Uid:\s+65534\s+65534\s+65534\s+65534$`, `(?m)^CapEff:\s+0+$`, `(?m)^CapPrm:\s+0+$`} {
		if !regexp.MustCompile(want).Match(status) {
			t.Fatalf("the client is not unprivileged: want %s in\n%s", want, status)
		}
	}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", p.PID()))
	for _, fd := range fds {
		if target, _ := os.Readlink(fd); target == "/dev/net/tun" {
			t.Fatalf("the client holds %s open", target)
		}
	}
}

// socksGet fetches url from ns with curl through the SOCKS5 proxy, the
// name resolved by the proxy.
func socksGet(ns *nstest.NS, flag, url string) (string, error) {
	out, err := ns.Cmd("curl", "-sS", "-m", "20", "--fail", flag, "127.0.0.1:"+socksPort, url).CombinedOutput()
	return string(out), err
}

// bigThrough downloads /big and uploads the same bytes to /sum through
// curl with proxyArgs, and checks both byte for byte.
func bigThrough(t *testing.T, ns *nstest.NS, base string, proxyArgs ...string) {
	t.Helper()
	start := time.Now()
	args := append([]string{"sh", "-c", `curl -sS -m 120 --fail "$@" | sha256sum`, "sh"}, proxyArgs...)
	out, err := ns.Cmd(append(args, base+"/big")...).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), bigSum()) {
		t.Fatalf("download of %d bytes through %v: %q %v, want sha256 %s", bigSize, proxyArgs, out, err, bigSum())
	}
	down := time.Since(start)
	file := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(f, bigBody())
	f.Close()
	start = time.Now()
	out, err = ns.Cmd(append(append([]string{"curl", "-sS", "-m", "120", "--fail", "-T", file}, proxyArgs...), base+"/sum")...).CombinedOutput()
	if want := fmt.Sprintf("%d %s", bigSize, bigSum()); err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("upload of %d bytes through %v: %q %v, want %q", bigSize, proxyArgs, out, err, want)
	}
	up := time.Since(start)
	mbit := func(d time.Duration) string { return fmt.Sprintf("%.0f Mbit/s", float64(bigSize)*8/d.Seconds()/1e6) }
	t.Logf("100 MiB through %v: download %s, upload %s", proxyArgs, mbit(down), mbit(up))
}

// socksUDP sends payload to dst through a SOCKS5 UDP association made
// from ns, and returns the first answer and the address the proxy says it
// came from.
func socksUDP(t *testing.T, ns *nstest.NS, dst netip.AddrPort, payload []byte) ([]byte, netip.AddrPort) {
	t.Helper()
	var ctl net.Conn
	var udp net.PacketConn
	ns.Do(t, func() {
		var err error
		if ctl, err = net.Dial("tcp", "127.0.0.1:"+socksPort); err != nil {
			t.Fatal(err)
		}
		if udp, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	defer ctl.Close()
	defer udp.Close()
	ctl.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(ctl)
	ctl.Write([]byte{5, 1, 0})
	var hello [2]byte
	if _, err := io.ReadFull(r, hello[:]); err != nil || hello != [2]byte{5, 0} {
		t.Fatalf("SOCKS5 greeting: %v %v", hello, err)
	}
	// UDP ASSOCIATE, naming the port the datagrams will come from.
	lp := udp.LocalAddr().(*net.UDPAddr).Port
	ctl.Write([]byte{5, 3, 0, 1, 127, 0, 0, 1, byte(lp >> 8), byte(lp)})
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil || head[1] != 0 {
		t.Fatalf("UDP ASSOCIATE refused: %v %v", head, err)
	}
	if head[3] != 1 {
		t.Fatalf("UDP ASSOCIATE bound to address type %d, want IPv4 (the listener's)", head[3])
	}
	var bnd [6]byte
	io.ReadFull(r, bnd[:])
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(bnd[:4])), binary.BigEndian.Uint16(bnd[4:]))
	msg := []byte{0, 0, 0}
	if dst.Addr().Is4() {
		a := dst.Addr().As4()
		msg = append(append(msg, 1), a[:]...)
	} else {
		a := dst.Addr().As16()
		msg = append(append(msg, 4), a[:]...)
	}
	msg = binary.BigEndian.AppendUint16(msg, dst.Port())
	msg = append(msg, payload...)
	buf := make([]byte, 65536)
	for try := 0; try < 5; try++ {
		if _, err := udp.WriteTo(msg, net.UDPAddrFromAddrPort(relay)); err != nil {
			t.Fatal(err)
		}
		udp.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := udp.ReadFrom(buf)
		if err != nil {
			continue
		}
		b := buf[:n]
		if len(b) < 10 || b[2] != 0 {
			t.Fatalf("a malformed SOCKS5 UDP reply: %x", b)
		}
		var from netip.AddrPort
		switch b[3] {
		case 1:
			from = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[8:10]))
			b = b[10:]
		case 4:
			from = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[4:20])), binary.BigEndian.Uint16(b[20:22]))
			b = b[22:]
		default:
			t.Fatalf("SOCKS5 UDP reply with address type %d", b[3])
		}
		return append([]byte(nil), b...), from
	}
	t.Fatalf("no UDP answer from %s through the SOCKS5 association", dst)
	return nil, netip.AddrPort{}
}

// dnsQuery is a DNS query for name's A record, as bytes.
func dnsQuery(t *testing.T, name string) []byte {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkDNSAnswer wants b to answer name with addr.
func checkDNSAnswer(t *testing.T, b []byte, name string, addr netip.Addr) {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("the DNS answer through SOCKS5 UDP does not parse: %v", err)
	}
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok && a.Hdr.Name == dns.Fqdn(name) && a.A.String() == addr.String() {
			return
		}
	}
	t.Fatalf("the DNS answer through SOCKS5 UDP lacks %s A %s: %v", name, addr, m)
}

// a and f: no root anywhere. The rootless gateway, and an unprivileged
// sshvpn connect -D and --http-proxy into it: a name only the gateway's
// DNS knows, 100 MiB each way byte for byte, the HTTP proxy's CONNECT and
// plain requests, IPv6, and a DNS query through SOCKS5 UDP ASSOCIATE; the
// client host does not change and its resolver hears nothing.
func TestRootlessClientSOCKS(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "curl")
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanServices(t)
	tp.lanWeb(t)
	tp.addLAN6(t)
	w := tp.watchLeaks(t)
	priv, pub := tp.key(t, o, "client")
	tp.startRootless(t, pub+"\n", "--subnet", subnet6.String())
	before := untouchedState(t, tp.client)
	c := rootlessClient(t, tp.client, w, priv, "-D", "127.0.0.1:"+socksPort, "--http-proxy", "127.0.0.1:"+httpPort, "-p", "2222", "root@"+underGW.Addr().String())
	nstest.WaitFor(t, 10*time.Second, "the client's tunnel stack", func() bool { return strings.Contains(c.Log(), "tunnel stack up") })
	checkUnprivileged(t, c)

	web := "http://lan.test:" + webPort
	throughEveryProxy(t, tp.client, c, web)
	bigThrough(t, tp.client, web, "-p", "-x", "http://127.0.0.1:"+httpPort)
	// IPv6: a literal through SOCKS5 (the gateway dials it), and UDP
	// through the client's stack.
	if body, err := socksGet(tp.client, "--socks5-hostname", "http://["+lanHost6.Addr().String()+"]/"); err != nil || !strings.Contains(body, "hello from the lan") {
		t.Fatalf("SOCKS5 to an IPv6 destination: %q %v", body, err)
	}
	answer, from := socksUDP(t, tp.client, netip.AddrPortFrom(lanHost.Addr(), 53), dnsQuery(t, "lan.test"))
	checkDNSAnswer(t, answer, "lan.test", lanHost.Addr())
	if from != netip.AddrPortFrom(lanHost.Addr(), 53) {
		t.Errorf("the UDP answer came from %s, want %s:53", from, lanHost.Addr())
	}
	echo := []byte("udp over ipv6 through the tunnel")
	if got, _ := socksUDP(t, tp.client, netip.AddrPortFrom(lanHost6.Addr(), 7), echo); string(got) != string(echo) {
		t.Fatalf("IPv6 UDP echo through SOCKS5: %q", got)
	}
	checkUnprivileged(t, c)
	if during := untouchedState(t, tp.client); during != before {
		t.Fatalf("the client host changed while the rootless client ran:\nbefore:\n%s\nduring:\n%s", before, during)
	}
	stopClean(t, c, tp.client, before, w)
}

// f's control: the leak watch hears what a process in the same setup
// resolves, so its silence above means something.
func TestLeakWatchHears(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "unshare")
	tp := newTopo(t)
	w := tp.watchLeaks(t)
	tp.client.Cmd("unshare", "-m", "--propagation", "private", "sh", "-c",
		fmt.Sprintf("mount --bind %s /etc/resolv.conf && exec setpriv --reuid=65534 --regid=65534 --clear-groups getent hosts probe.leak.test", w.resolvConf)).Run()
	if names := w.seen(); !strings.Contains(strings.Join(names, " "), "probe.leak.test.") {
		t.Fatalf("the leak watch heard %v, want probe.leak.test.", names)
	}
}

// stockTunServer is stock sshd on the gateway host with PermitTunnel yes,
// a persistent tun0 at tunGW that sshd attaches for unit 0, names resolved
// by the LAN host's DNS server only, and cfg's other settings.
func (tp *topo) stockTunServer(t *testing.T, o nstest.OpenSSH, pub string, cfg nstest.SSHDConfig) *nstest.SSHD {
	t.Helper()
	tp.gw.Run(t, "ip", "tuntap", "add", "dev", "tun0", "mode", "tun")
	tp.gw.Run(t, "ip", "addr", "add", tunGW.String(), "dev", "tun0")
	tp.gw.Run(t, "ip", "link", "set", "tun0", "up")
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+lanHost.Addr().String()+"\noptions attempts:1 timeout:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.ListenAddr, cfg.PermitTunnel, cfg.AuthorizedKeys, cfg.ResolvConf = "198.18.1.1:22", "yes", pub+"\n", resolv
	sshd := o.StartSSHD(t, tp.gw, cfg)
	tp.routeBack(t)
	return sshd
}

// b: the same proxies against stock sshd 9.2 and 10.0, which resolve names
// (through the LAN's DNS server) and dial themselves (AllowTcpForwarding
// yes); UDP goes through the tunnel (PermitTunnel yes, a persistent tun0
// on the server, --address here).
func TestRootlessClientStockSSHD(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		nstest.RequireTool(t, "curl")
		tp := newTopo(t)
		tp.lanServices(t)
		tp.lanWeb(t)
		tp.addLAN6(t)
		w := tp.watchLeaks(t)
		priv, pub := tp.key(t, o, "client")
		tp.stockTunServer(t, o, pub, nstest.SSHDConfig{})
		before := untouchedState(t, tp.client)
		c := rootlessClient(t, tp.client, w, priv, "-D", "127.0.0.1:"+socksPort, "--http-proxy", "127.0.0.1:"+httpPort,
			"--backend", "netstack", "-w", "any:0", "--address", tunClient.String(), "root@198.18.1.1")
		nstest.WaitFor(t, 10*time.Second, "the client's tunnel stack", func() bool { return strings.Contains(c.Log(), "tunnel stack up") })
		checkUnprivileged(t, c)
		throughEveryProxy(t, tp.client, c, "http://lan.test:"+webPort)
		if body, err := socksGet(tp.client, "--socks5-hostname", "http://["+lanHost6.Addr().String()+"]/"); err != nil || !strings.Contains(body, "hello from the lan") {
			t.Fatalf("SOCKS5 to an IPv6 destination through stock sshd: %q %v", body, err)
		}
		answer, _ := socksUDP(t, tp.client, netip.AddrPortFrom(lanHost.Addr(), 53), dnsQuery(t, "lan.test"))
		checkDNSAnswer(t, answer, "lan.test", lanHost.Addr())
		if !strings.Contains(c.Log(), "channel=tun@openssh.com") {
			t.Errorf("the UDP went through no tun@openssh.com tunnel:\n%s", c.Log())
		}
		stopClean(t, c, tp.client, before, w)
	})
}

// c: -L to an SSH server on the LAN, by address and by a name the gateway
// resolves, used by a stock ssh client that checks the LAN server's host
// key.
func TestRootlessClientLocalForward(t *testing.T) {
	nstest.RequireRoot(t)
	t.Parallel()
	o := nstest.OpenSSHs(t)[len(nstest.OpenSSHs(t))-1]
	tp := newTopo(t)
	tp.lanServices(t)
	w := tp.watchLeaks(t)
	priv, pub := tp.key(t, o, "client")
	lanSSHD := o.StartSSHD(t, tp.lan, nstest.SSHDConfig{ListenAddr: lanHost.Addr().String() + ":22", AuthorizedKeys: pub + "\n"})
	tp.addLAN6(t)
	tp.startRootless(t, pub+"\n")
	c := rootlessClient(t, tp.client, w, priv, "-L", "127.0.0.1:2200:"+lanHost.Addr().String()+":22", "-L", "2201:lan.test:22",
		"-L", "[::1]:8086:["+lanHost6.Addr().String()+"]:80", "-p", "2222", "root@"+underGW.Addr().String())
	if body, err := httpGet(t, tp.client, "http://[::1]:8086/"); err != nil || !strings.Contains(body, "hello from the lan") {
		t.Fatalf("-L [::1]:8086:[v6]:80: %q %v", body, err)
	}
	known := filepath.Join(t.TempDir(), "known_hosts")
	host := strings.Join(strings.Fields(lanSSHD.HostKey)[:2], " ")
	if err := os.WriteFile(known, []byte("[127.0.0.1]:2200 "+host+"\n[localhost]:2201 "+host+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dst := range [][]string{{"-p", "2200", "root@127.0.0.1"}, {"-p", "2201", "-o", "HostKeyAlias=[localhost]:2201", "root@127.0.0.1"}} {
		out, err := tp.client.Cmd(o.ClientArgs(t, priv, known, append(dst, "echo", "hello from the lan sshd")...)...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "hello from the lan sshd") {
			t.Fatalf("stock ssh through -L %v: %q %v\n%s", dst, out, err, c.Log())
		}
	}
	w.heardNothing(t)
}

// e: 1,000 SOCKS connections open at once all complete, and the client's
// fds and goroutines come back to where they were.
func TestRootlessClientThousandFlows(t *testing.T) {
	nstest.RequireRoot(t)
	t.Parallel()
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanServices(t)
	tp.lanWeb(t)
	w := tp.watchLeaks(t)
	priv, pub := tp.key(t, o, "client")
	tp.startRootless(t, pub+"\n")
	c := rootlessClient(t, tp.client, w, priv, "-D", "127.0.0.1:"+socksPort, "-p", "2222", "root@"+underGW.Addr().String())
	nstest.WaitFor(t, 10*time.Second, "the client's tunnel stack", func() bool { return strings.Contains(c.Log(), "tunnel stack up") })
	// One flow first, so that what is made once is in the baseline.
	if _, err := socksGet(tp.client, "--socks5-hostname", "http://lan.test:"+webPort+"/"); err != nil {
		t.Fatal(err)
	}
	var socks proxy.Dialer
	tp.client.Do(t, func() {
		var err error
		socks, err = proxy.SOCKS5("tcp", "127.0.0.1:"+socksPort, nil, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
	})
	concurrentFlows(t, tp, c, 1000, "hello from the lan web", func(int) (net.Conn, error) {
		return socks.Dial("tcp", "lan.test:"+webPort)
	}, 20*time.Second)
}

// 6: the listeners stay up while the client reconnects; a flow in the gap
// gets a SOCKS failure that says why within the bounded wait, not a
// refused port, and flows go through again on the next connection.
func TestRootlessClientReconnects(t *testing.T) {
	nstest.RequireRoot(t)
	t.Parallel()
	nstest.RequireTool(t, "curl")
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanWeb(t)
	w := tp.watchLeaks(t)
	priv, pub := tp.key(t, o, "client")
	gw := tp.startRootless(t, pub+"\n")
	c := rootlessClient(t, tp.client, w, priv, "-D", "127.0.0.1:"+socksPort, "--http-proxy", "127.0.0.1:"+httpPort, "-p", "2222", "root@"+underGW.Addr().String())
	web := "http://" + lanHost.Addr().String() + ":" + webPort + "/"
	if body, err := socksGet(tp.client, "--socks5-hostname", web); err != nil || !strings.Contains(body, "hello from the lan web") {
		t.Fatalf("before the outage: %q %v", body, err)
	}
	gw.Signal(os.Interrupt)
	if err := gw.Wait(10 * time.Second); err != nil {
		t.Fatalf("the gateway did not stop: %v", err)
	}
	nstest.WaitFor(t, 20*time.Second, "the client to notice", func() bool { return strings.Contains(c.Log(), "reconnecting") })
	start := time.Now()
	out, err := tp.client.Cmd("curl", "-sS", "-m", "30", "--socks5-hostname", "127.0.0.1:"+socksPort, web).CombinedOutput()
	if err == nil || strings.Contains(string(out), "onnection refused") || !strings.Contains(string(out), "SOCKS") {
		t.Fatalf("a SOCKS flow while the gateway is down: %q %v, want a SOCKS failure from a listener that stayed up", out, err)
	}
	if d := time.Since(start); d > flowWait+5*time.Second {
		t.Errorf("the SOCKS failure took %v, want the bounded wait of %v", d, flowWait)
	}
	out, _ = tp.client.Cmd("curl", "-sS", "-i", "-m", "30", "-x", "http://127.0.0.1:"+httpPort, web).CombinedOutput()
	if !strings.HasPrefix(string(out), "HTTP/1.1 503") || !strings.Contains(string(out), "reconnecting") {
		t.Fatalf("an HTTP proxy request while the gateway is down: %q %v, want 503 saying why", out, err)
	}
	tp.startRootless(t, pub+"\n")
	nstest.WaitFor(t, 40*time.Second, "flows through the next connection", func() bool {
		body, err := socksGet(tp.client, "--socks5-hostname", web)
		return err == nil && strings.Contains(body, "hello from the lan web")
	})
	if c.Exited() {
		t.Fatalf("the client exited: %s", c.Log())
	}
}

// 2: where the server forbids forwarding but allows the tunnel, TCP goes
// through the client's own stack: a key with no-port-forwarding on the
// rootless gateway (a name then resolves through the gateway's DNS on the
// tunnel), and stock sshd with AllowTcpForwarding no.
func TestRootlessClientForwardingForbidden(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "curl")
	t.Run("sshvpn", func(t *testing.T) {
		o := nstest.OpenSSHs(t)[0]
		tp := newTopo(t)
		tp.lanServices(t)
		tp.lanWeb(t)
		w := tp.watchLeaks(t)
		priv, pub := tp.key(t, o, "client")
		gw := tp.startRootless(t, "no-port-forwarding "+pub+"\n")
		c := rootlessClient(t, tp.client, w, priv, "-D", "127.0.0.1:"+socksPort, "-p", "2222", "root@"+underGW.Addr().String())
		nstest.WaitFor(t, 10*time.Second, "the client's tunnel stack", func() bool { return strings.Contains(c.Log(), "tunnel stack up") })
		if body, err := socksGet(tp.client, "--socks5-hostname", "http://lan.test:"+webPort+"/"); err != nil || !strings.Contains(body, "hello from the lan web") {
			t.Fatalf("SOCKS5 with forwarding forbidden: %q %v\n%s", body, err, c.Log())
		}
		if !strings.Contains(gw.Log(), "port forwarding refused") {
			t.Fatalf("the gateway refused no forward, so the fallback was not tried:\n%s", gw.Log())
		}
		w.heardNothing(t)
	})
	t.Run("sshd", func(t *testing.T) {
		o := nstest.OpenSSHs(t)[len(nstest.OpenSSHs(t))-1]
		tp := newTopo(t)
		tp.lanWeb(t)
		w := tp.watchLeaks(t)
		priv, pub := tp.key(t, o, "client")
		sshd := tp.stockTunServer(t, o, pub, nstest.SSHDConfig{Extra: []string{"AllowTcpForwarding no"}})
		c := rootlessClient(t, tp.client, w, priv, "-D", "127.0.0.1:"+socksPort, "--backend", "netstack", "-w", "any:0",
			"--address", tunClient.String(), "root@198.18.1.1")
		nstest.WaitFor(t, 10*time.Second, "the client's tunnel stack", func() bool { return strings.Contains(c.Log(), "tunnel stack up") })
		web := "http://" + lanHost.Addr().String() + ":" + webPort
		if body, err := socksGet(tp.client, "--socks5-hostname", web+"/"); err != nil || !strings.Contains(body, "hello from the lan web") {
			t.Fatalf("SOCKS5 with AllowTcpForwarding no: %q %v\n%s\n%s", body, err, c.Log(), sshd.Log())
		}
		bigThrough(t, tp.client, web, "--socks5-hostname", "127.0.0.1:"+socksPort)
	})
}

// 3: -g opens the proxies to other hosts, and --socks-auth then guards
// them: RFC 1929 for SOCKS5, Basic for the HTTP proxy, SOCKS4 refused. A
// host next to the client (here the gateway's namespace, on the client's
// link) is the other host.
func TestRootlessClientAuthAndGatewayPorts(t *testing.T) {
	nstest.RequireRoot(t)
	t.Parallel()
	nstest.RequireTool(t, "curl")
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanWeb(t)
	w := tp.watchLeaks(t)
	priv, pub := tp.key(t, o, "client")
	tp.startRootless(t, pub+"\n")
	dir, err := os.MkdirTemp("/tmp", "sshvpn-socks-auth-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "socks-auth")
	if err := os.WriteFile(creds, []byte("# who may use the proxies\nalice:s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(creds, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	c := rootlessClient(t, tp.client, w, priv, "-g", "-D", socksPort, "--http-proxy", httpPort, "--socks-auth", creds,
		"-p", "2222", "root@"+underGW.Addr().String())
	if strings.Contains(c.Log(), "no password") {
		t.Errorf("a warning about a proxy without a password although --socks-auth is given:\n%s", c.Log())
	}
	proxyAt := underClient.Addr().String()
	web := "http://" + lanHost.Addr().String() + ":" + webPort + "/"
	curl := func(args ...string) (string, error) {
		out, err := tp.gw.Cmd(append(append([]string{"curl", "-sS", "-m", "10", "--fail"}, args...), web)...).CombinedOutput()
		return string(out), err
	}
	for _, ok := range [][]string{
		{"--socks5-hostname", proxyAt + ":" + socksPort, "--proxy-user", "alice:s3cret pass"},
		{"-x", "http://" + proxyAt + ":" + httpPort, "--proxy-user", "alice:s3cret pass"},
		{"-p", "-x", "http://" + proxyAt + ":" + socksPort, "--proxy-user", "alice:s3cret pass"},
	} {
		if body, err := curl(ok...); err != nil || !strings.Contains(body, "hello from the lan web") {
			t.Fatalf("from the next host with the password, curl %v: %q %v", ok, body, err)
		}
	}
	for _, bad := range [][]string{
		{"--socks5-hostname", proxyAt + ":" + socksPort},
		{"--socks5-hostname", proxyAt + ":" + socksPort, "--proxy-user", "alice:wrong"},
		{"--socks4a", proxyAt + ":" + socksPort},
		{"-x", "http://" + proxyAt + ":" + httpPort},
		{"-x", "http://" + proxyAt + ":" + httpPort, "--proxy-user", "mallory:s3cret pass"},
	} {
		if body, err := curl(bad...); err == nil {
			t.Fatalf("curl %v got through without the right password: %q", bad, body)
		}
	}
}

// 3: without -g and a bind address the proxies are on loopback only, and a
// non-loopback bind without --socks-auth is warned about; a port another
// process holds is an error, not a listener quietly missing.
func TestRootlessClientBinds(t *testing.T) {
	nstest.RequireRoot(t)
	t.Parallel()
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	w := tp.watchLeaks(t)
	priv, pub := tp.key(t, o, "client")
	tp.startRootless(t, pub+"\n")
	c := rootlessClient(t, tp.client, w, priv, "-D", socksPort, "--http-proxy", underClient.Addr().String()+":"+httpPort,
		"-p", "2222", "root@"+underGW.Addr().String())
	if !strings.Contains(c.Log(), "no password") {
		t.Errorf("no warning for an HTTP proxy on %s without --socks-auth:\n%s", underClient.Addr(), c.Log())
	}
	if conn, err := tp.gw.Dial(t, "tcp", underClient.Addr().String()+":"+socksPort); err == nil {
		conn.Close()
		t.Fatalf("-D %s without a bind address answers on %s", socksPort, underClient.Addr())
	}
	for _, a := range []string{"127.0.0.1:" + socksPort, "[::1]:" + socksPort} {
		conn, err := tp.client.Dial(t, "tcp", a)
		if err != nil {
			t.Fatalf("-D %s does not listen on %s: %v", socksPort, a, err)
		}
		conn.Close()
	}
	squat := tp.client.Listen(t, "tcp", "127.0.0.1:1090")
	defer squat.Close()
	out, code, _ := runIn(t, tp.client, 20*time.Second, connectArgs(priv, "", "-D", "1090", "-p", "2222", "root@"+underGW.Addr().String())...)
	if code == 0 || !strings.Contains(out, "address already in use") {
		t.Fatalf("-D on a port another process holds on 127.0.0.1: exit %d\n%s\nwant an error naming it", code, out)
	}
}

// b: against a stock sshd with no tunnel for this client (no --address,
// so none is asked for), TCP goes on, and a UDP ASSOCIATE is answered
// "command not supported" with the reason in the log, once.
func TestRootlessClientNoTunnel(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "curl")
	t.Parallel()
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	tp.lanWeb(t)
	w := tp.watchLeaks(t)
	priv, pub := tp.key(t, o, "client")
	o.StartSSHD(t, tp.gw, nstest.SSHDConfig{ListenAddr: "198.18.1.1:22", AuthorizedKeys: pub + "\n"})
	c := rootlessClient(t, tp.client, w, priv, "-D", "127.0.0.1:"+socksPort, "root@198.18.1.1")
	if body, err := socksGet(tp.client, "--socks5-hostname", "http://"+lanHost.Addr().String()+":"+webPort+"/"); err != nil || !strings.Contains(body, "hello from the lan web") {
		t.Fatalf("SOCKS5 through stock sshd without a tunnel: %q %v\n%s", body, err, c.Log())
	}
	for range 2 {
		var ctl net.Conn
		tp.client.Do(t, func() {
			var err error
			if ctl, err = net.Dial("tcp", "127.0.0.1:"+socksPort); err != nil {
				t.Fatal(err)
			}
		})
		ctl.SetDeadline(time.Now().Add(10 * time.Second))
		ctl.Write([]byte{5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
		var reply [4]byte
		if _, err := io.ReadFull(ctl, reply[:2]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(ctl, reply[:]); err != nil || reply[1] != 7 {
			t.Fatalf("UDP ASSOCIATE with no tunnel: reply %v %v, want 07 (command not supported)", reply, err)
		}
		ctl.Close()
	}
	if n := strings.Count(c.Log(), "a UDP request was refused"); n != 1 || !strings.Contains(c.Log(), "pass --address") {
		t.Fatalf("the refused UDP requests were logged %d times (want once, with the reason):\n%s", n, c.Log())
	}
	if strings.Contains(c.Log(), "level=WARN msg=\"no tunnel") {
		t.Errorf("a connection without a tunnel is a warning:\n%s", c.Log())
	}
}

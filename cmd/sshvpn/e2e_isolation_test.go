//go:build integration

package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// silentHost is a LAN address nobody holds: the gateway's ARP for it goes
// unanswered, so whatever is sent to it waits for nothing.
const silentHost = "198.18.2.99"

// neighbours is a rootless gateway with two stock clients in one
// namespace, each on its own tun and address: a flooder (tun0) and a
// victim (tun1), whose unbound sockets take tun1. A third key, forwarder,
// is the flooder's for ssh -W channels, which x/crypto's client opens by
// the thousand. The LAN's DNS server is lanDNS, its answers under
// big.test. living dnsFloodTTL; forwardTarget never closes.
type neighbours struct {
	tp                *topo
	o                 nstest.OpenSSH
	gw                *gatewayProc
	lanDNS            *lanDNS
	flooder, victim   netip.Addr
	victimKey         string
	forwarder         ssh.Signer
	baseline, current footprint
}

// forwardTarget is a LAN server that never closes (silentServer).
var forwardTarget = lanHost.Addr().String() + ":9"

func newNeighbours(t *testing.T) *neighbours {
	t.Helper()
	nstest.RequireRoot(t)
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	lan := startLANDNS(t, tp, dnsFloodTTL)
	silentServer(t, tp.lan, forwardTarget)
	echo := tp.lan.Listen(t, "tcp", lanHost.Addr().String()+":7")
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	privA, pubA := tp.key(t, o, "flooder")
	privB, pubB := tp.key(t, o, "victim")
	forwarder, pubF := goKey(t)
	n := &neighbours{tp: tp, o: o, lanDNS: lan, victimKey: privB, forwarder: forwarder}
	n.gw = tp.startRootless(t, pubA+"\n"+pubB+"\n"+pubF+"\n")
	addrs := rootlessClients(t, tp, o, privA, privB)
	n.flooder, n.victim = addrs[0], addrs[1]
	// The victim's unbound sockets go its way, its DNS to the gateway's.
	tp.client.Run(t, "ip", "route", "add", lanHost.Masked().String(), "dev", "tun1", "src", n.victim.String())
	tp.client.Run(t, "ip", "route", "add", "198.18.3.1/32", "dev", "tun1", "src", n.victim.String())
	return n
}

// rootlessClient runs a stock ssh -w with unit tunN into the rootless
// gateway, gives tunN the address the gateway names, and routes the LAN
// and the gateway's address through it for that address's packets.
func (tp *topo) rootlessClient(t *testing.T, o nstest.OpenSSH, priv string, unit int) (*nstest.Proc, netip.Addr) {
	t.Helper()
	yours := regexp.MustCompile(`your address (198\.18\.3\.\d+)/24`)
	ssh := tp.sshTunnel(t, o, priv, "point-to-point", fmt.Sprintf("%d:any", unit))
	nstest.WaitFor(t, 15*time.Second, "status", func() bool {
		if ssh.Exited() {
			t.Fatalf("ssh exited: %s", ssh.Log())
		}
		return yours.MatchString(ssh.Log())
	})
	addr := netip.MustParseAddr(yours.FindStringSubmatch(ssh.Log())[1])
	dev, table := fmt.Sprintf("tun%d", unit), fmt.Sprint(100+unit)
	tp.client.Run(t, "ip", "addr", "add", addr.String()+"/32", "dev", dev)
	tp.client.Run(t, "ip", "link", "set", dev, "mtu", "16380", "up")
	tp.client.Run(t, "ip", "route", "add", lanHost.Masked().String(), "dev", dev, "table", table)
	tp.client.Run(t, "ip", "route", "add", "198.18.3.1/32", "dev", dev, "table", table)
	tp.client.Run(t, "ip", "rule", "add", "from", addr.String(), "lookup", table)
	return ssh, addr
}

// footprint is what the gateway process holds.
type footprint struct {
	fds, goroutines int
	rssKiB          int
}

func (f footprint) String() string {
	return fmt.Sprintf("%d fds, %d goroutines, RSS %d KiB", f.fds, f.goroutines, f.rssKiB)
}

// footprint reads the gateway's fds and RSS from /proc and its goroutines from
// the footprint line it logs on SIGUSR1.
func (n *neighbours) footprint(t *testing.T) footprint {
	t.Helper()
	lines := strings.Count(n.gw.Log(), "msg=footprint")
	n.gw.Signal(syscall.SIGUSR1)
	nstest.WaitFor(t, 5*time.Second, "footprint line", func() bool { return strings.Count(n.gw.Log(), "msg=footprint") > lines })
	rss, fds := procUsage(t, n.gw.PID())
	return footprint{fds: fds, goroutines: int(counter(n.gw.Log(), "goroutines")), rssKiB: rss}
}

// victimChecks is what the victim must still be able to do whatever the
// flooder does: ping the LAN, look a name up through the gateway's DNS,
// log in anew, and download 50 MiB byte for byte. It returns the download.
func (n *neighbours) victimChecks(t *testing.T) nstest.Result {
	t.Helper()
	tp := n.tp
	nstest.Ping(t, tp.client, lanHost.Addr().String(), 3)
	tp.client.Do(t, func() {
		q := new(dns.Msg)
		q.SetQuestion("lan.test.", dns.TypeA)
		for _, network := range []string{"udp", "tcp"} {
			c := &dns.Client{Net: network, Timeout: 5 * time.Second}
			a, _, err := c.Exchange(q, "198.18.3.1:53")
			if err != nil || len(a.Answer) != 1 || !strings.Contains(a.Answer[0].String(), lanHost.Addr().String()) {
				t.Errorf("the victim's DNS over %s through the gateway: %v %v", network, a, err)
			}
		}
	})
	// A new login: a tunnel of its own, whose status the session shows.
	login := tp.sshTunnel(t, n.o, n.victimKey, "point-to-point", "any:any")
	nstest.WaitFor(t, 15*time.Second, "the victim's new login", func() bool {
		if login.Exited() {
			t.Fatalf("the victim's new login: ssh exited: %s", login.Log())
		}
		return strings.Contains(login.Log(), "your address")
	})
	login.Signal(syscall.SIGTERM)
	login.Wait(5 * time.Second)
	return nstest.Transfer(t, tp.lan, lanHost.Addr().String()+":0", tp.client, lanHost.Addr().String(), 50<<20, true)
}

// A neighbourPhase is one load the flooder puts on the gateway while the
// victim runs its checks. Every phase is judged the same way: the victim's
// checks pass during the load, and once the load stops the gateway comes
// back to the usage it had before, within the margins below.
type neighbourPhase struct {
	name string
	// start begins the load and returns what ends it. stop may check what
	// the gateway did about the load (limits hit and logged); it runs
	// after the victim's checks, with the gateway's footprint under the
	// load in n.current.
	start func(t *testing.T, n *neighbours) (stop func())
	// hold is the least time the load runs before its footprint is read:
	// long enough for what it makes the gateway hold to pile up.
	hold time.Duration
	// settle bounds the time the gateway takes, once the load stopped, to
	// let go of what the load made it hold (a dial's timeout, a UDP
	// flow's idle timeout).
	settle time.Duration
}

// After a phase the gateway holds what it held before, give or take:
//   - fds: none (every host socket and ping socket of the load is gone);
//   - goroutines: a few (the runtime's and net/http's idle ones come and go);
//   - RSS: 32 MiB (read after the collections SIGUSR1 makes, so freed
//     heap is back with the kernel; what stays is the heap's fragments and
//     the runtime's own caches, 13 to 20 MiB after the TCP and UDP flood;
//     a leak of the load's size, a socket or buffer per packet, is
//     hundreds of MiB).
const (
	settleGoroutines = 5
	settleRSSKiB     = 32 << 10
)

// One tunnel holds 2,000 TCP connections at once; then, phase by phase,
// while one client floods the gateway (SYNs and datagrams; pings to a
// silent host; 80 connections of 256 forwards to a server that never
// closes, each dropped at once; 4,000 names with 64 KiB answers), a second
// client pings, resolves, logs in and downloads unharmed (its throughput reported as a ratio to a run just
// before, without the flood), the flooder's limits are what stopped the
// flood, and afterwards the gateway holds what it held before. A phase is
// one more entry in the list.
func TestRootlessOneClientCannotHurtAnother(t *testing.T) {
	n := newNeighbours(t)
	n.holdConnections(t, 2000)
	nstest.Ping(t, n.tp.client, lanHost.Addr().String(), 3) // the victim's ping socket is in the baseline
	n.flooderPing(t)
	n.victimChecks(t)
	n.baseline = n.footprint(t)
	t.Logf("gateway with both clients idle: %v", n.baseline)
	for _, ph := range []neighbourPhase{
		{name: "tcp and udp", start: floodTCPAndUDP, settle: 20 * time.Second},
		{name: "icmp", start: floodICMP, hold: 3 * time.Second, settle: 10 * time.Second}, // hold: an echo waits 3 s for its reply
		{name: "forwards", start: floodForwards, settle: 10 * time.Second},
		{name: "dns", start: floodDNS, settle: 10 * time.Second},
	} {
		t.Run(ph.name, func(t *testing.T) { n.phase(t, ph) })
	}
}

// phase runs one neighbourPhase.
func (n *neighbours) phase(t *testing.T, ph neighbourPhase) {
	unloaded := n.victimChecks(t)
	start := time.Now()
	stop := ph.start(t, n)
	r := n.victimChecks(t)
	time.Sleep(ph.hold - time.Since(start))
	n.current = n.footprint(t)
	stop()
	t.Logf("victim's 50 MiB download under the %s flood: %v, %.2f of its %v just before; gateway under the flood: %v",
		ph.name, r, r.BitsPerSecond()/unloaded.BitsPerSecond(), unloaded, n.current)
	nstest.WaitFor(t, ph.settle, "the gateway back to its baseline "+n.baseline.String(), func() bool {
		after := n.footprint(t)
		return after.fds <= n.baseline.fds && after.goroutines <= n.baseline.goroutines+settleGoroutines
	})
	after := n.footprint(t) // a second collection: sync.Pools keep what the first one spared
	t.Logf("gateway after the %s flood: %v", ph.name, after)
	if after.rssKiB > n.baseline.rssKiB+settleRSSKiB {
		t.Errorf("gateway RSS %d KiB after the %s flood, %d before", after.rssKiB, ph.name, n.baseline.rssKiB)
	}
}

// holdConnections opens count TCP connections from the flooder at once,
// each carrying bytes, then closes them.
func (n *neighbours) holdConnections(t *testing.T, count int) {
	t.Helper()
	open := make([]net.Conn, 0, count)
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	n.tp.client.Do(t, func() {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: n.flooder.AsSlice()}, Timeout: 20 * time.Second}
		for i := range count {
			c, err := d.Dial("tcp", lanHost.Addr().String()+":7")
			if err != nil {
				t.Fatalf("connection %d of %d: %v", i+1, count, err)
			}
			open = append(open, c)
		}
	})
	for i, c := range open { // every one is open at once, and carries bytes
		c.SetDeadline(time.Now().Add(20 * time.Second))
		msg := fmt.Sprintf("conn %d\n", i)
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("connection %d echoed %q, %v", i, buf, err)
		}
	}
}

// flooderPing pings the LAN from the flooder, so that its ping socket is
// in the baseline too. One reply of three will do: the connections closed
// just before may still fill the flooder's tun queue.
func (n *neighbours) flooderPing(t *testing.T) {
	t.Helper()
	if out, err := n.tp.client.Cmd("ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", "-I", n.flooder.String(), lanHost.Addr().String()).CombinedOutput(); err != nil {
		t.Fatalf("the flooder's ping: %v\n%s", err, out)
	}
}

// floodTCPAndUDP: non-blocking connects from the flooder to a LAN address
// nobody holds (the kernel retransmits each SYN), and datagrams to 10,000
// ports of the LAN host, over and over. The LAN host answers each with
// port unreachable, unthrottled here, which ends the flow at once: the
// flows the flood leaves need not wait out their idle timeout (60 s).
func floodTCPAndUDP(t *testing.T, n *neighbours) (stop func()) {
	tp := n.tp
	tp.lan.Run(t, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=1000000", "net.ipv4.icmp_msgs_burst=1000000")
	var fds []int
	tp.client.Do(t, func() {
		src := &syscall.SockaddrInet4{Addr: n.flooder.As4()}
		for i := range 3000 {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, fd)
			syscall.Bind(fd, src)
			syscall.Connect(fd, &syscall.SockaddrInet4{Addr: netip.MustParseAddr(silentHost).As4(), Port: 1000 + i})
		}
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
		syscall.Bind(fd, src)
	})
	udp := fds[len(fds)-1]
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			for port := 20000; port < 30000; port++ {
				syscall.Sendto(udp, []byte("flood"), 0, &syscall.SockaddrInet4{Addr: lanHost.Addr().As4(), Port: port})
				if port%200 == 0 {
					select {
					case <-done:
						return
					case <-time.After(time.Millisecond): // past tun0's queue of 500, the kernel would drop them before ssh
					}
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		for _, fd := range fds {
			syscall.Close(fd)
		}
		nstest.WaitFor(t, 15*time.Second, "the flooder's limits logged", func() bool {
			return strings.Contains(n.gw.Log(), `limit="tcp in flight"`) && strings.Contains(n.gw.Log(), `limit="udp flows"`)
		})
	}
}

// floodRate is the echoes a second the ICMP flood sends, at least.
const floodRate = 6000

// floodICMP: echo requests from the flooder to a LAN address nobody holds,
// at floodRate, from a raw socket. Each waits at the gateway for a reply
// that never comes, so only the flooder's limit on echoes in flight stops
// them piling up: the gateway's fds must not grow while it lasts.
func floodICMP(t *testing.T, n *neighbours) (stop func()) {
	tp := n.tp
	var fd int
	tp.client.Do(t, func() {
		var err error
		if fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: n.flooder.As4()}); err != nil {
			t.Fatal(err)
		}
	})
	txBefore := txPackets(t, tp.client, "tun0")
	start := time.Now()
	done := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		to := &syscall.SockaddrInet4{Addr: netip.MustParseAddr(silentHost).As4()}
		msg := make([]byte, 8+56)
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			for want := int64(time.Since(start).Seconds() * floodRate); sent.Load() < want; {
				seq := uint16(sent.Add(1))
				icmpEcho(msg, 0x5eed, seq)
				syscall.Sendto(fd, msg, 0, to)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		syscall.Close(fd)
		d := time.Since(start)
		tx := txPackets(t, tp.client, "tun0") - txBefore
		t.Logf("ICMP flood: %d echoes in %v into the flooder's tunnel, %.0f a second", tx, d.Round(time.Millisecond), float64(tx)/d.Seconds())
		if rate := float64(tx) / d.Seconds(); rate < 5000 {
			t.Errorf("the flood sent %.0f echoes a second into the tunnel, want at least 5,000", rate)
		}
		if !strings.Contains(n.gw.Log(), `limit="icmp in flight"`) {
			t.Errorf("the flooder's limit on echoes in flight was not logged")
		}
		if now, before := n.current, n.baseline; now.fds > before.fds+icmpFloodSlack || now.goroutines > before.goroutines+icmpFloodSlack {
			t.Errorf("the gateway held %v under the flood, %v before: the echoes cost sockets or goroutines", now, before)
		}
	}
}

// icmpFloodSlack bounds the fds and goroutines the gateway may gain under
// the ICMP flood: what the victim's checks (a download, a login, DNS) may
// leave for a moment. The flood's echoes are thousands.
const icmpFloodSlack = 16

// icmpEcho writes an echo request with ident and seq into msg, payload
// included, with its checksum.
func icmpEcho(msg []byte, ident, seq uint16) {
	msg[0], msg[1] = 8, 0
	binary.BigEndian.PutUint16(msg[2:], 0)
	binary.BigEndian.PutUint16(msg[4:], ident)
	binary.BigEndian.PutUint16(msg[6:], seq)
	var sum uint32
	for i := 0; i+1 < len(msg); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(msg[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(msg[2:], ^uint16(sum))
}

// txPackets is what dev in ns has sent.
func txPackets(t *testing.T, ns *nstest.NS, dev string) uint64 {
	t.Helper()
	var links []struct {
		Stats struct {
			TX struct{ Packets uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	out := ns.Run(t, "ip", "-j", "-s", "link", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j -s link show %s: %v: %s", dev, err, out)
	}
	return links[0].Stats.TX.Packets
}

// socketCount counts the sockets among a process's fds.
func socketCount(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// A client that vanishes with dials in flight (to a LAN port that drops
// SYNs) and handshakes it never finishes (its kernel never sees the
// gateway's SYN-ACKs, so never ACKs them) is torn down within 3 s, and the
// host sockets its flows held go with it; then SIGTERM, with another such
// client, stops the gateway with status 0 within 3 s.
func TestRootlessTeardownNeverWaits(t *testing.T) {
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "nft")
	o := nstest.OpenSSHs(t)[0]
	tp := newTopo(t)
	held := holdConns(t, tp.lan, lanHost.Addr().String()+":80")
	tp.lan.Run(t, "nft", "add", "table", "inet", "test")
	tp.lan.Run(t, "nft", "add", "chain", "inet", "test", "in", "{ type filter hook input priority 0; }")
	tp.lan.Run(t, "nft", "add", "rule", "inet", "test", "in", "tcp", "dport", "81", "drop")
	tp.client.Run(t, "nft", "add", "table", "inet", "test")
	tp.client.Run(t, "nft", "add", "chain", "inet", "test", "in", "{ type filter hook input priority 0; }")
	tp.client.Run(t, "nft", "add", "rule", "inet", "test", "in", "ip", "saddr", lanHost.Addr().String(), "tcp", "sport", "80",
		"tcp", "flags", "&", "(syn|ack)", "==", "syn|ack", "drop")
	var keys string
	var privs []string
	for i := range 2 {
		priv, pub := tp.key(t, o, fmt.Sprintf("c%d", i))
		privs, keys = append(privs, priv), keys+pub+"\n"
	}
	gw := tp.startRootless(t, keys)
	base := socketCount(t, gw.PID())
	const stuck = 20
	for i, how := range []string{"its client vanishes", "SIGTERM"} {
		ssh, addr := tp.rootlessClient(t, o, privs[i], i)
		fds := stuckConnects(t, tp.client, addr, stuck)
		// Each port-80 flow holds a host connection the LAN accepted, each
		// port-81 flow a host socket still connecting, and the tunnel its SSH
		// connection.
		nstest.WaitFor(t, 10*time.Second, "the stuck flows' host sockets", func() bool {
			return held.accepted() == stuck*(i+1) && socketCount(t, gw.PID()) >= base+2*stuck+1
		})
		start := time.Now()
		if i == 0 {
			downs := strings.Count(gw.Log(), "tunnel down")
			ssh.Signal(syscall.SIGKILL)
			for strings.Count(gw.Log(), "tunnel down") == downs || socketCount(t, gw.PID()) > base || held.closed() < stuck {
				if time.Since(start) > 10*time.Second {
					t.Fatalf("10 s after its client vanished: tunnel down %v, %d sockets (%d before), %d of %d host connections closed",
						strings.Count(gw.Log(), "tunnel down") > downs, socketCount(t, gw.PID()), base, held.closed(), stuck)
				}
				time.Sleep(20 * time.Millisecond)
			}
		} else {
			gw.Signal(syscall.SIGTERM)
			if err := gw.Wait(10 * time.Second); err != nil {
				t.Fatalf("the gateway after SIGTERM: %v", err)
			}
			if code := gw.ExitCode(); code != 0 {
				t.Errorf("the gateway exited %d after SIGTERM, want 0", code)
			}
		}
		d := time.Since(start)
		t.Logf("%d dials in flight and %d handshakes never finished; %s: torn down in %v", stuck, stuck, how, d.Round(time.Millisecond))
		if d > 3*time.Second {
			t.Errorf("%s: the tunnel took %v to go, want 3 s at most", how, d.Round(time.Millisecond))
		}
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}

// stuckConnects starts n connections from src to the LAN host's port 80
// and n to its port 81, without waiting for them.
func stuckConnects(t *testing.T, ns *nstest.NS, src netip.Addr, n int) []int {
	t.Helper()
	var fds []int
	ns.Do(t, func() {
		for _, port := range []int{80, 81} {
			for range n {
				fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
				if err != nil {
					t.Fatal(err)
				}
				fds = append(fds, fd)
				if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: src.As4()}); err != nil {
					t.Fatal(err)
				}
				syscall.Connect(fd, &syscall.SockaddrInet4{Addr: lanHost.Addr().As4(), Port: port})
			}
		}
	})
	t.Cleanup(func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	})
	return fds
}

// heldConns are the connections a listener accepted and holds, reading
// until the far side closes them.
type heldConns struct{ in, out atomic.Int64 }

func (h *heldConns) accepted() int { return int(h.in.Load()) }
func (h *heldConns) closed() int   { return int(h.out.Load()) }

func holdConns(t *testing.T, ns *nstest.NS, addr string) *heldConns {
	h := &heldConns{}
	ln := ns.Listen(t, "tcp", addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.in.Add(1)
			go func() {
				io.Copy(io.Discard, c)
				c.Close()
				h.out.Add(1)
			}()
		}
	}()
	return h
}

//go:build integration

package bench

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// Every configuration gets three hosts of its own: client ⇄ gateway ⇄ LAN,
// with the same addresses each time (the namespaces keep them apart). The
// client reaches the gateway over the underlay (a veth, or delaylink's taps
// in the long-fat-path profiles); the LAN host runs iperf3 -s. Only
// 198.18.0.0/15, the benchmarking range (RFC 2544), which no real network uses.
var (
	underGW     = netip.MustParsePrefix("198.18.1.1/24")
	underClient = netip.MustParsePrefix("198.18.1.2/24")
	lanGW       = netip.MustParsePrefix("198.18.2.1/24")
	lanHost     = netip.MustParsePrefix("198.18.2.2/24")
	tunGW       = netip.MustParsePrefix("198.18.3.1/24")
	tunClient   = netip.MustParsePrefix("198.18.3.2/24")
	lanNet      = lanHost.Masked()
)

const (
	iperfPort  = "5201"
	sshdPort   = "22"
	sshvpnPort = "2222"
	chanPort   = "2223" // sshchannel server
)

// topo is one configuration's three hosts.
type topo struct {
	client, gw, lan *nstest.NS
	iperf           *nstest.Proc // iperf3 -s on the LAN host
	tb              testing.TB
}

// newTopo builds the hosts: the underlay per the profile, the LAN link a
// veth, iperf3 -s on the LAN host. TCP's per-destination metrics cache is
// off everywhere so that one run's congestion state never seeds the next.
func newTopo(tb testing.TB, pr profileSpec) *topo {
	tb.Helper()
	t := &topo{client: nstest.New(tb), gw: nstest.New(tb), lan: nstest.New(tb), tb: tb}
	if pr.wire {
		t.delayLink(pr)
	} else {
		nstest.Link(tb, t.client, underClient, t.gw, underGW)
	}
	nstest.Link(tb, t.gw, lanGW, t.lan, lanHost)
	for _, ns := range []*nstest.NS{t.client, t.gw, t.lan} {
		ns.Run(tb, "sysctl", "-qw", "net.ipv4.tcp_no_metrics_save=1")
		if pr.wire {
			// Linux lets a socket's receive buffer grow to 32 MiB (tcp_rmem's
			// default here) but its send buffer only to 4 MiB, and one stream
			// cannot have more in flight: 4 MiB per 40 ms is 800 Mbit/s,
			// and raw itself topped out at 700. The same 32 MiB both ways,
			// for every row, is what a host tuned for long paths has.
			ns.Run(tb, "sysctl", "-qw", "net.ipv4.tcp_wmem=4096 16384 33554432")
		}
	}
	t.startIperf()
	return t
}

// delayLink joins client and gateway through delaylink: its taps are born
// in a namespace of their own, then moved into the two hosts and set up
// there (a move sets a tap down).
func (t *topo) delayLink(pr profileSpec) {
	tb := t.tb
	if delaylinkBin == "" {
		tb.Fatalf("no delaylink binary: %s", delaylinkErr)
	}
	home := nstest.New(tb)
	args := []string{delaylinkBin, "-a", "dlc", "-b", "dlg", "-delay", pr.delay.String()}
	if pr.loss > 0 {
		args = append(args, "-loss", fmt.Sprint(pr.loss))
	}
	p := home.Start(tb, args...)
	nstest.WaitFor(tb, 10*time.Second, "delaylink ready", func() bool {
		if p.Exited() {
			tb.Fatalf("delaylink exited: %v\n%s", p.Wait(0), p.Log())
		}
		return strings.HasPrefix(p.Log(), "ready\n")
	})
	for _, end := range []struct {
		ns   *nstest.NS
		dev  string
		addr netip.Prefix
	}{{t.client, "dlc", underClient}, {t.gw, "dlg", underGW}} {
		home.Run(tb, "ip", "link", "set", end.dev, "netns", end.ns.Name)
		end.ns.Run(tb, "ip", "addr", "add", end.addr.String(), "dev", end.dev)
		// A deeper queue than a tap's default 1000 frames: when delaylink
		// is descheduled for a moment on a busy machine, the kernel would
		// otherwise drop at the tap, which is loss the profile did not ask for.
		end.ns.Run(tb, "ip", "link", "set", end.dev, "txqueuelen", "10000", "up")
	}
}

// startIperf (re)starts the LAN host's iperf3 server. It stays up across
// tests: one server process per host instead of one per test saves its
// start-up each time; a test that fails restarts it in case it is stuck.
func (t *topo) startIperf() {
	tb := t.tb
	if t.iperf != nil {
		t.iperf.Signal(syscall.SIGKILL)
		t.iperf.Wait(5 * time.Second)
	}
	p := t.lan.Start(tb, "iperf3", "-s", "--forceflush", "-B", lanHost.Addr().String(), "-p", iperfPort)
	nstest.WaitFor(tb, 10*time.Second, "iperf3 -s listening", func() bool {
		if p.Exited() {
			tb.Fatalf("iperf3 -s exited: %v\n%s", p.Wait(0), p.Log())
		}
		return strings.Contains(p.Log(), "Server listening")
	})
	t.iperf = p
}

// forward makes the gateway route between client and LAN (the kernel
// does the work; a stock sshd does no NAT) and gives the LAN host a route
// back to back via the gateway.
func (t *topo) forward(back netip.Prefix) {
	t.gw.EnableForwarding(t.tb)
	t.lan.AddRoute(t.tb, back, lanGW.Addr())
}

// persistentTun makes tun0 (tap0 when l2) in ns before any SSH client or
// server opens it, addressed and up, with routes; ssh and sshd attach to an existing
// device of the name they open, so the device and its configuration
// survive a reconnect.
func persistentTun(tb testing.TB, ns *nstest.NS, l2 bool, addr netip.Prefix, routes ...netip.Prefix) {
	tb.Helper()
	dev, mode := "tun0", "tun"
	if l2 {
		dev, mode = "tap0", "tap"
	}
	ns.Run(tb, "ip", "tuntap", "add", "dev", dev, "mode", mode)
	ns.Run(tb, "ip", "addr", "add", addr.String(), "dev", dev)
	ns.Run(tb, "ip", "link", "set", dev, "mtu", "1500", "up")
	for _, r := range routes {
		route := []string{"ip", "route", "add", r.String(), "dev", dev}
		if l2 {
			// On a segment a network behind the gateway is reached
			// through it: without a next hop the client would ask ARP
			// for every LAN host.
			route = append(route, "via", tunGW.Addr().String())
		}
		ns.Run(tb, route...)
	}
}

// softTB is the testing.TB the configurations start under. A Fatal or
// Skip inside them (nstest's helpers call both) panics with an abort that
// the runner recovers: one configuration that cannot start or breaks
// midway costs its own row, not the run. Cleanups are kept here and run
// when the profile ends, so the hosts of all configurations of a profile
// stay up across its interleaved rounds.
type softTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
}

// abort is a Fatal or Skip turned into a value.
type abort struct {
	msg  string
	skip bool
}

func (a abort) Error() string { return a.msg }

func (s *softTB) Fatal(args ...any)                 { panic(abort{msg: fmt.Sprint(args...)}) }
func (s *softTB) Fatalf(format string, args ...any) { panic(abort{msg: fmt.Sprintf(format, args...)}) }
func (s *softTB) FailNow()                          { panic(abort{msg: "FailNow"}) }
func (s *softTB) Skip(args ...any)                  { panic(abort{msg: fmt.Sprint(args...), skip: true}) }
func (s *softTB) Skipf(format string, args ...any) {
	panic(abort{msg: fmt.Sprintf(format, args...), skip: true})
}
func (s *softTB) SkipNow() { panic(abort{msg: "SkipNow", skip: true}) }

func (s *softTB) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// cleanup runs the cleanups, last registered first, as testing does.
func (s *softTB) cleanup() {
	s.mu.Lock()
	fs := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// try runs fn and returns the abort it raised, if any.
func try(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				panic(r)
			}
			err = a
		}
	}()
	fn()
	return nil
}

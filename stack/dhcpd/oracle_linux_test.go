//go:build linux

package dhcpd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// The tests in this file let real DHCP clients judge the server: the client
// runs on one end of a veth pair in a namespace of its own, a responder on
// the other end passes what arrives at port 67 to Handle and sends the
// Reply as the segment will (an IPv4 packet to Dst, from ServerID, in an
// Ethernet frame to the broadcast MAC for 255.255.255.255 and to the MAC
// the client's frames came from otherwise), and the client's own script writes down what it was
// given and applies it.

// oracleTimeout bounds each wait for the client: a lease takes a second or
// two on an idle machine.
const oracleTimeout = 20 * time.Second

// segment is a veth pair between a client namespace and the namespace of a
// responder serving a Server.
type segment struct {
	client, gateway *nstest.NS
	clientDev       string
	server          *Server
	logs            *logRecords
	resp            *responder
}

func newSegment(t *testing.T, cfg Config) *segment {
	t.Helper()
	nstest.RequireRoot(t)
	sg := &segment{client: nstest.New(t), gateway: nstest.New(t), logs: &logRecords{}}
	var gwDev string
	gwDev, sg.clientDev = nstest.Link(t, sg.gateway, netip.PrefixFrom(cfg.ServerID, cfg.Lease.Bits()), sg.client, netip.Prefix{})
	cfg.Log = slog.New(sg.logs)
	sg.server = newServer(t, cfg)
	// The kernel there holds ServerID, so it answers the client's ARP for
	// it when the client unicasts a renewal or a release; a UDP socket on
	// port 67 keeps it from answering those with port unreachable.
	sg.gateway.ListenPacket(t, "udp4", ":67")
	sg.resp = startResponder(t, sg.gateway, gwDev, sg.server, cfg.ServerID)
	return sg
}

// responder reads the frames a veth end receives through an AF_PACKET
// socket and answers the DHCP ones with Handle.
type responder struct {
	s    *Server
	f    *os.File
	mac  net.HardwareAddr
	src  netip.Addr
	done chan struct{}

	mu      sync.Mutex
	replies []Reply
	err     error
}

func startResponder(t *testing.T, ns *nstest.NS, dev string, s *Server, src netip.Addr) *responder {
	t.Helper()
	r := &responder{s: s, src: src, done: make(chan struct{})}
	ns.Do(t, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		r.mac = ifi.HardwareAddr
		// Protocol 0 until bound, so that nothing from another interface
		// queues up in between.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("packet socket: %v", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			t.Fatalf("bind packet socket to %s: %v", dev, err)
		}
		// Non-blocking, so the runtime's poller owns it and Close ends a Read.
		r.f = os.NewFile(uintptr(fd), "packet:"+dev)
	})
	go r.serve()
	t.Cleanup(func() {
		r.f.Close()
		<-r.done
		if err := r.failure(); err != nil {
			t.Errorf("responder: %v", err)
		}
	})
	return r
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (r *responder) serve() {
	defer close(r.done)
	buf := make([]byte, 65536)
	for {
		n, err := r.f.Read(buf)
		if errors.Is(err, os.ErrClosed) {
			return
		} else if err != nil {
			r.fail(err)
			return
		}
		msg, ok := dhcpPayload(buf[:n])
		if !ok {
			continue
		}
		reply, ok, err := r.s.Handle(msg, time.Now())
		if err != nil {
			r.fail(err)
			continue
		}
		if !ok {
			continue
		}
		r.mu.Lock()
		r.replies = append(r.replies, reply)
		r.mu.Unlock()
		if _, err := r.f.Write(frame(r.mac, r.src, net.HardwareAddr(buf[6:12]), reply)); err != nil {
			r.fail(err)
		}
	}
}

func (r *responder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = errors.Join(r.err, err)
}

func (r *responder) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// sent returns the replies sent so far.
func (r *responder) sent() []Reply {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.replies)
}

// dhcpPayload returns the UDP payload of an Ethernet frame carrying IPv4
// UDP to port 67.
func dhcpPayload(f []byte) ([]byte, bool) {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_IP {
		return nil, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[0]>>4 != 4 || ihl < 20 || total > len(ip) || total < ihl+8 || ip[9] != unix.IPPROTO_UDP {
		return nil, false
	}
	udp := ip[ihl:total]
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	if binary.BigEndian.Uint16(udp[2:]) != 67 || ulen < 8 || ulen > len(udp) {
		return nil, false
	}
	return udp[8:ulen], true
}

// frame wraps a Reply in UDP from port 67 to 68, IPv4 from src to r.Dst
// and Ethernet from srcMAC to the broadcast MAC or client's, as the segment
// does, checksums included: the clients check them.
func frame(srcMAC net.HardwareAddr, src netip.Addr, client net.HardwareAddr, r Reply) []byte {
	b := make([]byte, 14+20+8+len(r.Payload))
	copy(b[0:6], client)
	if r.Dst == broadcastAddr {
		copy(b[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:], unix.ETH_P_IP)
	ip, udp := b[14:34], b[34:]
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(len(b)-14))
	s4, d4 := src.As4(), r.Dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	binary.BigEndian.PutUint16(udp[0:], 67)
	binary.BigEndian.PutUint16(udp[2:], 68)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], r.Payload)
	pseudo := checksumAdd(checksumAdd(0, s4[:]), d4[:]) + unix.IPPROTO_UDP + uint32(len(udp))
	cs := checksum(udp, pseudo)
	if cs == 0 {
		cs = 0xffff // RFC 768: a computed 0 is sent as all ones
	}
	binary.BigEndian.PutUint16(udp[6:], cs)
	return b
}

func checksumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func checksum(b []byte, sum uint32) uint16 {
	sum = checksumAdd(sum, b)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// events reads the file a client's script appends to: one record per call,
// "key=value" lines ended by "end".
func events(path string) []map[string]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]string
	ev := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() == "end" {
			out = append(out, ev)
			ev = map[string]string{}
			continue
		}
		k, v, _ := strings.Cut(sc.Text(), "=")
		ev[k] = v
	}
	return out
}

// waitEvent waits until the script has recorded an event whose key is value
// after the first skip events, and returns it.
func waitEvent(t *testing.T, path string, skip int, key, value string, client *nstest.Proc) map[string]string {
	t.Helper()
	deadline := time.Now().Add(oracleTimeout)
	for time.Now().Before(deadline) {
		evs := events(path)
		for _, ev := range evs[min(skip, len(evs)):] {
			if ev[key] == value {
				return ev
			}
		}
		if client.Exited() {
			t.Fatalf("client exited (%d) before %s=%s; its events: %v", client.ExitCode(), key, value, evs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s=%s after %v; the script recorded %v", key, value, oracleTimeout, events(path))
	return nil
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(oracleTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, oracleTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkEnv compares what a client's script was given with want.
func checkEnv(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("script got %s=%q, want %q", k, got[k], v)
		}
	}
}

// checkApplied checks that the client's interface holds the lease and the
// MTU, and that the gateway answers a ping from it: the options arrived and
// the script could use them.
func (sg *segment) checkApplied(t *testing.T, cfg Config) {
	t.Helper()
	addr := sg.client.Run(t, "ip", "-4", "-o", "addr", "show", "dev", sg.clientDev)
	if !strings.Contains(addr, " "+cfg.Lease.String()+" ") {
		t.Errorf("client's %s holds %q, want %v", sg.clientDev, addr, cfg.Lease)
	}
	link := sg.client.Run(t, "ip", "-o", "link", "show", "dev", sg.clientDev)
	if want := " mtu " + strconv.Itoa(cfg.MTU) + " "; !strings.Contains(link, want) {
		t.Errorf("client's %s: %q, want%s", sg.clientDev, link, want)
	}
	sg.client.Run(t, "ping", "-c", "1", "-W", "5", cfg.ServerID.String())
}

// writeScript writes an executable shell script to dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// oracleConfig is the segment the real clients are given.
func oracleConfig() Config {
	return Config{
		Lease:    netip.MustParsePrefix("198.18.3.9/16"),
		ServerID: netip.MustParseAddr("198.18.0.1"),
		DNS:      []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:2::53"), netip.MustParseAddr("198.18.0.2")},
		Domains:  []string{"tunnel.test", "corp.test"},
		MTU:      1400,
	}
}

// udhcpcScript records what busybox udhcpc hands its script (udhcpc(8):
// $1 is the event, options come as variables) and applies the lease; it
// never touches /etc/resolv.conf, which the namespace shares with the host.
// The record follows the change, so a test that sees the event sees the
// address.
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface" ;;
bound|renew)
	ip addr replace "$ip/$mask" dev "$interface"
	[ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
	for r in $router; do ip route replace default via "$r" dev "$interface"; done ;;
esac
{
	echo "event=$1"
	for v in interface ip mask subnet router dns domain search mtu lease serverid; do
		eval "echo $v=\$$v"
	done
	echo end
} >> OUT
exit 0
`

// TestUdhcpc lets busybox udhcpc take a lease, renew it (SIGUSR1, a unicast
// REQUEST with ciaddr) and release it (SIGUSR2), once asking for unicast
// replies, which go to the lease at the client's MAC without ARP, and once
// for broadcast ones (-B).
func TestUdhcpc(t *testing.T) {
	for _, tt := range []struct {
		name  string
		flags []string
		dst   netip.Addr // of the OFFER and the first ACK
	}{
		{"unicast", nil, netip.MustParseAddr("198.18.3.9")},
		{"broadcast", []string{"-B"}, broadcastAddr},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nstest.RequireRoot(t)
			nstest.RequireTool(t, "udhcpc")
			cfg := oracleConfig()
			sg := newSegment(t, cfg)
			dir := t.TempDir()
			out := filepath.Join(dir, "events")
			script := writeScript(t, dir, "udhcpc.script", strings.ReplaceAll(udhcpcScript, "OUT", out))
			args := append([]string{"udhcpc", "-f", "-i", sg.clientDev, "-s", script, "-t", "10", "-T", "1", "-A", "1",
				"-x", "hostname:tunnel-client"}, tt.flags...)
			client := sg.client.Start(t, args...)

			bound := waitEvent(t, out, 0, "event", "bound", client)
			checkEnv(t, bound, map[string]string{
				"ip": "198.18.3.9", "mask": "16", "subnet": "255.255.0.0", "router": "198.18.0.1",
				"dns": "198.18.0.1 198.18.0.2", "domain": "tunnel.test", "search": "tunnel.test corp.test",
				"mtu": "1400", "lease": "3600", "serverid": "198.18.0.1",
			})
			sg.checkApplied(t, cfg)
			sent := sg.resp.sent()
			if len(sent) != 2 || sent[0].Dst != tt.dst || sent[1].Dst != tt.dst {
				t.Errorf("OFFER and ACK went to %v, want 2 to %v", dsts(sent), tt.dst)
			}
			st := sg.server.Stats()
			if st.Offers.Load() != 1 || st.Acks.Load() != 1 {
				t.Errorf("offers %d, acks %d; want 1, 1", st.Offers.Load(), st.Acks.Load())
			}

			n := len(events(out))
			if err := client.Signal(syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			renew := waitEvent(t, out, n, "event", "renew", client)
			checkEnv(t, renew, map[string]string{"ip": "198.18.3.9", "lease": "3600"})
			// udhcpc sends its unicast renewal from a socket of its own,
			// bound to ciaddr:68 and connected to us, which it closes at
			// once; a reply faster than the close lands there and is lost,
			// and udhcpc rebinds by broadcast a second (-T 1) later. Either
			// way every ACK of the renewal goes to ciaddr (RFC 2131 4.1).
			renewals := sg.resp.sent()[2:]
			if len(renewals) == 0 || slices.ContainsFunc(renewals, func(r Reply) bool { return r.Dst != cfg.Lease.Addr() }) {
				t.Errorf("the renewal's ACKs went to %v, want ciaddr %v", dsts(renewals), cfg.Lease.Addr())
			}
			if len(renewals) > 1 {
				t.Logf("udhcpc renewed twice (unicast, then broadcast): our first ACK beat its close")
			}

			if err := client.Signal(syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "release", func() bool { return st.Releases.Load() == 1 })
			if st.Naks.Load()+st.Declines.Load()+st.Malformed.Load() != 0 {
				t.Errorf("stats: naks %d, declines %d, malformed %d", st.Naks.Load(), st.Declines.Load(), st.Malformed.Load())
			}
			got := sg.logs.take()
			want := []string{
				"dhcp lease addr=198.18.3.9 mac=" + mac(t, sg) + " hostname=tunnel-client client_id=01" + strings.ReplaceAll(mac(t, sg), ":", "") + " lease=1h0m0s",
				"dhcp release addr=198.18.3.9 mac=" + mac(t, sg),
			}
			if !slices.Equal(got, want) {
				t.Errorf("logged %q, want %q", got, want)
			}
		})
	}
}

// mac returns the client's MAC address.
func mac(t *testing.T, sg *segment) string {
	t.Helper()
	var s string
	sg.client.Do(t, func() {
		ifi, err := net.InterfaceByName(sg.clientDev)
		if err != nil {
			t.Fatal(err)
		}
		s = ifi.HardwareAddr.String()
	})
	return s
}

func dsts(rs []Reply) []netip.Addr {
	var out []netip.Addr
	for _, r := range rs {
		out = append(out, r.Dst)
	}
	return out
}

// dhclientScript records what ISC dhclient hands its script
// (dhclient-script(8): $reason, options as new_* variables) and applies
// the lease; it never touches /etc/resolv.conf. The record is written
// after the lease is applied, so a test that sees the event sees the
// address too.
const dhclientScript = `#!/bin/sh
case "$reason" in
PREINIT)
	ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
	ip -4 addr flush dev "$interface"
	ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
	[ -n "$new_interface_mtu" ] && ip link set dev "$interface" mtu "$new_interface_mtu"
	for r in $new_routers; do ip route replace default via "$r" dev "$interface"; done ;;
EXPIRE|FAIL|RELEASE|STOP)
	ip -4 addr flush dev "$interface" ;;
esac
{
	echo "reason=$reason"
	for v in ip_address subnet_mask routers domain_name_servers domain_name domain_search interface_mtu \
		dhcp_lease_time dhcp_renewal_time dhcp_rebinding_time dhcp_server_identifier; do
		eval "echo $v=\$new_$v"
	done
	echo end
} >> OUT
exit 0
`

// dhclientConf asks for every option the server sends, so that dhclient
// hands them all to its script.
const dhclientConf = `send host-name "tunnel-client";
request subnet-mask, routers, domain-name-servers, domain-name, domain-search,
	interface-mtu, dhcp-lease-time, dhcp-renewal-time, dhcp-rebinding-time;
`

// staleLease is a lease dhclient remembers from another network: it asks
// for it first (INIT-REBOOT) and must be told no.
const staleLease = `lease {
  interface "IFACE";
  fixed-address 198.18.5.5;
  option subnet-mask 255.255.0.0;
  option dhcp-server-identifier 198.18.0.1;
  renew 4 2037/01/01 00:00:00;
  rebind 4 2037/01/01 00:00:00;
  expire 4 2037/01/01 00:00:00;
}
`

// TestDhclient lets ISC dhclient come with an address remembered from
// elsewhere (INIT-REBOOT, NAKed), take the lease, come back for it after a
// restart (INIT-REBOOT, ACKed) and release it (dhclient -r).
func TestDhclient(t *testing.T) {
	t.Parallel()
	nstest.RequireRoot(t)
	nstest.RequireTool(t, "dhclient")
	cfg := oracleConfig()
	sg := newSegment(t, cfg)
	dir := t.TempDir()
	out := filepath.Join(dir, "events")
	script := writeScript(t, dir, "dhclient.script", strings.ReplaceAll(dhclientScript, "OUT", out))
	conf, leases, pid := filepath.Join(dir, "dhclient.conf"), filepath.Join(dir, "dhclient.leases"), filepath.Join(dir, "dhclient.pid")
	for p, body := range map[string]string{conf: dhclientConf, leases: strings.ReplaceAll(staleLease, "IFACE", sg.clientDev)} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dhclient := func(flags ...string) []string {
		return append(append([]string{"dhclient"}, flags...), "-sf", script, "-cf", conf, "-lf", leases, "-pf", pid, sg.clientDev)
	}
	st := sg.server.Stats()
	want := map[string]string{
		"ip_address": "198.18.3.9", "subnet_mask": "255.255.0.0", "routers": "198.18.0.1",
		"domain_name_servers": "198.18.0.1 198.18.0.2", "domain_name": "tunnel.test",
		"domain_search": "tunnel.test. corp.test.", "interface_mtu": "1400",
		"dhcp_lease_time": "3600", "dhcp_renewal_time": "1800", "dhcp_rebinding_time": "3150",
		"dhcp_server_identifier": "198.18.0.1",
	}

	client := sg.client.Start(t, dhclient("-d", "-1", "-v")...)
	bound := waitEvent(t, out, 0, "reason", "BOUND", client)
	checkEnv(t, bound, want)
	sg.checkApplied(t, cfg)
	if st.Naks.Load() == 0 {
		t.Errorf("the remembered 198.18.5.5 was not NAKed: stats %+v", st)
	}

	// A restart asks for the lease it holds, INIT-REBOOT.
	if err := client.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	client.Wait(oracleTimeout)
	n, offers := len(events(out)), st.Offers.Load()
	client = sg.client.Start(t, dhclient("-d", "-1", "-v")...)
	reboot := waitEvent(t, out, n, "reason", "REBOOT", client)
	checkEnv(t, reboot, want)
	if st.Offers.Load() != offers {
		t.Errorf("the restart went through DISCOVER, not INIT-REBOOT")
	}

	// dhclient -r stops the running one (by the pid file) and releases.
	sg.client.Run(t, dhclient("-r", "-v")...)
	waitFor(t, "release", func() bool { return st.Releases.Load() == 1 })
	if st.Declines.Load()+st.Malformed.Load() != 0 {
		t.Errorf("stats: declines %d, malformed %d", st.Declines.Load(), st.Malformed.Load())
	}
	got := sg.logs.take()
	m := mac(t, sg)
	wantLog := []string{
		"dhcp nak requested=198.18.5.5 addr=198.18.3.9 mac=" + m,
		"dhcp lease addr=198.18.3.9 mac=" + m + " hostname=tunnel-client lease=1h0m0s",
		"dhcp release addr=198.18.3.9 mac=" + m,
	}
	if !slices.Equal(got, wantLog) {
		t.Errorf("logged %q, want %q", got, wantLog)
	}
}

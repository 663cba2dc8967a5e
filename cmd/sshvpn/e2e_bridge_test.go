//go:build integration

package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/internal/nstest"
)

// "IPv6 at home": the gateway's LAN is a bridge br0 with a host
// on a veth, and the LAN's router (radvd for IPv6, dnsmasq for DHCPv4) runs
// on the gateway's own br0.
var (
	homeBr4    = netip.MustParsePrefix("198.18.2.1/24")
	homeBr6    = netip.MustParsePrefix("2001:2:2::1/64")
	homeHost6  = netip.MustParsePrefix("2001:2:2::2/64")
	homeBrMAC  = "02:00:5e:12:02:01"
	homeRadvd  = "interface br0 {\n\tAdvSendAdvert on;\n\tMinRtrAdvInterval 3;\n\tMaxRtrAdvInterval 4;\n\tprefix 2001:2:2::/64 {\n\t\tAdvOnLink on;\n\t\tAdvAutonomous on;\n\t};\n};\n"
	udhcpcHook = "#!/bin/sh\n# sshvpn test: take the lease, touch nothing else (no resolv.conf)\ncase \"$1\" in\nbound|renew) ip addr add \"$ip/$mask\" dev \"$interface\" && echo \"$ip\" > \"$0.lease\" ;;\nesac\nexit 0\n"
)

// home is the topology: client — (underlay) — gateway with br0 — LAN host.
type home struct {
	*topo
	dir string
}

// newHome builds the bridged LAN and starts its router on the gateway.
func newHome(t *testing.T) *home {
	t.Helper()
	nstest.RequireRoot(t)
	for _, tool := range []string{"ip", "nft", "radvd", "dnsmasq", "udhcpc"} {
		nstest.RequireTool(t, tool)
	}
	h := &home{topo: &topo{client: nstest.New(t), gw: nstest.New(t), lan: nstest.New(t), keyDir: t.TempDir(), stateDir: t.TempDir()}, dir: t.TempDir()}
	nstest.Link(t, h.client, underClient, h.gw, underGW)
	gwDev, lanDev := nstest.Link(t, h.gw, netip.Prefix{}, h.lan, lanHost)
	h.lan.Run(t, "ip", "addr", "add", homeHost6.String(), "dev", lanDev, "nodad")
	// A bridge with a MAC of its own, as network managers make them: one
	// that takes its lowest port's would change it when a tap joins.
	h.gw.Run(t, "ip", "link", "add", "br0", "address", homeBrMAC, "type", "bridge", "stp_state", "0", "forward_delay", "0")
	h.gw.Run(t, "ip", "link", "set", gwDev, "master", "br0")
	h.gw.Run(t, "ip", "addr", "add", homeBr4.String(), "dev", "br0")
	h.gw.Run(t, "ip", "addr", "add", homeBr6.String(), "dev", "br0", "nodad")
	h.gw.Run(t, "ip", "link", "set", "br0", "up")
	// radvd advertises only as a router, which forwards.
	h.gw.Run(t, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
	radvdConf := filepath.Join(h.dir, "radvd.conf")
	if err := os.WriteFile(radvdConf, []byte(homeRadvd), 0o600); err != nil {
		t.Fatal(err)
	}
	h.gw.Start(t, "radvd", "-n", "-C", radvdConf, "-p", filepath.Join(h.dir, "radvd.pid"), "-m", "stderr")
	h.gw.Start(t, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
		"--interface=br0", "--bind-interfaces", "--dhcp-authoritative",
		"--dhcp-range=198.18.2.100,198.18.2.199,255.255.255.0,10m",
		"--dhcp-leasefile="+filepath.Join(h.dir, "leases"), "--pid-file="+filepath.Join(h.dir, "dnsmasq.pid"), "--log-dhcp")
	return h
}

// bridgedClient connects a stock ssh -o Tunnel=ethernet client to a gateway
// started with gwArgs, and waits for its tap0.
func (h *home) bridgedClient(t *testing.T, o nstest.OpenSSH, gwArgs ...string) (*gatewayProc, *nstest.Proc) {
	t.Helper()
	priv, pub := h.key(t, o, "client")
	gw := h.startGateway(t, pub+"\n", gwArgs...)        // no SSHVPN_ALLOWED_IPS: a bridged tap needs none
	ssh := h.sshTunnel(t, o, priv, "ethernet", "0:any") // no -N: the session shows the status
	waitTunnel(t, h.client, "tap0", ssh, gw, 1)
	return gw, ssh
}

// slaac lets the client's tap0 take the LAN's prefix and returns its
// global address once duplicate address detection is done.
func (h *home) slaac(t *testing.T) netip.Addr {
	t.Helper()
	h.client.Run(t, "sysctl", "-q", "-w", "net.ipv6.conf.tap0.accept_ra=2", "net.ipv6.conf.tap0.autoconf=1")
	h.client.Run(t, "ip", "link", "set", "tap0", "up")
	var got netip.Addr
	nstest.WaitFor(t, 20*time.Second, "an address from radvd's prefix on tap0", func() bool {
		out, _ := h.client.Cmd("ip", "-6", "-o", "addr", "show", "dev", "tap0", "scope", "global").CombinedOutput()
		m := regexp.MustCompile(`inet6 (2001:2:2:0:[0-9a-f:]+)/64 scope global (.*)`).FindStringSubmatch(string(out))
		if m == nil || strings.Contains(m[2], "tentative") {
			return false
		}
		got = netip.MustParseAddr(m[1])
		return true
	})
	return got
}

// dhcp runs udhcpc on tap0 with the test's own script and returns the lease.
func (h *home) dhcp(t *testing.T) netip.Addr {
	t.Helper()
	script := filepath.Join(h.dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcHook), 0o700); err != nil {
		t.Fatal(err)
	}
	h.client.Run(t, "ip", "link", "set", "tap0", "up")
	h.client.Run(t, "udhcpc", "-i", "tap0", "-s", script, "-f", "-q", "-n", "-t", "10", "-T", "1", "-A", "1")
	b, err := os.ReadFile(script + ".lease")
	if err != nil {
		t.Fatalf("udhcpc took no lease: %v", err)
	}
	return netip.MustParseAddr(strings.TrimSpace(string(b)))
}

// (b) IPv6 at home with stock clients: the tap on the gateway's
// bridge autoconfigures from the LAN's router advertisements and takes a
// lease from its DHCP server, and reaches the LAN host both ways.
func TestBridgeHome(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		h := newHome(t)
		gw, ssh := h.bridgedClient(t, o, "--bridge", "br0")
		nstest.WaitFor(t, 5*time.Second, "the bridged status in the ssh session", func() bool {
			return strings.Contains(ssh.Log(), "a port of its bridge br0") && strings.Contains(ssh.Log(), "udhcpc -i $dev")
		})
		if out := h.gw.Run(t, "ip", "-o", "link", "show", "master", "br0"); !strings.Contains(out, "tap0") {
			t.Fatalf("tap0 is not on br0:\n%s", out)
		}
		if out := h.gw.Run(t, "ip", "-o", "addr", "show", "dev", "tap0"); strings.TrimSpace(out) != "" {
			t.Errorf("the gateway's tap has addresses: %s", out)
		}

		v6 := h.slaac(t)
		nstest.Ping(t, h.client, homeHost6.Addr().String(), 3)
		v4 := h.dhcp(t)
		if !netip.MustParsePrefix("198.18.2.0/24").Contains(v4) {
			t.Fatalf("lease %s is not from dnsmasq's range", v4)
		}
		nstest.Ping(t, h.client, lanHost.Addr().String(), 3)
		nstest.Ping(t, h.lan, v4.String(), 3)
		up := nstest.Transfer(t, h.lan, lanHost.Addr().String()+":0", h.client, lanHost.Addr().String(), 20<<20, false)
		down := nstest.Transfer(t, h.lan, lanHost.Addr().String()+":0", h.client, lanHost.Addr().String(), 20<<20, true)
		t.Logf("OpenSSH %s client bridged as %s and %s: upload %v, download %v", o.Version, v4, v6, up, down)

		mac := ifaceMAC(t, h.client, "tap0")
		leases, _ := os.ReadFile(filepath.Join(h.dir, "leases"))
		if !strings.Contains(string(leases), mac.String()+" "+v4.String()) {
			t.Errorf("dnsmasq's leases lack %s for %s:\n%s", v4, mac, leases)
		}
		if !regexp.MustCompile(`client MAC learnt.*mac=` + mac.String() + `.*key=SHA256:`).MatchString(gw.Log()) {
			t.Errorf("the gateway did not log the client's MAC with its key:\n%s", gw.Log())
		}
	})
}

// (b) with sshvpn at both ends: sshvpn connect -o Tunnel=ethernet --dhcp
// into the bridged gateway takes dnsmasq's lease and radvd's prefix on its
// tap, with no other flag, and reaches the LAN host on both families; at
// exit it gives the lease back and leaves nothing on the client.
func TestBridgeHomeSshvpnClient(t *testing.T) {
	t.Parallel()
	h := newHome(t)
	o := nstest.OpenSSHs(t)[0]
	priv, pub := h.key(t, o, "client")
	h.startGateway(t, pub+"\n", "--bridge", "br0")
	before := h.client.Run(t, "ip", "-o", "link", "show")
	c := h.client.Start(t, connectArgs(priv, "", "-p", "2222", "-o", "Tunnel=ethernet", "--dhcp", "root@"+underGW.Addr().String())...)
	waitUp(t, c, 1)
	nstest.WaitFor(t, 15*time.Second, "the DHCP lease applied", func() bool {
		if c.Exited() {
			t.Fatalf("sshvpn connect exited: %s", c.Log())
		}
		return strings.Contains(c.Log(), `msg="DHCP lease"`)
	})
	dev := regexp.MustCompile(`device=(tap\d+)`).FindStringSubmatch(c.Log())
	if dev == nil {
		t.Fatalf("sshvpn connect names no tap:\n%s", c.Log())
	}
	tap := dev[1]
	mac := ifaceMAC(t, h.client, tap)
	leases, _ := os.ReadFile(filepath.Join(h.dir, "leases"))
	m := regexp.MustCompile(mac.String() + ` (198\.18\.2\.\d+) `).FindStringSubmatch(string(leases))
	if m == nil {
		t.Fatalf("dnsmasq's leases have nothing for %s:\n%s", mac, leases)
	}
	if addrs := h.client.Run(t, "ip", "-4", "-o", "addr", "show", "dev", tap); !strings.Contains(addrs, "inet "+m[1]+"/24") {
		t.Fatalf("%s lacks the lease %s: %s", tap, m[1], addrs)
	}
	if strings.Contains(c.Log(), "pass --address") {
		t.Errorf("sshvpn connect asked for --address though DHCP and SLAAC address the tap:\n%s", c.Log())
	}
	nstest.WaitFor(t, 20*time.Second, "an address from radvd's prefix on "+tap, func() bool {
		out := h.client.Run(t, "ip", "-6", "-o", "addr", "show", "dev", tap, "scope", "global")
		return strings.Contains(out, "inet6 2001:2:2:0:") && !strings.Contains(out, "tentative")
	})
	nstest.Ping(t, h.client, lanHost.Addr().String(), 3)
	nstest.Ping(t, h.client, homeHost6.Addr().String(), 3)
	r := nstest.Transfer(t, h.lan, lanHost.Addr().String()+":0", h.client, lanHost.Addr().String(), 20<<20, true)
	t.Logf("sshvpn connect --dhcp bridged as %s: %v", m[1], r)

	c.Signal(syscall.SIGTERM)
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatalf("sshvpn connect did not end cleanly: %v\n%s", err, c.Log())
	}
	nstest.WaitFor(t, 5*time.Second, "dnsmasq drops the released lease", func() bool {
		leases, _ := os.ReadFile(filepath.Join(h.dir, "leases"))
		return !strings.Contains(string(leases), mac.String())
	})
	if after := h.client.Run(t, "ip", "-o", "link", "show"); after != before {
		t.Errorf("the client's links changed:\nbefore %s\nafter %s", before, after)
	}
}

// (c) Port security: frames a client writes into its tap from a second
// MAC, a DHCP server's offer, a router advertisement, an ARP reply and a
// neighbour advertisement claiming the LAN router's (the gateway host's)
// addresses never reach the LAN, while the LAN host's transfer to the
// legitimate client runs undisturbed.
func TestBridgePortSecurity(t *testing.T) {
	forEachOpenSSH(t, func(t *testing.T, o nstest.OpenSSH) {
		h := newHome(t)
		gw, _ := h.bridgedClient(t, o, "--bridge", "br0")
		v4 := h.dhcp(t)
		mac := ifaceMAC(t, h.client, "tap0")
		brMAC, _ := net.ParseMAC(homeBrMAC)
		nstest.Ping(t, h.lan, v4.String(), 2)
		lanMAC := ifaceMAC(t, h.lan, "veth0")

		capture := startCapture(t, h.lan, "veth0")
		transfer := nstest.StartTransfer(t, h.client, v4.String()+":0", h.lan, v4.String(), 32<<20, true)

		bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		other := net.HardwareAddr{0x02, 0x00, 0x5e, 0x12, 0x0c, 0x02}
		allNodes := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
		ll := netip.MustParseAddr("fe80::5e:12ff:fe0c:1")
		// Each frame carries its tag inside what the gateway's framer
		// keeps: the L3 payload, or an ARP frame's minimum-size padding.
		bcast4, zero4 := netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("0.0.0.0")
		frames := map[string][]byte{
			// Must arrive: proves the capture sees what the tap lets through.
			"control":    ether(bcast, mac, 0x0800, udp4(v4, bcast4, 9999, 9999, tag("control"))),
			"other-mac":  ether(bcast, other, 0x0800, udp4(netip.MustParseAddr("198.18.2.200"), bcast4, 9999, 9999, tag("other-mac"))),
			"dhcp-offer": ether(bcast, mac, 0x0800, udp4(v4, bcast4, 67, 68, append(dhcpOffer(lanMAC), tag("dhcp-offer")...))),
			"ra":         ether(allNodes, mac, 0x86dd, icmp6(ll, netip.MustParseAddr("ff02::1"), 134, append(make([]byte, 12), tag("ra")...))),
			"arp-reply":  ether(bcast, mac, 0x0806, append(arpReply(mac, homeBr4.Addr(), bcast, lanHost.Addr()), tag("arp-reply")...)),
			"na-router": ether(allNodes, mac, 0x86dd, icmp6(ll, netip.MustParseAddr("ff02::1"), 136,
				append(append([]byte{0x20, 0, 0, 0}, homeBr6.Addr().AsSlice()...), tag("na-router")...))),
			// The router's address as a solicitation's source, with the
			// client's MAC as its link-layer address.
			"ns-router": ether(lanMAC, mac, 0x86dd, neighSolicit(homeBr6.Addr(), homeHost6.Addr(), mac, "ns-router")),
			// A DISCOVER from the client's MAC in another's name: one
			// locked MAC asking for many would drain the LAN's pool.
			"dhcp-chaddr": ether(bcast, mac, 0x0800, udp4(zero4, bcast4, 68, 67, append(dhcpDiscover(other), tag("dhcp-chaddr")...))),
			// Its first fragment, ending before the chaddr the table reads.
			"dhcp-frag": ether(bcast, mac, 0x0800, firstFragment(udp4(zero4, bcast4, 68, 67, append(tag("dhcp-frag"), 0, 0)))),
		}
		noneReached(t, capture.send(t, h.client, "tap0", frames), frames, "")
		if r, err := transfer.Wait(); err != nil {
			t.Errorf("the LAN host's transfer to the client: %v", err)
		} else {
			t.Logf("LAN host → legitimate client during the attack: %v", r)
		}
		nstest.Ping(t, h.lan, v4.String(), 2)
		if neigh := h.lan.Run(t, "ip", "neigh", "show", homeBr4.Addr().String()); strings.Contains(neigh, mac.String()) || (strings.Contains(neigh, "lladdr") && !strings.Contains(neigh, brMAC.String())) {
			t.Errorf("the LAN host's neighbour entry for the router was poisoned: %s", neigh)
		}
		if got := neighMAC(t, h.lan, homeBr6.Addr()); got != "" && got != brMAC.String() {
			t.Errorf("the LAN host's neighbour entry for the router's %s has %s, not the router's %s", homeBr6.Addr(), got, brMAC)
		}
		// Every drop rule counted its frame.
		table := h.gw.Run(t, "nft", "list", "table", "bridge", fmt.Sprintf("sshvpn-bridge-%d", gw.PID()))
		for _, why := range []string{"another MAC", "router advertisement", "DHCPv4 server message", "ARP claiming the gateway host's address", "neighbour advertisement claiming the gateway host's address",
			"neighbour or router solicitation claiming the gateway host's address", "DHCPv4 request for another MAC than the tunnel's"} {
			if !regexp.MustCompile(`counter packets [1-9]\d* bytes \d+ drop comment "` + regexp.QuoteMeta(why)).MatchString(table) {
				t.Errorf("no drop counted for %q:\n%s", why, table)
			}
		}
		if !strings.Contains(gw.Log(), "a fragmented DHCPv4 request") {
			t.Errorf("the gateway did not say it dropped a fragmented DHCP request:\n%s", gw.Log())
		}
	})
}

// ifaceMAC is dev's MAC inside ns.
func ifaceMAC(t *testing.T, ns *nstest.NS, dev string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	ns.Do(t, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		mac = ifi.HardwareAddr
	})
	return mac
}

// marker tags every frame the port security test writes, then its name:
// short, so that it fits an ARP frame's padding.
const marker = "sps:"

func tag(name string) []byte { return []byte(marker + name + ";") }

// sendFrames writes each frame, tagged with its name, into dev inside ns
// through an AF_PACKET socket: as if the client's kernel had sent it.
func sendFrames(t *testing.T, ns *nstest.NS, dev string, frames map[string][]byte) {
	t.Helper()
	ns.Do(t, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
		if err := unix.Bind(fd, sa); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			for name, f := range frames {
				if _, err := unix.Write(fd, f); err != nil {
					t.Fatalf("write %s: %v", name, err)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// capture counts tagged frames arriving on a device.
type capture struct {
	fd     int
	stopCh chan struct{}
	done   chan map[string]int
}

func startCapture(t *testing.T, ns *nstest.NS, dev string) *capture {
	t.Helper()
	c := &capture{done: make(chan map[string]int, 1)}
	ns.Do(t, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		if c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			t.Fatal(err)
		}
	})
	// Room for the transfer's frames beside the tagged ones.
	unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	stop := make(chan struct{})
	t.Cleanup(func() { unix.Close(c.fd) })
	go func() {
		seen := map[string]int{}
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				c.done <- seen
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue
			}
			if i := bytes.Index(buf[:n], []byte(marker)); i >= 0 {
				name, _, _ := strings.Cut(string(buf[i+len(marker):n]), ";")
				seen[name]++
			}
		}
	}()
	c.stopCh = stop
	return c
}

// send writes frames into dev inside ns, then stops the capture and
// returns how often each reached it. A control frame that never arrived
// fails the test: the capture would prove nothing.
func (c *capture) send(t *testing.T, ns *nstest.NS, dev string, frames map[string][]byte) map[string]int {
	t.Helper()
	sendFrames(t, ns, dev, frames)
	seen := c.stop(t)
	if seen["control"] == 0 {
		t.Fatalf("the control frame never reached the capture: it proves nothing (seen %v)", seen)
	}
	return seen
}

// noneReached fails for each frame, but the control frame and those
// allowed, that the capture saw.
func noneReached(t *testing.T, seen map[string]int, frames map[string][]byte, who string, allowed ...string) {
	t.Helper()
	for name := range frames {
		if name != "control" && !slices.Contains(allowed, name) && seen[name] > 0 {
			t.Errorf("%s%s reached the LAN host %d times", who, name, seen[name])
		}
	}
}

func (c *capture) stop(t *testing.T) map[string]int {
	time.Sleep(500 * time.Millisecond) // what is in flight lands
	close(c.stopCh)
	return <-c.done
}

// ether is an Ethernet frame.
func ether(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	f := append(append(bytes.Clone([]byte(dst)), src...), byte(typ>>8), byte(typ))
	return append(f, payload...)
}

// udp4 is an IPv4 UDP datagram with a valid header (nftables parses
// transport headers of well-formed packets only).
func udp4(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	total := 20 + 8 + len(payload)
	p := make([]byte, 28, total)
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(total))
	copy(p[12:], src.AsSlice())
	copy(p[16:], dst.AsSlice())
	binary.BigEndian.PutUint16(p[10:], ipChecksum(p[:20]))
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(total-20))
	return append(p, payload...)
}

func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// icmp6 is an ICMPv6 message of type typ with body, hop limit 255 as
// neighbour discovery wants.
func icmp6(src, dst netip.Addr, typ byte, body []byte) []byte {
	payload := 4 + len(body)
	p := make([]byte, 44, 40+payload)
	p[0], p[6], p[7] = 0x60, 58, 255
	binary.BigEndian.PutUint16(p[4:], uint16(payload))
	copy(p[8:], src.AsSlice())
	copy(p[24:], dst.AsSlice())
	p[40] = typ
	return append(p, body...)
}

// arpReply is an ARP reply: sha claims spa.
func arpReply(sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	p := []byte{0, 1, 8, 0, 6, 4, 0, 2}
	p = append(p, sha...)
	p = append(p, spa.AsSlice()...)
	p = append(p, tha...)
	return append(p, tpa.AsSlice()...)
}

// dhcpOffer is a BOOTP reply carrying DHCP message type OFFER for chaddr.
func dhcpOffer(chaddr net.HardwareAddr) []byte {
	p := make([]byte, 236)
	p[0], p[1], p[2] = 2, 1, 6           // BOOTREPLY, Ethernet
	copy(p[16:], []byte{198, 18, 2, 66}) // yiaddr
	copy(p[28:], chaddr)
	p = append(p, 99, 130, 83, 99) // magic cookie
	return append(p, 53, 1, 2, 255)
}

// dhcpDiscover is a BOOTP request carrying DHCP message type DISCOVER for
// chaddr.
func dhcpDiscover(chaddr net.HardwareAddr) []byte {
	p := make([]byte, 236)
	p[0], p[1], p[2] = 1, 1, 6                  // BOOTREQUEST, Ethernet
	copy(p[4:], []byte{0x5e, 0x12, 0x0d, 0x15}) // xid
	copy(p[28:], chaddr)
	p = append(p, 99, 130, 83, 99) // magic cookie
	return append(p, 53, 1, 1, 255)
}

// firstFragment marks the IPv4 packet p as the first of several
// fragments (more fragments, offset 0), its header checksum made anew.
func firstFragment(p []byte) []byte {
	p[6] |= 0x20
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], ipChecksum(p[:20]))
	return p
}

// (f) --create-bridge: the manual swap in one step, and put back exactly on
// SIGTERM, and after a SIGKILL by sshvpn cleanup.
func TestCreateBridge(t *testing.T) {
	nstest.RequireRoot(t)
	tp := newTopo(t)
	iface := "veth1" // the gateway's end of its LAN link, at lanGW
	tp.gw.Run(t, "ip", "addr", "add", "2001:2:2::1/64", "dev", iface, "nodad")
	tp.gw.Run(t, "ip", "addr", "add", "198.18.2.9/24", "dev", iface) // a secondary
	tp.lan.Run(t, "ip", "addr", "add", homeHost6.String(), "dev", "veth0", "nodad")
	tp.gw.Run(t, "ip", "route", "add", "default", "via", lanHost.Addr().String(), "metric", "100", "proto", "dhcp")
	tp.gw.Run(t, "ip", "route", "add", "198.18.40.0/24", "via", lanHost.Addr().String(), "metric", "7", "proto", "static")
	tp.gw.Run(t, "ip", "-6", "route", "add", "default", "via", homeHost6.Addr().String(), "metric", "512", "proto", "ra")
	nstest.WaitFor(t, 10*time.Second, "IPv6 link-local addresses settled", func() bool {
		out, _ := tp.gw.Cmd("ip", "addr").CombinedOutput()
		return !strings.Contains(string(out), "tentative")
	})
	before := netState(t, tp.gw)
	bridge := "br-" + iface
	ifaceMACBefore := ifaceMAC(t, tp.gw, iface)

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			gw := tp.startGateway(t, "", "--create-bridge", iface)
			if !strings.Contains(gw.Log(), "bridge="+bridge) {
				t.Errorf("the gateway did not log the bridge it made:\n%s", gw.Log())
			}
			if got := ifaceMAC(t, tp.gw, bridge); got.String() != ifaceMACBefore.String() {
				t.Errorf("%s has MAC %s, want %s's %s", bridge, got, iface, ifaceMACBefore)
			}
			out := tp.gw.Run(t, "ip", "-o", "addr", "show", "dev", bridge)
			for _, a := range []string{lanGW.String(), "198.18.2.9/24", "2001:2:2::1/64"} {
				if !strings.Contains(out, a) {
					t.Errorf("%s lacks %s:\n%s", bridge, a, out)
				}
			}
			routes := tp.gw.Run(t, "ip", "route") + tp.gw.Run(t, "ip", "-6", "route")
			for _, r := range []string{"default via 198.18.2.2 dev " + bridge + " proto dhcp metric 100", "198.18.40.0/24 via 198.18.2.2 dev " + bridge + " proto static metric 7",
				"default via 2001:2:2::2 dev " + bridge + " proto ra metric 512"} {
				if !strings.Contains(routes, r) {
					t.Errorf("no %q:\n%s", r, routes)
				}
			}
			if out := tp.gw.Run(t, "ip", "-o", "link", "show", iface); !strings.Contains(out, "master "+bridge) {
				t.Errorf("%s is not the bridge's port: %s", iface, out)
			}
			nstest.Ping(t, tp.gw, lanHost.Addr().String(), 2)
			nstest.Ping(t, tp.gw, homeHost6.Addr().String(), 2)

			gw.Signal(sig)
			err := gw.Wait(10 * time.Second)
			if sig == syscall.SIGKILL {
				out, cerr := tp.gw.Cmd(sshvpnBin, "cleanup", "--state-dir", tp.stateDir).CombinedOutput()
				if cerr != nil {
					t.Fatalf("sshvpn cleanup: %v\n%s", cerr, out)
				}
				t.Logf("sshvpn cleanup: %s", out)
			} else if err != nil {
				t.Fatalf("gateway did not stop cleanly: %v\n%s", err, gw.Log())
			}
			if after := netState(t, tp.gw); after != before {
				t.Errorf("after %s, the host differs:\nbefore %s\nafter  %s", sig, before, after)
			}
			nstest.Ping(t, tp.gw, lanHost.Addr().String(), 2)
		})
	}
}

// netState is `ip -d -j link`, `ip -j addr`, `ip -j route` and `ip -6 -j
// route` as JSON with what the kernel changes by itself left out.
func netState(t *testing.T, ns *nstest.NS) string {
	t.Helper()
	var parts []string
	for _, args := range [][]string{{"-d", "-j", "link", "show"}, {"-j", "addr", "show"}, {"-j", "route", "show", "table", "all"}, {"-6", "-j", "route", "show", "table", "all"}} {
		var v any
		out := ns.Run(t, append([]string{"ip"}, args...)...)
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		b, _ := json.Marshal(normalise(v))
		parts = append(parts, string(b))
	}
	return strings.Join(parts, "\n")
}

// normalise drops the fields that change with time or traffic.
func normalise(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range []string{"stats", "stats64"} {
			delete(x, k)
		}
		for k, e := range x {
			x[k] = normalise(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalise(e)
		}
	}
	return v
}

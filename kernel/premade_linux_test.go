package kernel

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/relay"
)

// The premade tests run their client part as uid 65534 without any
// capability, in a child process: this test binary again, running
// TestPremadeChild. /dev/net/tun is 0600 on some hosts, so the child gets
// a 0666 node of its own in a private mount namespace, as on the many
// hosts that ship it so.

const premadeChildEnv = "SSHVPN_PREMADE_CHILD" // the local unit: "any" or N

// premadeWants is what the child's flags ask of the device.
var premadeWants = LocalConfig{Mode: relay.PointToPoint, MTU: 1400,
	Addrs:  []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")},
	Routes: []netip.Prefix{netip.MustParsePrefix("198.18.5.0/24"), netip.MustParsePrefix("198.18.10.0/24")}}

// The gateway's configuration at the first connection, and after a
// reconnect that brings another route.
var (
	premadeGW  = relay.TunnelConfig{Routes: []netip.Prefix{netip.MustParsePrefix("198.18.6.0/24")}, DNS: []netip.Addr{netip.MustParseAddr("198.18.0.53")}, Domains: []string{"corp.test"}}
	premadeGW2 = relay.TunnelConfig{Routes: []netip.Prefix{netip.MustParsePrefix("198.18.7.0/24")}, DNS: premadeGW.DNS, Domains: premadeGW.Domains}
)

// TestPremadeChild is the unprivileged client, run by runPremadeChild
// only: it probes the offloads, picks the device, attaches it with the
// report, reconnects with another configuration and lets go.
func TestPremadeChild(t *testing.T) {
	spec, ok := os.LookupEnv(premadeChildEnv)
	if !ok {
		t.Skip("the unprivileged half of the premade tests; runPremadeChild runs it")
	}
	fmt.Printf("needs premade: %v\n", NeedsPremade())
	unit := relay.AnyUnit
	if spec != "any" {
		fmt.Sscanf(spec, "%d", &unit)
	}
	d, err := FindPremade(relay.PointToPoint, unit)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return
	}
	fmt.Printf("device: %s picked=%v\n", d.Name, d.Picked)
	fmt.Printf("offloads: %s\n", probeOffloads(d.Name))
	cfg := premadeWants
	cfg.Unit, cfg.Premade = d.Unit, true
	cfg.Log = slog.New(slog.NewTextHandler(os.Stdout, nil))
	l, err := OpenLocal(cfg, &premadeGW)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return
	}
	fmt.Printf("gso: %v\n", l.GSO())
	if err := l.Update(&premadeGW2); err != nil {
		fmt.Printf("error: %v\n", err)
	}
	if err := l.Close(); err != nil {
		fmt.Printf("error: %v\n", err)
	}
}

// probeOffloads tries what GSO needs on name as its owner: attaching with
// a virtio-net header and turning TSO on. It attaches the device plain
// again afterwards, as its owner's next program expects it.
func probeOffloads(name string) string {
	attach := func(flags uint16) (int, error) {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		ifr, _ := unix.NewIfreq(name)
		ifr.SetUint16(flags)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	fd, err := attach(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err != nil {
		return "vnet_hdr refused: " + err.Error()
	}
	res := "vnet_hdr ok, tso ok"
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6); err != nil {
		res = "vnet_hdr ok, tso refused: " + err.Error()
	}
	unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0)
	unix.Close(fd)
	if fd, err := attach(unix.IFF_TUN | unix.IFF_NO_PI); err == nil {
		unix.Close(fd)
	}
	return res
}

// runPremadeChild runs TestPremadeChild as uid 65534 without capabilities
// in the calling thread's network namespace, and returns its output.
func runPremadeChild(t *testing.T, unit string) string {
	t.Helper()
	requireTool(t, "setpriv")
	requireTool(t, "unshare")
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kernel.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	script := `mount -t tmpfs -o mode=0755 premade /dev/net && mknod -m 0666 /dev/net/tun c 10 200 &&
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all "$@"`
	cmd := exec.Command("unshare", "--mount", "sh", "-c", script, "sh", bin, "-test.run=^TestPremadeChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), premadeChildEnv+"="+unit)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "needs premade: true") {
		t.Fatalf("the child has CAP_NET_ADMIN:\n%s", out)
	}
	return string(out)
}

// A device root prepared with an address, a route and up: the client
// attaches it without privileges, changes nothing, and names each missing
// piece with root's command, on a reconnect only what changed.
func TestPremadeReport(t *testing.T) {
	inNewNS(t, func() {
		run(t, "ip", "tuntap", "add", "tun7", "mode", "tun", "user", "65534")
		run(t, "ip", "addr", "add", "198.18.9.2/30", "dev", "tun7")
		run(t, "ip", "link", "set", "tun7", "up")
		run(t, "ip", "route", "add", "198.18.10.0/24", "dev", "tun7")
		// The kernel gives a tun an IPv6 link-local address when a first
		// program attaches it, ours or ssh -w: not a change of ours.
		run(t, "sysctl", "-qw", "net.ipv6.conf.tun7.disable_ipv6=1")
		before := linkState(t)
		out := runPremadeChild(t, "7")
		if after := settledLinkState(t); after != before {
			t.Errorf("the unprivileged client changed the host:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		for _, want := range []string{
			"device: tun7 picked=false",
			"offloads: vnet_hdr ok, tso ok",
			"gso: false",
			`msg="attached the device root prepared; sshvpn changes nothing on it" device=tun7 up=true mtu=1500 addresses=[198.18.9.2/30] routes="[198.18.9.0/30 198.18.10.0/24]"`,
			`msg="missing on tun7: root runs: ip link set tun7 mtu 1400"`,
			`msg="missing on tun7: root runs: ip addr add 198.18.0.2/24 dev tun7"`,
			`msg="missing on tun7: root runs: ip route add 198.18.5.0/24 dev tun7"`,
			`msg="missing on tun7: root runs: ip route add 198.18.6.0/24 dev tun7"`,
			`msg="not applied on tun7, the gateway's name servers: root runs: resolvectl dns tun7 198.18.0.53 && resolvectl domain tun7 ~corp.test"`,
			`msg="missing on tun7: root runs: ip route add 198.18.7.0/24 dev tun7"`,
			`msg="no longer missing: missing on tun7: root runs: ip route add 198.18.6.0/24 dev tun7"`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("missing %s in:\n%s", want, out)
			}
		}
		for _, once := range []string{"ip addr add 198.18.0.2/24", "resolvectl dns", "attached the device"} {
			if n := strings.Count(out, once); n != 1 {
				t.Errorf("%q reported %d times, want once (a reconnect reports what changed):\n%s", once, n, out)
			}
		}
		for _, not := range []string{"ip route add 198.18.10.0/24", "is down", "ip route add 198.18.0.0/24"} {
			if strings.Contains(out, not) {
				t.Errorf("reported %q, which is in place or comes with an address:\n%s", not, out)
			}
		}
	})
}

// settledLinkState is linkState once the kernel has noted that the last
// program let go of tun7: it turns the carrier off a moment later.
func settledLinkState(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(run(t, "ip", "link", "show", "tun7"), "NO-CARRIER") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return linkState(t)
}

// A device that is down is attached all the same, with a warning that
// names root's command.
func TestPremadeDown(t *testing.T) {
	inNewNS(t, func() {
		run(t, "ip", "tuntap", "add", "tun7", "mode", "tun", "user", "65534")
		out := runPremadeChild(t, "7")
		if !strings.Contains(out, `msg="tun7 is down: packets will not flow until root runs: ip link set tun7 up"`) || strings.Contains(out, "error:") {
			t.Errorf("want the down warning and no error:\n%s", out)
		}
	})
}

// A device made for someone else, or none at all, is refused with the
// commands root runs once for this user.
func TestPremadeRefused(t *testing.T) {
	inNewNS(t, func() {
		run(t, "ip", "tuntap", "add", "tun7", "mode", "tun", "user", "1000")
		for unit, why := range map[string]string{
			"7":   "-w 7: tun7 belongs to uid 1000",
			"8":   "-w 8: tun8 does not exist",
			"any": "-w any: no persistent tun device of nobody's is free",
		} {
			out := runPremadeChild(t, unit)
			name := map[string]string{"7": "tun7", "8": "tun8", "any": "tun0"}[unit]
			advice := "root runs once: ip tuntap add " + name + " mode tun user nobody && ip link set " + name + " up"
			if !strings.Contains(out, "error: "+why) || !strings.Contains(out, advice) {
				t.Errorf("-w %s: want %q and %q in:\n%s", unit, why, advice, out)
			}
		}
	})
}

// -w any takes the one free tun of the caller's, not someone else's, a
// tap, or one in use; with two, it names both.
func TestPremadeAny(t *testing.T) {
	inNewNS(t, func() {
		run(t, "ip", "tuntap", "add", "tun3", "mode", "tun", "user", "1000")
		run(t, "ip", "tuntap", "add", "tap2", "mode", "tap", "user", "65534")
		run(t, "ip", "tuntap", "add", "tun5", "mode", "tun", "user", "65534")
		if out := runPremadeChild(t, "any"); !strings.Contains(out, "device: tun5 picked=true") {
			t.Errorf("want tun5 picked:\n%s", out)
		}
		run(t, "ip", "tuntap", "add", "tun6", "mode", "tun", "group", "65534")
		if out := runPremadeChild(t, "any"); !strings.Contains(out, "error: -w any: several persistent tun devices are yours and free (tun5, tun6): name one with -w N:any") {
			t.Errorf("want both named:\n%s", out)
		}
	})
}

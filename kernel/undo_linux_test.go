//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/relay"
)

// snapshot is what the host looks like to ip(8), nft(8) and sysctl.
func snapshot(t *testing.T) map[string]string {
	t.Helper()
	forward, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"ip -d link":          run(t, "ip", "-d", "link"),
		"ip addr":             run(t, "ip", "addr"),
		"ip route":            run(t, "ip", "route"),
		"ip -6 route":         run(t, "ip", "-6", "route"),
		"nft list ruleset":    run(t, "nft", "list", "ruleset"),
		"net.ipv4.ip_forward": string(forward),
	}
}

func TestUndoRevertsEverything(t *testing.T) {
	requireTool(t, "ip")
	requireTool(t, "nft")
	inNewNS(t, func() {
		tun := open(t, relay.PointToPoint, relay.AnyUnit)
		dev := tun.Name()
		// The first time a link goes up the kernel gives it a qdisc that
		// stays after it goes down: not a change anyone can undo, so it
		// happens before the "before" picture.
		cycleLink(t, dev)
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0"), 0); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t)

		u, _ := testUndo(t)
		for _, err := range []error{
			u.LinkUp(dev),
			u.SetMTU(dev, 1400),
			u.AddAddress(dev, mustPrefix("198.18.0.1/24"), false),
			u.AddAddress(dev, mustPrefix("2001:2::1/64"), true),
			u.AddRoute(mustPrefix("198.18.1.0/24"), dev),
			u.AddRoute(mustPrefix("2001:2:0:1::/64"), dev),
			u.SetSysctl("net.ipv4.ip_forward", "1"),
			u.Masquerade(mustPrefix("198.18.0.0/24")),
			u.Masquerade(mustPrefix("2001:2::/64")),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		during := snapshot(t)
		for key, want := range map[string]string{
			"ip -d link":          "mtu 1400",
			"ip addr":             "inet 198.18.0.1/24",
			"ip route":            "198.18.1.0/24 dev " + dev,
			"ip -6 route":         "2001:2:0:1::/64 dev " + dev,
			"net.ipv4.ip_forward": "1",
			"nft list ruleset":    "ip saddr 198.18.0.0/24 ip daddr != 198.18.0.0/24 masquerade",
		} {
			if !strings.Contains(during[key], want) {
				t.Errorf("after the changes, %s lacks %q:\n%s", key, want, during[key])
			}
		}
		if !strings.Contains(during["nft list ruleset"], "ip6 saddr 2001:2::/64 ip6 daddr != 2001:2::/64 masquerade") {
			t.Errorf("nft list ruleset lacks the IPv6 masquerade:\n%s", during["nft list ruleset"])
		}
		t.Logf("nft list ruleset while applied:\n%s", during["nft list ruleset"])

		if err := u.Revert(); err != nil {
			t.Fatalf("Revert: %v", err)
		}
		compare(t, before, snapshot(t))
		if err := u.Revert(); err != nil || u.Len() != 0 {
			t.Errorf("second Revert = %v with %d steps; want nil, 0", err, u.Len())
		}
	})
}

func cycleLink(t *testing.T, dev string) {
	t.Helper()
	link, err := netlink.LinkByName(dev)
	if err == nil {
		err = netlink.LinkSetUp(link)
	}
	if err == nil {
		err = netlink.LinkSetDown(link)
	}
	if err != nil {
		t.Fatalf("cycle %s: %v", dev, err)
	}
}

func compare(t *testing.T, before, after map[string]string) {
	t.Helper()
	for key := range before {
		if before[key] != after[key] {
			t.Errorf("%s differs after Revert\nbefore:\n%s\nafter:\n%s", key, before[key], after[key])
		}
	}
}

func TestUndoRecordsOnlyChanges(t *testing.T) {
	inNewNS(t, func() {
		tun := open(t, relay.PointToPoint, relay.AnyUnit)
		link, err := netlink.LinkByName(tun.Name())
		if err != nil || netlink.LinkSetUp(link) != nil {
			t.Fatalf("set %s up: %v", tun.Name(), err)
		}
		u, _ := testUndo(t)
		for _, err := range []error{
			u.LinkUp(tun.Name()),
			u.SetMTU(tun.Name(), 1500),
			u.SetSysctl("net.ipv4.ip_forward", readSysctl(t, "net/ipv4/ip_forward")),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if u.Len() != 0 {
			t.Fatalf("undoLog recorded %d changes for settings already in place; want 0", u.Len())
		}
		if err := u.Revert(); err != nil {
			t.Fatal(err)
		}
		if link, _ = netlink.LinkByName(tun.Name()); link.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("Revert set %s down although it was up before LinkUp", tun.Name())
		}
	})
}

func readSysctl(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestAddAddressInUse(t *testing.T) {
	inNewNS(t, func() {
		tun, u := upTun(t)
		steps := u.Len()
		err := u.AddAddress(tun.Name(), mustPrefix("198.18.0.1/24"), false)
		want := fmt.Sprintf("add 198.18.0.1/24 to %s: address in use (already on %[1]s)", tun.Name())
		if err == nil || err.Error() != want || !errors.Is(err, unix.EEXIST) {
			t.Fatalf("AddAddress twice = %v; want %q wrapping EEXIST", err, want)
		}
		if u.Len() != steps {
			t.Errorf("a failed AddAddress was recorded")
		}
		if err := u.AddRoute(mustPrefix("198.18.0.0/24"), tun.Name()); !errors.Is(err, unix.EEXIST) {
			t.Errorf("AddRoute over the prefix route = %v; want EEXIST", err)
		}
	})
}

// TestRevertAfterDeviceGone is the order a caller may well use: close the
// Tun, which deletes the device and everything on it, then Revert.
func TestRevertAfterDeviceGone(t *testing.T) {
	inNewNS(t, func() {
		tun, u := upTun(t)
		if err := u.AddRoute(mustPrefix("198.18.1.0/24"), tun.Name()); err != nil {
			t.Fatal(err)
		}
		if err := u.SetMTU(tun.Name(), 1400); err != nil {
			t.Fatal(err)
		}
		tun.Close()
		if err := u.Revert(); err != nil {
			t.Fatalf("Revert after the device went away = %v; want nil", err)
		}
	})
}

func TestSysctlNames(t *testing.T) {
	for _, name := range []string{"", "../../etc/passwd", "net/../../x", "/net/ipv4/ip_forward"} {
		if _, err := sysctlPath(name); err == nil {
			t.Errorf("sysctlPath(%q) accepted a name outside /proc/sys", name)
		}
	}
	for name, want := range map[string]string{
		"net.ipv4.ip_forward":               "/proc/sys/net/ipv4/ip_forward",
		"net/ipv4/conf/eth0.100/forwarding": "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
		"net.ipv6.conf.tun0.disable_ipv6":   "/proc/sys/net/ipv6/conf/tun0/disable_ipv6",
	} {
		if got, err := sysctlPath(name); got != want || err != nil {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

// nftApply loads a ruleset with nft(8), as another program would.
func nftApply(t *testing.T, ruleset string) {
	t.Helper()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s\n%s", err, out, ruleset)
	}
}

// foreignTable is an sshvpn table as the run with the given pid left it.
func foreignTable(pid int) string {
	return fmt.Sprintf(`table ip sshvpn {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 198.18.9.0/24 ip daddr != 198.18.9.0/24 masquerade comment "sshvpn pid %d #1: masquerade 198.18.9.0/24"
	}
}
`, pid)
}

func TestMasqueradeDeletesStaleTable(t *testing.T) {
	requireTool(t, "nft")
	inNewNS(t, func() {
		nftApply(t, foreignTable(deadPID(t)))
		u, logs := testUndo(t)
		if err := u.Masquerade(mustPrefix("198.18.0.0/24")); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "deleted stale nftables table") {
			t.Errorf("no log of the stale table's deletion:\n%s", logs)
		}
		ruleset := run(t, "nft", "list", "ruleset")
		if strings.Contains(ruleset, "198.18.9.0") || !strings.Contains(ruleset, "198.18.0.0/24") {
			t.Errorf("stale rules kept or ours missing:\n%s", ruleset)
		}
		if err := u.Revert(); err != nil {
			t.Fatal(err)
		}
		if ruleset := run(t, "nft", "list", "ruleset"); ruleset != "" {
			t.Errorf("ruleset after Revert:\n%s", ruleset)
		}
	})
}

func TestMasqueradeSharesLiveTable(t *testing.T) {
	requireTool(t, "nft")
	requireTool(t, "sleep")
	inNewNS(t, func() {
		other := exec.Command("sleep", "60")
		if err := other.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { other.Process.Kill(); other.Wait() }()
		nftApply(t, foreignTable(other.Process.Pid))

		u, logs := testUndo(t)
		if err := u.Masquerade(mustPrefix("198.18.0.0/24")); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "sharing nftables table") {
			t.Errorf("no log of sharing the table:\n%s", logs)
		}
		if err := u.Revert(); err != nil {
			t.Fatal(err)
		}
		ruleset := run(t, "nft", "list", "ruleset")
		if !strings.Contains(ruleset, "198.18.9.0/24") || strings.Contains(ruleset, "198.18.0.0/24") {
			t.Errorf("Revert must remove only its own rules and keep the live owner's table:\n%s", ruleset)
		}
	})
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

//go:build linux

package tun

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/relay"
)

func TestOpenAnyUnit(t *testing.T) {
	requireTool(t, "ip")
	for _, tc := range []struct {
		mode relay.Mode
		want string // in "ip -d link"
	}{
		{relay.PointToPoint, "tun type tun pi off"},
		{relay.Ethernet, "tun type tap pi off"},
	} {
		inNewNS(t, func() {
			tun, err := Open(Config{Mode: tc.mode, Unit: relay.AnyUnit})
			if err != nil {
				t.Fatalf("Open(%v, any): %v", tc.mode, err)
			}
			prefix := map[relay.Mode]string{relay.PointToPoint: "tun", relay.Ethernet: "tap"}[tc.mode]
			if tun.Name() != prefix+"0" || !tun.Created() || tun.MTU() != 1500 || tun.BatchSize() != 64 {
				t.Errorf("Open(%v, any) = %s created=%v mtu=%d batch=%d; want %s0 created=true mtu=1500 batch=64",
					tc.mode, tun.Name(), tun.Created(), tun.MTU(), tun.BatchSize(), prefix)
			}
			if out := run(t, "ip", "-d", "link", "show", tun.Name()); !strings.Contains(out, tc.want) {
				t.Errorf("ip -d link show %s: want %q in\n%s", tun.Name(), tc.want, out)
			}
			if err := tun.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, err := netlink.LinkByName(tun.Name()); err == nil {
				t.Errorf("%s still exists after Close of a device Open created", tun.Name())
			}
		})
	}
}

func TestOpenExplicitUnitAndMTU(t *testing.T) {
	inNewNS(t, func() {
		tun, err := Open(Config{Mode: relay.Ethernet, Unit: 7, MTU: 9000})
		if err != nil {
			t.Fatalf("Open(tap7, mtu 9000): %v", err)
		}
		defer tun.Close()
		link, err := netlink.LinkByName("tap7")
		if err != nil {
			t.Fatalf("tap7 missing: %v", err)
		}
		if tun.Name() != "tap7" || tun.MTU() != 9000 || link.Attrs().MTU != 9000 {
			t.Errorf("got %s MTU()=%d link mtu %d; want tap7 with 9000", tun.Name(), tun.MTU(), link.Attrs().MTU)
		}
	})
}

func TestOpenBusy(t *testing.T) {
	inNewNS(t, func() {
		first := open(t, relay.PointToPoint, 3)
		_, err := Open(Config{Mode: relay.PointToPoint, Unit: 3})
		want := "open tun3: device or resource busy: another process holds tun3"
		if err == nil || err.Error() != want || !errors.Is(err, unix.EBUSY) {
			t.Fatalf("second Open(tun3) = %v; want %q wrapping EBUSY", err, want)
		}
		// AnyUnit passes over the busy unit.
		open(t, relay.PointToPoint, 0)
		next := open(t, relay.PointToPoint, relay.AnyUnit)
		if next.Name() != "tun1" {
			t.Errorf("Open(any) with tun0 and %s held = %s; want tun1", first.Name(), next.Name())
		}
	})
}

func TestOpenWrongKind(t *testing.T) {
	inNewNS(t, func() {
		addLink(t, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "tun0"}})
		addLink(t, &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "tun1"}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI})
		for unit, want := range map[uint32]string{
			0: "open tun0: invalid argument: tun0 exists as a bridge device, not a tun",
			1: "open tun1: invalid argument: tun1 exists as a tap device, not a tun",
		} {
			_, err := Open(Config{Mode: relay.PointToPoint, Unit: unit})
			if err == nil || err.Error() != want || !errors.Is(err, unix.EINVAL) {
				t.Errorf("Open(tun%d) = %v; want %q wrapping EINVAL", unit, err, want)
			}
		}
		if got := open(t, relay.PointToPoint, relay.AnyUnit).Name(); got != "tun2" {
			t.Errorf("Open(any) past a bridge tun0 and a tap tun1 = %s; want tun2", got)
		}
	})
}

func addLink(t *testing.T, link netlink.Link) {
	t.Helper()
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatalf("add link %s: %v", link.Attrs().Name, err)
	}
}

func TestOpenPersistent(t *testing.T) {
	inNewNS(t, func() {
		addLink(t, &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "tun0"}, Mode: netlink.TUNTAP_MODE_TUN, Flags: netlink.TUNTAP_NO_PI})
		for _, cfg := range []Config{
			{Mode: relay.PointToPoint, Unit: 0},
			{Mode: relay.PointToPoint, Unit: relay.AnyUnit, MTU: 1280},
		} {
			tun, err := Open(cfg)
			if err != nil {
				t.Fatalf("Open(%+v) on persistent tun0: %v", cfg, err)
			}
			if tun.Name() != "tun0" || tun.Created() {
				t.Errorf("Open(%+v) = %s created=%v; want tun0 attached (created=false)", cfg, tun.Name(), tun.Created())
			}
			if cfg.MTU != 0 && tun.MTU() != cfg.MTU {
				t.Errorf("MTU() = %d; want %d", tun.MTU(), cfg.MTU)
			}
			if err := tun.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			link, err := netlink.LinkByName("tun0")
			if err != nil {
				t.Fatalf("Close deleted the persistent tun0: %v", err)
			}
			if link.Attrs().MTU != 1500 {
				t.Errorf("after Close tun0 mtu = %d; want 1500 restored", link.Attrs().MTU)
			}
		}
	})
}

func TestCloseUnblocks(t *testing.T) {
	inNewNS(t, func() {
		tun := open(t, relay.PointToPoint, relay.AnyUnit)
		bufs, sizes := make([][]byte, 1), make([]int, 1)
		bufs[0] = make([]byte, 2000)
		done := make(chan error, 1)
		go func() {
			_, err := tun.Read(bufs, sizes, relay.Headroom)
			done <- err
		}()
		waitParked(t, done)
		if err := tun.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked Read after Close = %v; want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock Read")
		}
		if _, err := tun.Read(bufs, sizes, relay.Headroom); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close = %v; want net.ErrClosed", err)
		}
		if _, err := tun.Write(bufs, relay.Headroom); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close = %v; want net.ErrClosed", err)
		}
		if err := tun.Close(); err != nil {
			t.Errorf("second Close = %v; want nil", err)
		}
	})
}

// waitParked waits until a goroutine is blocked in (*Tun).Read inside Go's
// poller, which the runtime shows as "IO wait" in its stack dump, and fails
// the test if that Read returns first or never parks. A Read that is merely
// running, or stuck in a blocking read(2) ("syscall"), does not count: only a
// parked Read proves that Close or a deadline woke it.
func waitParked(t *testing.T, done <-chan error) {
	t.Helper()
	const fn = "tun.(*Tun).Read("
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("Read returned %v before anything woke it; want it parked", err)
		default:
		}
		for _, g := range strings.Split(allStacks(), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if strings.Contains(header, "[IO wait") && strings.Contains(g, fn) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine parked in %s within 5s; goroutines:\n%s", fn, allStacks())
		}
		time.Sleep(time.Millisecond)
	}
}

// allStacks is runtime.Stack for every goroutine, however long.
func allStacks() string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

// failSyscallConn makes wrap fail, after os.NewFile took the fd, by calling
// hook in place of SyscallConn; the test's cleanup puts SyscallConn back.
func failSyscallConn(t *testing.T, hook func(*os.File)) error {
	t.Helper()
	errInjected := errors.New("injected SyscallConn failure")
	syscallConn = func(f *os.File) (syscall.RawConn, error) {
		hook(f)
		return nil, errInjected
	}
	t.Cleanup(func() { syscallConn = (*os.File).SyscallConn })
	return errInjected
}

// TestOpenWrapFails checks what Open leaves behind when wrap fails after
// os.NewFile: SyscallConn cannot fail on a valid fd, so the test injects the
// failure. The fd is closed once, through the *os.File that owns it (the
// device is released and can be had again), and an MTU Open changed on an
// attached device is put back.
func TestOpenWrapFails(t *testing.T) {
	inNewNS(t, func() {
		addLink(t, &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "tun0"}, Mode: netlink.TUNTAP_MODE_TUN, Flags: netlink.TUNTAP_NO_PI})
		var files []*os.File
		injected := failSyscallConn(t, func(f *os.File) { files = append(files, f) })
		for _, cfg := range []Config{
			{Mode: relay.PointToPoint, Unit: 0, MTU: 1280}, // attach persistent tun0, change its MTU
			{Mode: relay.PointToPoint, Unit: 1},            // create tun1
		} {
			tun, err := Open(cfg)
			if tun != nil || !errors.Is(err, injected) {
				t.Fatalf("Open(%+v) with SyscallConn failing = %v, %v; want nil and the injected error", cfg, tun, err)
			}
		}
		if len(files) != 2 {
			t.Fatalf("SyscallConn called %d times; want 2", len(files))
		}
		for _, f := range files {
			if err := f.Close(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("%s: closing its *os.File after the failed Open = %v; want os.ErrClosed, as wrap closes the fd through that File", f.Name(), err)
			}
		}
		if link, err := netlink.LinkByName("tun0"); err != nil {
			t.Errorf("persistent tun0 gone after a failed Open: %v", err)
		} else if mtu := link.Attrs().MTU; mtu != 1500 {
			t.Errorf("persistent tun0 mtu after a failed Open = %d; want 1500 restored", mtu)
		}
		if _, err := netlink.LinkByName("tun1"); err == nil {
			t.Error("tun1 still exists after a failed Open created it: its fd was not closed")
		}
		syscallConn = (*os.File).SyscallConn
		for _, unit := range []uint32{0, 1} {
			open(t, relay.PointToPoint, unit) // not EBUSY: nothing holds the fd
		}
	})
}

// TestOpenWrapFailsClosesOnce checks that once the *os.File owns the fd, a
// failed Open does not close the fd number again: by then the number may
// belong to another file, here a canary put there the moment the *os.File
// let go of it.
func TestOpenWrapFailsClosesOnce(t *testing.T) {
	inNewNS(t, func() {
		var fd int
		var want unix.Stat_t
		injected := failSyscallConn(t, func(f *os.File) {
			fd = int(f.Fd())
			if err := f.Close(); err != nil {
				t.Errorf("close %s: %v", f.Name(), err)
			}
			canary, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatalf("open canary: %v", err)
			}
			if canary != fd {
				if err := unix.Dup3(canary, fd, unix.O_CLOEXEC); err != nil {
					t.Fatalf("dup canary onto fd %d: %v", fd, err)
				}
				unix.Close(canary)
			}
			if err := unix.Fstat(fd, &want); err != nil {
				t.Fatalf("fstat canary: %v", err)
			}
		})
		if _, err := Open(Config{Mode: relay.PointToPoint, Unit: relay.AnyUnit}); !errors.Is(err, injected) {
			t.Fatalf("Open with SyscallConn failing = %v; want the injected error", err)
		}
		defer unix.Close(fd)
		var got unix.Stat_t
		if err := unix.Fstat(fd, &got); err != nil || got.Dev != want.Dev || got.Ino != want.Ino {
			t.Fatalf("fd %d after the failed Open: fstat %v (dev %d ino %d); want the canary (dev %d ino %d): Open closed an fd it no longer owned",
				fd, err, got.Dev, got.Ino, want.Dev, want.Ino)
		}
	})
}

func TestWriteDropsRefusedPacket(t *testing.T) {
	inNewNS(t, func() {
		tun := upTun(t)
		good := echo4(ip("198.18.0.2"), ip("198.18.0.1"), 8, 1, 1, nil)
		bad := []byte{0x00, 0x01, 0x02, 0x03} // version 0: the kernel refuses it with EINVAL
		bufs := headroom(good, bad, good)
		n, err := tun.Write(bufs, relay.Headroom)
		var drop *relay.DropError
		if n != 1 || !errors.Is(err, relay.ErrDropped) || !errors.As(err, &drop) || drop.Reason != relay.DropWrite || !errors.Is(err, unix.EINVAL) {
			t.Fatalf("Write(good, bad, good) = %d, %v; want 1 and a DropWrite wrapping EINVAL", n, err)
		}
		if n, err := tun.Write(bufs[n+1:], relay.Headroom); n != 1 || err != nil {
			t.Fatalf("Write after a drop = %d, %v; want 1, nil", n, err)
		}
	})
}

// headroom copies packets behind relay.Headroom bytes of headroom.
func headroom(pkts ...[]byte) [][]byte {
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = append(make([]byte, relay.Headroom), p...)
	}
	return bufs
}

func TestOpenBadMode(t *testing.T) {
	_, err := Open(Config{Mode: relay.Mode(9)})
	if err == nil || !strings.Contains(err.Error(), "unknown tunnel mode mode(9)") {
		t.Fatalf("Open(mode 9) = %v; want unknown tunnel mode", err)
	}
}

func ExampleOpen() {
	tun, err := Open(Config{Mode: relay.PointToPoint, Unit: relay.AnyUnit, MTU: 1400})
	if err != nil {
		fmt.Println(err) // e.g. open tun0: operation not permitted: run as root or use --backend netstack
		return
	}
	defer tun.Close()
	fmt.Println(tun.Name(), tun.MTU())
}

// An MTU changed behind the Tun's back, through netlink, is what MTU and
// LinkMTU report once RefreshMTU has read it; a device that is gone is
// named in the error.
func TestRefreshMTU(t *testing.T) {
	requireTool(t, "ip")
	inNewNS(t, func() {
		tun := open(t, relay.PointToPoint, relay.AnyUnit)
		run(t, "ip", "link", "set", tun.Name(), "mtu", "1400")
		if err := tun.RefreshMTU(); err != nil {
			t.Fatal(err)
		}
		if tun.MTU() != 1400 || tun.LinkMTU() != 1400 {
			t.Errorf("after RefreshMTU, MTU %d and LinkMTU %d; want 1400", tun.MTU(), tun.LinkMTU())
		}
		tun.Close()
		if err := tun.RefreshMTU(); err == nil || !strings.Contains(err.Error(), tun.Name()) {
			t.Errorf("RefreshMTU of a device that is gone = %v; want an error naming it", err)
		}
	})
}

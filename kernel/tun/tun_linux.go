//go:build linux

package tun

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/offload"
)

// cloneDevice is the tun driver's clone device: each open file becomes one
// queue of one tun/tap interface after TUNSETIFF.
const cloneDevice = "/dev/net/tun"

// Tun is a kernel tun (relay.PointToPoint: IFF_TUN, IP packets) or tap
// (relay.Ethernet: IFF_TAP, Ethernet frames) device, both without the
// 4-byte packet information header (IFF_NO_PI). It implements relay.Device.
//
// The file descriptor is non-blocking and registered with Go's poller, so a
// Read parks its goroutine instead of an OS thread, and Close wakes it.
type Tun struct {
	file    *os.File
	rc      syscall.RawConn
	name    string
	created bool
	mtu     int
	closed  atomic.Bool
	restore func() error // undoes the MTU change on a device we only attached
	// vnet: the device was opened with IFF_VNET_HDR and offloads, so every
	// packet crosses the fd behind a virtio-net header. whole: Read and
	// Write pass that header to the caller (Config.GSO).
	vnet, whole bool
	link        offload.Link // IP on a tun, Ethernet on a tap

	rmu sync.Mutex // one Read at a time: rd is its state
	rd  readBatch
	wmu sync.Mutex // one Write at a time: wr is its state
	wr  writeBatch
}

var _ relay.Device = (*Tun)(nil)

// tunKind is what distinguishes a tun from a tap.
type tunKind struct {
	prefix string // "tun" or "tap"
	flag   uint16 // IFF_TUN or IFF_TAP
	mode   netlink.TuntapMode
	link   offload.Link // what stands in front of a packet's IP header
}

func kindOf(m relay.Mode) (tunKind, error) {
	switch m {
	case relay.PointToPoint:
		return tunKind{"tun", unix.IFF_TUN, netlink.TUNTAP_MODE_TUN, offload.IP}, nil
	case relay.Ethernet:
		return tunKind{"tap", unix.IFF_TAP, netlink.TUNTAP_MODE_TAP, offload.Ethernet}, nil
	}
	return tunKind{}, fmt.Errorf("open tun: unknown tunnel mode %v", m)
}

func (k tunKind) name(unit uint32) string { return fmt.Sprintf("%s%d", k.prefix, unit) }

// Open attaches to the tun or tap device cfg names, creating it if it does not
// exist. A device Open creates is not persistent: it vanishes when the Tun is
// closed or the process dies. An existing persistent device that no one holds
// is attached as it is (Created reports false) and survives Close.
func Open(cfg Config) (*Tun, error) {
	k, err := kindOf(cfg.Mode)
	if err != nil {
		return nil, err
	}
	fd, err := openClone()
	if err != nil {
		return nil, err
	}
	// Until wrap, Open owns the bare fd and closes it with unix.Close. wrap
	// hands it to an *os.File, which owns it from then on, failure or not: a
	// second close by number here could hit an fd some other goroutine has
	// opened meanwhile under the same number.
	t, err := setup(fd, k, cfg)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if t.vnet && !t.created {
		// A persistent device keeps IFF_VNET_HDR and its offloads when
		// we let go of it, and its next user would get headers it never
		// asked for: attach it again as it was.
		return reattachPlain(fd, t, k, cfg)
	}
	if t.vnet {
		t.vnet = enableOffload(fd, cfg.GSO)
		t.whole = t.vnet && cfg.GSO
		if !t.vnet {
			// IFF_VNET_HDR without offloads only costs a header per
			// packet: attach again without it.
			unix.Close(fd)
			cfg.GSO = false
			return openPlain(k, cfg)
		}
	}
	return t.finish(fd)
}

// reattachPlain lets go of the persistent device t attached with
// IFF_VNET_HDR, undoing its MTU change, and attaches the same unit without.
func reattachPlain(fd int, t *Tun, k tunKind, cfg Config) (*Tun, error) {
	var err error
	if t.restore != nil {
		err = t.restore()
	}
	unix.Close(fd)
	if err != nil {
		return nil, err
	}
	unit, err := strconv.ParseUint(strings.TrimPrefix(t.name, k.prefix), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("open %s: unit of %q: %w", k.prefix, t.name, err)
	}
	cfg.Unit, cfg.GSO = uint32(unit), false
	return openPlain(k, cfg)
}

// openPlain is Open for a device without offloads.
func openPlain(k tunKind, cfg Config) (*Tun, error) {
	fd, err := openClone()
	if err != nil {
		return nil, err
	}
	t, err := setupFlags(fd, k, cfg, false)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return t.finish(fd)
}

// finish hands fd to the poller, or undoes setup.
func (t *Tun) finish(fd int) (*Tun, error) {
	if err := t.wrap(fd); err != nil {
		if t.restore != nil {
			err = errors.Join(err, t.restore())
		}
		return nil, err
	}
	return t, nil
}

// setup binds a clone fd to a device and applies the MTU. It only borrows fd:
// the caller still owns it, and closes it, when setup fails. Tuns and taps
// alike get IFF_VNET_HDR: the splitter and the coalescers read a tap's
// frames as well as a tun's packets.
func setup(fd int, k tunKind, cfg Config) (*Tun, error) {
	return setupFlags(fd, k, cfg, true)
}

func setupFlags(fd int, k tunKind, cfg Config, vnet bool) (*Tun, error) {
	flags := k.flag | unix.IFF_NO_PI
	if vnet {
		flags |= unix.IFF_VNET_HDR
	}
	name, err := attach(fd, k, flags, cfg.Unit)
	if err != nil {
		return nil, err
	}
	created, err := isNew(fd, name)
	if err != nil {
		return nil, err
	}
	mtu, restore, err := applyMTU(name, cfg.MTU, created)
	if err != nil {
		return nil, err
	}
	return &Tun{name: name, created: created, mtu: mtu, restore: restore, vnet: vnet, link: k.link}, nil
}

// syscallConn is (*os.File).SyscallConn, a variable only so that a test can
// make it fail: it fails only on a nil *os.File, which wrap never passes.
var syscallConn = (*os.File).SyscallConn

// wrap hands fd to Go's poller. The fd was opened O_NONBLOCK, which is what
// makes os.NewFile register it. wrap takes ownership of fd whatever happens:
// the *os.File owns it from os.NewFile on, so on failure wrap closes it
// through that File, and the caller must not close fd again.
func (t *Tun) wrap(fd int) error {
	f := os.NewFile(uintptr(fd), t.name)
	if f == nil { // only for a negative fd, which nothing owns
		return fmt.Errorf("open %s: invalid fd %d", t.name, fd)
	}
	rc, err := syscallConn(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("open %s: %w", t.name, err)
	}
	t.file, t.rc = f, rc
	t.rd.init(t.vnet, t.whole)
	t.wr.init(t.link, t.vnet, t.whole)
	return nil
}

func openClone() (int, error) {
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return -1, &AccessError{Op: "open " + cloneDevice, Err: err, Cure: "load the tun module (modprobe tun)"}
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return -1, &AccessError{Op: "open " + cloneDevice, Err: err, Cure: "run as root"}
	}
	return -1, fmt.Errorf("open %s: %w", cloneDevice, err)
}

// attach binds fd to the named unit, or for AnyUnit to the first of
// tun0..tun1023 that can be had. Units held by another process, or taken by a
// device of another kind, are skipped; a free persistent device is taken, as
// OpenSSH's "-w any" does.
func attach(fd int, k tunKind, flags uint16, unit uint32) (string, error) {
	if unit != relay.AnyUnit {
		name := k.name(unit)
		return name, setIff(fd, k, flags, name)
	}
	for u := range uint32(maxUnits) {
		name := k.name(u)
		err := setIff(fd, k, flags, name)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EINVAL) {
			return "", err
		}
	}
	return "", fmt.Errorf("open %s (any unit): no free unit among %s..%s: close unused devices or pick a unit", k.prefix, k.name(0), k.name(maxUnits-1))
}

func setIff(fd int, k tunKind, flags uint16, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return explainSetIff(name, k, err)
	}
	return nil
}

// explainSetIff turns TUNSETIFF's errno into advice.
func explainSetIff(name string, k tunKind, err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return &AccessError{Op: "open " + name, Err: err, Cure: "run as root"}
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("open %s: %w: another process holds %s", name, err, name)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("open %s: %w: %s", name, err, describeExisting(name, k))
	}
	return fmt.Errorf("open %s: %w", name, err)
}

// describeExisting says why the kernel will not give us name as a k device.
func describeExisting(name string, k tunKind) string {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Sprintf("the kernel refused to create %s as a %s device", name, k.prefix)
	}
	if tt, ok := link.(*netlink.Tuntap); ok {
		if tt.Mode != k.mode {
			return fmt.Sprintf("%s exists as a %s device, not a %s", name, other(k), k.prefix)
		}
		return fmt.Sprintf("%s exists as a %s device with incompatible flags (multi-queue?)", name, k.prefix)
	}
	return fmt.Sprintf("%s exists as a %s device, not a %s", name, link.Type(), k.prefix)
}

func other(k tunKind) string {
	if k.prefix == "tun" {
		return "tap"
	}
	return "tun"
}

// isNew reports whether TUNSETIFF created the device. We never set
// IFF_PERSIST, and a device that is not persistent exists only while a file
// holds it, so a persistent device is one that was there before us.
func isNew(fd int, name string) (bool, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return false, fmt.Errorf("open %s: read flags: %w", name, err)
	}
	return ifr.Uint16()&unix.IFF_PERSIST == 0, nil
}

// applyMTU sets the MTU when asked and returns the one in force. On a device
// we only attached it also returns how to put the old MTU back, through a
// netlink handle opened now so Close reaches the right network namespace.
func applyMTU(name string, mtu int, created bool) (int, func() error, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return 0, nil, fmt.Errorf("open %s: look up link: %w", name, err)
	}
	old := link.Attrs().MTU
	if mtu == 0 || mtu == old {
		return old, nil, nil
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return 0, nil, fmt.Errorf("open %s: set mtu %d: %w", name, mtu, err)
	}
	if created {
		return mtu, nil, nil
	}
	return mtu, restoreMTU(name, link.Attrs().Index, old), nil
}

func restoreMTU(name string, index, mtu int) func() error {
	h, err := netlink.NewHandle()
	return func() error {
		if err != nil {
			return fmt.Errorf("restore %s mtu %d: %w", name, mtu, err)
		}
		defer h.Close()
		link, err := h.LinkByIndex(index)
		if err == nil {
			err = h.LinkSetMTU(link, mtu)
		}
		if err != nil {
			return fmt.Errorf("restore %s mtu %d: %w", name, mtu, err)
		}
		return nil
	}
}

// CheckAccess fails when this process cannot open the tun driver's clone
// device, and says what to do: a caller learns it before it accepts work
// that would need a device.
func CheckAccess() error {
	fd, err := openClone()
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// RefreshMTU reads the device's MTU again, after the caller changed it
// through netlink rather than Config.MTU: an undo log that can put back a
// persistent device's MTU after a crash, which Open's own change cannot.
// Call it before handing the Tun on: MTU is read without a lock.
func (t *Tun) RefreshMTU() error {
	link, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("%s: read mtu: %w", t.name, err)
	}
	t.mtu = link.Attrs().MTU
	return nil
}

// Name is the interface name, such as tun0.
func (t *Tun) Name() string { return t.name }

// Created reports whether Open created the device. When false, Open attached
// a persistent device that existed before, and Close leaves it in place.
func (t *Tun) Created() bool { return t.created }

// BatchSize is the most packets one Read or Write handles.
func (t *Tun) BatchSize() int { return BatchSize }

// MTU implements relay.Device: the device MTU, or with GSO the largest
// super-packet (on a tap, behind its Ethernet header: the relay.Device
// MTU of a frame leaves its header out).
func (t *Tun) MTU() int {
	if t.whole {
		return offload.MaxPacket
	}
	return t.mtu
}

// LinkMTU is the device's own MTU, whatever packets Read and Write pass.
func (t *Tun) LinkMTU() int { return t.mtu }

// GSO reports whether Read and Write pass super-packets whole (relay.GSO).
func (t *Tun) GSO() bool { return t.whole }

// Close releases the device, which the kernel deletes if Open created it, and
// wakes blocked Reads and Writes; they and later calls return net.ErrClosed.
// On an attached device it restores an MTU that Open changed.
func (t *Tun) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	err := t.file.Close()
	if err != nil {
		err = fmt.Errorf("close %s: %w", t.name, err)
	}
	if t.restore != nil {
		err = errors.Join(err, t.restore())
	}
	return err
}

//go:build linux

package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// systemd-resolved is asked over the system D-Bus (org.freedesktop.resolve1(5))
// rather than through resolvectl: the bus tells a resolver that is not
// running from one that is (NameHasOwner, which never starts it) and a link
// it does not know yet from a real failure (error names, not resolvectl's
// messages), and needs no program on PATH.
const (
	resolvedName    = "org.freedesktop.resolve1"
	resolvedPath    = "/org/freedesktop/resolve1"
	resolvedManager = "org.freedesktop.resolve1.Manager"
	// errNoSuchLink is resolved's answer for an index it has no link for:
	// one that is gone, or one so new that its netlink news has not
	// reached resolved yet.
	errNoSuchLink = "org.freedesktop.resolve1.NoSuchLink"
)

const (
	// resolvedTimeout bounds one talk with resolved: a hung bus must not
	// hang the tunnel's setup or teardown.
	resolvedTimeout = 10 * time.Second
	// newLinkWait is how long resolved may take to learn of the new device.
	newLinkWait = 3 * time.Second
)

// setLinkDNS gives dev's link the plan's servers and domains in
// systemd-resolved, and Revert takes them back (RevertLink). It returns
// errNoLinkResolver, saying why, when there is no system bus or resolved is
// not on it.
func (u *undoLog) setLinkDNS(dev string, p dnsPlan) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("name servers for %s: %w", dev, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolvedTimeout)
	defer cancel()
	conn, err := resolvedBus(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	index := link.Attrs().Index
	c := change{Op: opDNS, Dev: dev, Index: index}
	err = u.apply(c, func() error { return setLink(ctx, conn, index, p) })
	if err != nil {
		return fmt.Errorf("name servers for %s in systemd-resolved: %w", dev, err)
	}
	u.warnForeign(ctx, conn)
	return nil
}

// resolvedBus connects to the system bus and checks that resolved is on it.
func resolvedBus(ctx context.Context) (*dbus.Conn, error) {
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("%w: no system D-Bus (%w)", errNoLinkResolver, err)
	}
	var running bool
	err = conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, resolvedName).Store(&running)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ask the system D-Bus for systemd-resolved: %w", err)
	}
	if !running {
		conn.Close()
		return nil, fmt.Errorf("%w: systemd-resolved is not running (no %s on the system D-Bus)", errNoLinkResolver, resolvedName)
	}
	if err := checkSameNetNS(ctx, conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// checkSameNetNS makes sure that resolved serves this thread's network
// namespace: links are named by index, and an index here is another link
// to a resolver in another namespace (a client run with ip netns exec on a
// host whose resolved sees only the host's links).
func checkSameNetNS(ctx context.Context, conn *dbus.Conn) error {
	var pid uint32
	err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, resolvedName).Store(&pid)
	var theirs, ours unix.Stat_t
	if err == nil {
		err = unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &theirs)
	}
	if err == nil {
		err = unix.Stat("/proc/thread-self/ns/net", &ours)
	}
	if err != nil {
		return fmt.Errorf("%w: cannot tell which network namespace systemd-resolved serves (%w)", errNoLinkResolver, err)
	}
	if theirs.Dev != ours.Dev || theirs.Ino != ours.Ino {
		return fmt.Errorf("%w: systemd-resolved (pid %d) serves another network namespace", errNoLinkResolver, pid)
	}
	return nil
}

// setLink makes the calls; if one fails after others took, it reverts the
// link again so that nothing is left half set.
func setLink(ctx context.Context, conn *dbus.Conn, index int, p dnsPlan) error {
	obj := conn.Object(resolvedName, resolvedPath)
	call := func(method string, args ...any) error {
		args = append([]any{int32(index)}, args...)
		if err := obj.CallWithContext(ctx, resolvedManager+"."+method, 0, args...).Err; err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		return nil
	}
	// The first call waits for resolved to learn of the link.
	err := retryNoSuchLink(ctx, func() error { return call("SetLinkDNS", p.linkServers()) })
	if err != nil {
		return err
	}
	err = call("SetLinkDomains", p.linkDomains())
	if err == nil {
		err = call("SetLinkDefaultRoute", p.Default)
	}
	if err != nil {
		return errors.Join(err, call("RevertLink"))
	}
	return nil
}

// retryNoSuchLink runs fn until resolved knows the link, for newLinkWait.
func retryNoSuchLink(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(newLinkWait)
	for {
		err := fn()
		if !isDBusError(err, errNoSuchLink) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func isDBusError(err error, name string) bool {
	var de dbus.Error
	return errors.As(err, &de) && de.Name == name
}

// warnForeign says so when resolved holds the servers but /etc/resolv.conf
// is not its stub: programs that read the file, rather than asking through
// nss-resolve, then never see them.
func (u *undoLog) warnForeign(ctx context.Context, conn *dbus.Conn) {
	v, err := conn.Object(resolvedName, resolvedPath).GetProperty(resolvedManager + ".ResolvConfMode")
	if err != nil {
		return // an older resolved: no such property
	}
	if mode, _ := v.Value().(string); mode == "foreign" {
		u.log().Warn("systemd-resolved has the tunnel's name servers, but " + resolvConfPath + " is not its own (mode foreign): " +
			"programs that read the file bypass them unless nss-resolve is in /etc/nsswitch.conf; link it to /run/systemd/resolve/stub-resolv.conf")
	}
}

// revertDNS undoes an opDNS change: the link's settings in resolved, or
// the rewritten resolv.conf.
func (c change) revertDNS(log *slog.Logger) error {
	if c.Path != "" {
		return c.restoreResolvConf(log)
	}
	return c.onOwnLink("revert "+c.String(), func(netlink.Link) error {
		ctx, cancel := context.WithTimeout(context.Background(), resolvedTimeout)
		defer cancel()
		conn, err := resolvedBus(ctx)
		if errors.Is(err, errNoLinkResolver) {
			// What a stopped resolver holds for the link goes with the link.
			log.Info("systemd-resolved is not running: nothing to revert there", "change", c.String(), "why", err)
			return nil
		}
		if err != nil {
			return err
		}
		defer conn.Close()
		err = conn.Object(resolvedName, resolvedPath).CallWithContext(ctx, resolvedManager+".RevertLink", 0, int32(c.Index)).Err
		if err != nil && !isDBusError(err, errNoSuchLink) {
			return fmt.Errorf("RevertLink %d: %w", c.Index, err)
		}
		return nil
	})
}

// writeResolvConf makes /etc/resolv.conf hold content, and Revert put the
// old file back if it still holds content then: who changed it since owns
// it. A regular file is rewritten in place, keeping its inode, owner and
// mode, and a bind mount on it (containers have one); a symlink (to
// resolved's or NetworkManager's file) is replaced by a file and comes
// back as the same symlink, so the program it points to never has its file
// written by sshvpn.
func (u *undoLog) writeResolvConf(dev string, content []byte) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := change{Op: opDNS, Dev: dev, Path: resolvConfPath, Value: string(content)}
	fi, err := os.Lstat(resolvConfPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--dns-global: %s does not exist; sshvpn only replaces one", resolvConfPath)
	case err != nil:
		return fmt.Errorf("--dns-global: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		if c.Link, err = os.Readlink(resolvConfPath); err != nil {
			return fmt.Errorf("--dns-global: %w", err)
		}
	case fi.Mode().IsRegular():
		old, err := os.ReadFile(resolvConfPath)
		if err != nil {
			return fmt.Errorf("--dns-global: %w", err)
		}
		c.Old = string(old)
	default:
		return fmt.Errorf("--dns-global: %s is a %v, not a file sshvpn can rewrite", resolvConfPath, fi.Mode().Type())
	}
	return u.apply(c, func() error {
		if c.Link != "" {
			return replaceWith(resolvConfPath, func(tmp string) error { return os.WriteFile(tmp, content, 0o644) })
		}
		return rewrite(resolvConfPath, content)
	})
}

// restoreResolvConf puts back what writeResolvConf replaced.
func (c change) restoreResolvConf(log *slog.Logger) error {
	if c.Path != resolvConfPath {
		return fmt.Errorf("undo %s: sshvpn only ever rewrites %s", c, resolvConfPath)
	}
	now, err := readNoFollow(c.Path)
	if err != nil || !bytes.Equal(now, []byte(c.Value)) {
		log.Warn(c.Path+" changed by someone else since sshvpn wrote it; not restored", "change", c.String(), "err", err)
		return nil
	}
	if c.Link != "" {
		err = replaceWith(c.Path, func(tmp string) error { return os.Symlink(c.Link, tmp) })
	} else {
		err = rewrite(c.Path, []byte(c.Old))
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", c.Path, err)
	}
	return nil
}

// readNoFollow reads path if it is a regular file, not a symlink.
func readNoFollow(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}

// rewrite replaces the contents of the regular file path in place, with
// one write: readers may see it empty for that moment, a cost the bind
// mounts that forbid a rename make everyone pay.
func rewrite(path string, content []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// replaceWith makes a new directory entry beside path with mk and renames
// it over path, so path is never missing.
func replaceWith(path string, mk func(tmp string) error) error {
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.sshvpn-%x", filepath.Base(path), rand.Uint64()))
	if err := mk(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

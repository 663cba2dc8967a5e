package status

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Who is believed. A socket's mode and its 0700 directory keep other users
// out of a process's socket; these checks keep `sshvpn status` from
// believing a socket another user made: a user without XDG_RUNTIME_DIR
// keeps its sockets under /tmp, where anyone may make that directory
// first and put a server of their own in it.

// checkDir refuses a status directory whose sockets cannot be believed:
// one that group or others may write, or one that belongs to neither this
// process's user nor root. Root reads any user's directory (sshvpn.service
// keeps its sockets in one of its dynamic user's), and then believes that
// user's servers in it (see believed). It returns the directory's owner.
func checkDir(dir string) (owner int, err error) {
	st, err := dirStat(dir)
	if err != nil {
		return -1, err
	}
	if perm := os.FileMode(st.Mode).Perm(); perm&0o022 != 0 {
		return -1, fmt.Errorf("status directory %s is writable by group or others (mode %v): anyone could put a socket there; make it 0700 or give --state-dir a directory of your own", dir, perm)
	}
	owner, euid := int(st.Uid), os.Geteuid()
	if owner != euid && owner != 0 && euid != 0 {
		return -1, fmt.Errorf("status directory %s belongs to %s, not to you (uid %d) or root: its sockets are not your processes'; run sshvpn status as that user or root, or give --state-dir a directory of your own", dir, uidName(owner), euid)
	}
	return owner, nil
}

// dirStat is dir's own stat: a symlink is refused, as a link in a shared
// directory can be turned to another place between a check and its use.
func dirStat(dir string) (*syscall.Stat_t, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("status directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok {
		return nil, fmt.Errorf("status directory %s: not a directory", dir)
	}
	return st, nil
}

// believed reports whether a status server of uid may be believed at
// path: one of this process's user or root; for root also one of the user
// who owns the socket's directory, when that directory passes checkDir.
func believed(uid int, path string) bool {
	euid := os.Geteuid()
	if uid == euid || uid == 0 {
		return true
	}
	if euid != 0 {
		return false
	}
	owner, err := checkDir(filepath.Dir(path))
	return err == nil && owner == uid
}

// errForeignServer is Fetch's error for a server it does not believe.
var errForeignServer = errors.New("not sshvpn's status of your processes")

func foreignServer(path string, uid int) error {
	return fmt.Errorf("status socket %s is served by %s, not by you (uid %d) or root: %w; remove it, or give --state-dir a directory of your own",
		path, uidName(uid), os.Geteuid(), errForeignServer)
}

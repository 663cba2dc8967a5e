package kernel

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14): a 64-bit id the kernel
// never reuses for another network namespace, unlike the namespace's inode.
const soNetnsCookie = 71

// netnsID names the calling thread's network namespace for the journal.
func netnsID() (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		cookie, gerr := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, soNetnsCookie)
		unix.Close(fd)
		if gerr == nil {
			return fmt.Sprintf("cookie:%d", cookie), nil
		}
	}
	fi, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		return "", fmt.Errorf("network namespace: %w", err)
	}
	return fmt.Sprintf("inode:%d", fi.Sys().(*syscall.Stat_t).Ino), nil
}

// netnsInode is the calling thread's network namespace's inode, 0 if
// unknown.
func netnsInode() uint64 {
	fi, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		return 0
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// netnsExists reports whether anything still holds the network namespace
// with inode ino: a process in it, a descriptor of it, or a bind mount
// (ip netns). An inode reused by a newer namespace reads as existing,
// which keeps a journal, the safe way to be wrong.
func netnsExists(ino uint64) bool {
	same := func(path string) bool {
		fi, err := os.Stat(path)
		return err == nil && fi.Sys().(*syscall.Stat_t).Ino == ino
	}
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		names, _ := os.ReadDir(dir)
		for _, n := range names {
			if same(filepath.Join(dir, n.Name())) {
				return true
			}
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return true // cannot tell: keep the journal
	}
	fdLink := fmt.Sprintf("net:[%d]", ino)
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		if same(filepath.Join("/proc", p.Name(), "ns", "net")) {
			return true
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); l == fdLink {
				return true
			}
		}
	}
	return false
}

package kernel

import (
	"fmt"
	"os"
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

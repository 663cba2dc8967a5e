package hostaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlinkSource lists addresses over a netlink socket opened when the
// Watcher starts: it stays in that thread's network namespace, wherever the
// Watcher's goroutine runs later.
type netlinkSource struct {
	h *netlink.Handle
}

func openSource() (source, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open a netlink socket to list addresses: %w", err)
	}
	return &netlinkSource{h: h}, nil
}

func (s *netlinkSource) list() ([]netip.Prefix, bool, error) {
	as, err := s.h.AddrList(nil, netlink.FAMILY_ALL)
	complete := true
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		complete, err = false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("list addresses over netlink: %w", err)
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		if a.IPNet == nil {
			continue
		}
		if p, ok := prefixOf(a.IP, a.Mask); ok {
			out = append(out, p)
		}
	}
	return out, complete, nil
}

func (s *netlinkSource) close() { s.h.Close() }

// subscribe opens a netlink socket in the groups of IPv4 and IPv6 address
// changes (RTM_NEWADDR, RTM_DELADDR). The reports only say that something
// changed: the listing after them says what. So an overflow of the
// socket's queue (ENOBUFS: reports were lost) is one more report, not the
// end of them, as it is for netlink.AddrSubscribe.
func (s *netlinkSource) subscribe() (changes, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open a netlink socket for address changes: %w", err)
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribe to address changes over netlink: %w", err)
	}
	f := os.NewFile(uintptr(fd), "netlink-addr-changes")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("subscribe to address changes over netlink: %w", err)
	}
	return &netlinkChanges{f: f, raw: raw, buf: make([]byte, 512)}, nil
}

// maxDrain bounds the reports one wait takes, so that a host whose
// addresses never stop changing is still listed now and then.
const maxDrain = 4096

// netlinkChanges reads reports. Only their arrival matters, so buf may
// truncate them.
type netlinkChanges struct {
	f    *os.File
	raw  syscall.RawConn
	buf  []byte
	once sync.Once
}

func (c *netlinkChanges) wait() error {
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		news := false
		for range maxDrain {
			// A datagram from another process than the kernel is
			// taken as a report too: it costs a listing, and the
			// listing comes from the kernel.
			_, _, err := unix.Recvfrom(int(fd), c.buf, unix.MSG_DONTWAIT)
			switch {
			case err == unix.EAGAIN:
				return news // nothing queued: wait for readiness, unless news came
			case err == nil, err == unix.ENOBUFS:
				news = true
			default:
				rerr = err
				return true
			}
		}
		return news
	})
	if err != nil {
		return fmt.Errorf("read address changes from netlink: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read address changes from netlink: %w", rerr)
	}
	return nil
}

func (c *netlinkChanges) stop() { c.once.Do(func() { c.f.Close() }) }

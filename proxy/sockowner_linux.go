package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// On loopback every local user shares 127.0.0.1 and ::1, so a UDP source
// address says nothing about who sent the datagram. The kernel's socket
// tables do: /proc/net/{tcp,udp}{,6} list each socket's addresses and its
// owner's uid, readable by any user.

// tcpPeerOwner returns the uid that owns the TCP socket whose own end is
// client and whose far end is server: the client's socket of a loopback
// connection we accepted on server.
func tcpPeerOwner(client, server netip.AddrPort) (uint32, error) {
	var found []uint32
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		err := scanSockets(name, func(local, remote netip.AddrPort, uid uint32) {
			if sameEndpoint(local, client) && sameEndpoint(remote, server) {
				found = append(found, uid)
			}
		})
		if err != nil {
			return 0, err
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("find the TCP socket %v→%v in /proc/net/tcp{,6}: %d matches, want 1", client, server, len(found))
	}
	return found[0], nil
}

// udpSenderOwnedBy returns nil when every UDP socket that can send from
// src (bound to it, or to the wildcard address on its port) belongs to
// uid, and there is at least one. Two owners for one source is possible
// with SO_REUSEADDR, and then no one is trusted.
func udpSenderOwnedBy(src netip.AddrPort, uid uint32) error {
	matches := 0
	for _, name := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		var other []uint32
		err := scanSockets(name, func(local, _ netip.AddrPort, owner uint32) {
			if local.Port() != src.Port() || !local.Addr().Unmap().IsUnspecified() && !sameEndpoint(local, src) {
				return
			}
			matches++
			if owner != uid {
				other = append(other, owner)
			}
		})
		if err != nil {
			return err
		}
		if len(other) > 0 {
			return fmt.Errorf("UDP source %v belongs to uid %d, the control connection to uid %d", src, other[0], uid)
		}
	}
	if matches == 0 {
		return fmt.Errorf("no UDP socket bound to %v in /proc/net/udp{,6}", src)
	}
	return nil
}

// sameEndpoint compares two address:ports, an IPv4-mapped IPv6 address
// equal to its IPv4 form (a dual-stack socket lists itself mapped).
func sameEndpoint(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// scanSockets calls fn with the local and remote address and the owner of
// each socket listed in the /proc/net table name. A missing table (no
// IPv6 in this kernel) lists nothing.
func scanSockets(name string, fn func(local, remote netip.AddrPort, uid uint32)) error {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read socket owners: %w", err)
	}
	defer f.Close()
	if err := parseSocketTable(f, fn); err != nil {
		return fmt.Errorf("read socket owners from %s: %w", name, err)
	}
	return nil
}

// parseSocketTable parses the format of /proc/net/tcp and its kin: a
// heading, then per socket "sl local rem st queues timer retrnsmt uid ...".
func parseSocketTable(r io.Reader, fn func(local, remote netip.AddrPort, uid uint32)) error {
	sc := bufio.NewScanner(r)
	sc.Scan() // the heading
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			return fmt.Errorf("short line %q", sc.Text())
		}
		local, err1 := parseProcAddr(f[1])
		remote, err2 := parseProcAddr(f[2])
		uid, err3 := strconv.ParseUint(f[7], 10, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			return err
		}
		fn(local, remote, uint32(uid))
	}
	return sc.Err()
}

// parseProcAddr parses the kernel's "ADDR:PORT" in hex, where the address
// is printed as 32-bit words in the host's byte order.
func parseProcAddr(s string) (netip.AddrPort, error) {
	hexAddr, hexPort, ok := strings.Cut(s, ":")
	if !ok || len(hexAddr) != 8 && len(hexAddr) != 32 {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	var b [16]byte
	for i := 0; i < len(hexAddr); i += 8 {
		w, err := strconv.ParseUint(hexAddr[i:i+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("bad address in %q", s)
		}
		binary.NativeEndian.PutUint32(b[i/2:], uint32(w))
	}
	a := netip.AddrFrom16(b)
	if len(hexAddr) == 8 {
		a = netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

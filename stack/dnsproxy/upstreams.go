package dnsproxy

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Upstreams reads the nameserver lines of a resolv.conf (resolv.conf(5)) and
// returns each address on port 53, in file order, without duplicates.
// Loopback stubs such as systemd-resolved's 127.0.0.53 are kept: the gateway
// process itself asks them.
//
// Lines it cannot use are skipped and named in the error, so a non-nil error
// with a non-empty list means "usable, but say what was skipped"; an empty
// list always comes with an error.
func Upstreams(resolvConfPath string) ([]netip.AddrPort, error) {
	f, err := os.Open(resolvConfPath)
	if err != nil {
		return nil, fmt.Errorf("read DNS upstreams: %w", err)
	}
	defer f.Close()
	ups, skipped, err := parseResolvConf(bufio.NewScanner(f))
	if err != nil {
		return nil, fmt.Errorf("read DNS upstreams from %s: %w", resolvConfPath, err)
	}
	if len(ups) == 0 {
		skipped = append(skipped, errors.New("no usable nameserver line"))
	}
	if len(skipped) > 0 {
		return ups, fmt.Errorf("read DNS upstreams from %s: %w", resolvConfPath, errors.Join(skipped...))
	}
	return ups, nil
}

// parseResolvConf returns the usable nameservers and one error per skipped
// nameserver line; err is a read error only.
func parseResolvConf(sc *bufio.Scanner) (ups []netip.AddrPort, skipped []error, err error) {
	seen := map[netip.AddrPort]bool{}
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "nameserver" {
			continue // comments, search, options, domain, sortlist
		}
		if len(fields) != 2 {
			skipped = append(skipped, fmt.Errorf("line %d: skipped %q: want one address after nameserver", n, sc.Text()))
			continue
		}
		addr, perr := netip.ParseAddr(fields[1])
		if perr != nil {
			skipped = append(skipped, fmt.Errorf("line %d: skipped nameserver %q: %w", n, fields[1], perr))
			continue
		}
		ap := netip.AddrPortFrom(addr.Unmap(), 53)
		if addr.IsUnspecified() {
			skipped = append(skipped, fmt.Errorf("line %d: skipped nameserver %s: unspecified address", n, addr))
			continue
		}
		if !seen[ap] {
			seen[ap] = true
			ups = append(ups, ap)
		}
	}
	return ups, skipped, sc.Err()
}

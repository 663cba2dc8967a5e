//go:build !linux

package hostaddr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// interfaceSource lists addresses with the standard library; changes are
// found by listing at intervals.
type interfaceSource struct{}

func openSource() (source, error) { return interfaceSource{}, nil }

func (interfaceSource) list() ([]netip.Prefix, bool, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, false, fmt.Errorf("list interface addresses: %w", err)
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if p, ok := prefixOf(n.IP, n.Mask); ok {
				out = append(out, p)
			}
		}
	}
	return out, true, nil
}

func (interfaceSource) subscribe() (changes, error) {
	return nil, fmt.Errorf("address change reports: %w on this system", errors.ErrUnsupported)
}

func (interfaceSource) close() {}

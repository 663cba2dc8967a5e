//go:build !linux

package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
)

// Host changes are Linux-only; elsewhere they fail with errors.ErrUnsupported.

func unsupported(what string) error {
	return fmt.Errorf("%s: %w on this system: use --backend netstack", what, errors.ErrUnsupported)
}

func (u *undoLog) LinkUp(dev string) error { return unsupported("set " + dev + " up") }

func (u *undoLog) SetMTU(dev string, mtu int) error { return unsupported("set " + dev + " mtu") }

func (u *undoLog) AddAddress(dev string, p netip.Prefix, noPrefixRoute bool) error {
	return unsupported("add " + p.String() + " to " + dev)
}

func (u *undoLog) AddRoute(dst netip.Prefix, dev string) error {
	return unsupported("add route " + dst.String() + " dev " + dev)
}

func (u *undoLog) AddRouteVia(dst netip.Prefix, via netip.Addr, dev string) error {
	return unsupported("add route " + dst.String() + " via " + via.String() + " dev " + dev)
}

func (u *undoLog) ReplaceRoute(dst netip.Prefix, dev string) error {
	return unsupported("replace route " + dst.String() + " dev " + dev)
}

func (u *undoLog) AddUnreachable(dst netip.Prefix) error {
	return unsupported("add route unreachable " + dst.String())
}

func (c change) revert(*slog.Logger) error { return unsupported("undo " + c.String()) }

func (u *undoLog) SetSysctl(name, value string) error { return unsupported("sysctl " + name) }

func (u *undoLog) Masquerade(src netip.Prefix) error {
	return unsupported("masquerade " + src.String())
}

// deleteAddress fails: there are no tun/tap devices here.
func deleteAddress(dev string, p netip.Prefix) error { return unsupported("delete address on " + dev) }

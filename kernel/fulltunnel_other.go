//go:build !linux

package kernel

import (
	"net/netip"
	"syscall"
)

// NewBypass fails: there is no policy routing here.
func NewBypass() (Bypass, error) { return Bypass{}, unsupported("full tunnel") }

// Control does nothing: no socket is marked here.
func (b Bypass) Control(network, address string, c syscall.RawConn) error { return nil }

func (l *Local) fullTunnel(routes []routePlan) error { return unsupported("full tunnel") }

func (u *undoLog) AddTableRoute(dst netip.Prefix, via netip.Addr, dev string, table int) error {
	return unsupported("add route " + dst.String() + " dev " + dev)
}

func (u *undoLog) addRule(r rule) error { return unsupported("add " + r.String()) }

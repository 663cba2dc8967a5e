package sshclient

import (
	"fmt"

	"github.com/sshvpn/sshvpn/relay"
)

// TunnelMode reads Tunnel the way ssh does: a tunnel asked for with -w and
// Tunnel unset (or "no") is point-to-point.
func (c *Config) TunnelMode() (relay.Mode, error) {
	switch c.Tunnel {
	case "ethernet":
		return relay.Ethernet, nil
	case "point-to-point", "yes", "no", "":
		return relay.PointToPoint, nil
	}
	return 0, fmt.Errorf("unknown Tunnel %q (want point-to-point or ethernet)", c.Tunnel)
}

// TunnelUnits reads TunnelDevice: the local and remote units, each
// relay.AnyUnit for "any" and when TunnelDevice is unset.
func (c *Config) TunnelUnits() (local, remote uint32, err error) {
	if c.TunnelDevice == "" {
		return relay.AnyUnit, relay.AnyUnit, nil
	}
	l, r, err := ParseTunnelDevice(c.TunnelDevice)
	if err != nil {
		return 0, 0, err
	}
	return uint32(l), uint32(r), nil
}

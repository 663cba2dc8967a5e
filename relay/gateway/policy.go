package gateway

import (
	"fmt"

	"github.com/sshvpn/sshvpn/relay"
)

// PermitTunnel is sshd_config's PermitTunnel: which tunnel modes a gateway
// accepts. It implements flag.Value.
type PermitTunnel string

const (
	PermitYes          PermitTunnel = "yes"
	PermitPointToPoint PermitTunnel = "point-to-point"
	PermitEthernet     PermitTunnel = "ethernet"
	PermitNo           PermitTunnel = "no"
)

func (p *PermitTunnel) String() string { return string(*p) }

// Set implements flag.Value.
func (p *PermitTunnel) Set(s string) error {
	switch PermitTunnel(s) {
	case PermitYes, PermitPointToPoint, PermitEthernet, PermitNo:
		*p = PermitTunnel(s)
		return nil
	}
	return fmt.Errorf("unknown PermitTunnel value %q (want yes, point-to-point, ethernet or no)", s)
}

// Allows reports whether mode m may be opened.
func (p PermitTunnel) Allows(m relay.Mode) bool {
	switch p {
	case PermitYes:
		return m == relay.PointToPoint || m == relay.Ethernet
	case PermitPointToPoint:
		return m == relay.PointToPoint
	case PermitEthernet:
		return m == relay.Ethernet
	}
	return false
}

// checkTunnel decides one tunnel request, with OpenSSH's rules
// (serverloop.c server_request_tun): the gateway's PermitTunnel, then the
// key's restrict and tunnel="N" options. A forced unit replaces "any" and
// refuses any other unit. It returns the unit to open, or an error whose
// text the client shows, saying which setting refused.
func checkTunnel(permit PermitTunnel, mode relay.Mode, unit uint32, key *KeyOptions) (uint32, error) {
	if mode != relay.PointToPoint && mode != relay.Ethernet {
		return 0, fmt.Errorf("tunnel refused: unknown tunnel mode %d", uint32(mode))
	}
	if unit > relay.AnyUnit {
		return 0, fmt.Errorf("tunnel refused: unit %d is out of range", unit)
	}
	if !permit.Allows(mode) {
		return 0, fmt.Errorf("%s tunnel refused: this gateway runs with --permit-tunnel %s", mode, permit)
	}
	if key == nil {
		// Every authenticated connection carries its key's options; a
		// path that lost them must not skip restrict and tunnel=.
		return 0, fmt.Errorf("tunnel refused: the gateway lost this login's authorized_keys options")
	}
	if key.Restrict {
		return 0, fmt.Errorf("tunnel refused: %s has the restrict option", key.Source)
	}
	if key.ForceUnit != nil {
		forced := *key.ForceUnit
		if unit != relay.AnyUnit && unit != forced {
			return 0, fmt.Errorf("tunnel refused: %s forces tunnel=%q but the client asked for unit %d",
				key.Source, unitString(forced), unit)
		}
		unit = forced
	}
	return unit, nil
}

func unitString(u uint32) string {
	if u == relay.AnyUnit {
		return "any"
	}
	return fmt.Sprint(u)
}

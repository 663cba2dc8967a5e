//go:build !linux

package kernel

import "github.com/sshvpn/sshvpn/relay"

// NeedsPremade reports false: there are no tun/tap devices here, and
// CheckAccess says so.
func NeedsPremade() bool { return false }

// FindPremade fails: there are no tun/tap devices here.
func FindPremade(mode relay.Mode, unit uint32) (PremadeDevice, error) {
	return PremadeDevice{}, unsupported("find a premade device")
}

func openPremade(cfg LocalConfig, gw *relay.TunnelConfig) (*Local, error) {
	return nil, unsupported("attach a premade device")
}

func readLinkState(dev string) (deviceState, error) { return deviceState{}, unsupported("read " + dev) }

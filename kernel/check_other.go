//go:build !linux

package kernel

import (
	"errors"
	"net/netip"

	"github.com/sshvpn/sshvpn/kernel/tun"
)

// CheckAccess fails: there are no tun/tap devices here.
func CheckAccess() error { return tun.CheckAccess() }

// AddressOwner fails: there are no interfaces to look at here.
func AddressOwner(a netip.Addr) (string, error) { return "", errors.ErrUnsupported }

// NetworkOverlap fails: there are no interfaces to look at here.
func NetworkOverlap(n netip.Prefix) (string, error) { return "", errors.ErrUnsupported }

// ForwardDrops fails: there is no nftables here.
func ForwardDrops() ([]string, error) { return nil, errors.ErrUnsupported }

func acceptRAInterfaces() []string { return nil }

func deviceNetworks(dev string) []netip.Prefix { return nil }

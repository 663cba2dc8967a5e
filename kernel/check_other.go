//go:build !linux

package kernel

import (
	"errors"
	"net/netip"

	"github.com/sshvpn/sshvpn/kernel/tun"
)

// CheckAccess fails: there are no tun/tap devices here.
func CheckAccess() error { return tun.CheckAccess() }

// addressOwner fails: there are no interfaces to look at here.
func addressOwner(a netip.Addr) (string, error) { return "", errors.ErrUnsupported }

// networkOverlap fails: there are no interfaces to look at here.
func networkOverlap(n netip.Prefix) (string, error) { return "", errors.ErrUnsupported }

// forwardDrops fails: there is no nftables here.
func forwardDrops() ([]string, error) { return nil, errors.ErrUnsupported }

func acceptRAInterfaces() []string { return nil }

func deviceNetworks(dev string) []netip.Prefix { return nil }

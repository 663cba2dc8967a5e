//go:build !linux

package kernel

import (
	"log/slog"
	"net"
	"net/netip"
)

// Bridges and nftables are Linux-only; elsewhere they fail with
// errors.ErrUnsupported.

type bridgeSwap struct {
	Bridge, Dev   string
	Addrs, Routes []struct{}
}

func (*bridgeSwap) revert(*slog.Logger) error { return unsupported("swap a bridge back") }

func bridgeMTU(name string) (int, error) { return 0, unsupported("--bridge " + name) }

func hostAddresses() ([]netip.Addr, error) { return nil, unsupported("list the host's addresses") }

func linkIndex(dev string) (int, error) { return 0, unsupported("look up " + dev) }

func fdbPort(bridge string, _ [6]byte, _ int) (string, error) {
	return "", unsupported("read bridge " + bridge + "'s forwarding database")
}

func (u *undoLog) SetMaster(dev, bridge string) error {
	return unsupported("attach " + dev + " to " + bridge)
}

func (u *undoLog) SwapForBridge(iface, bridge string) error {
	return unsupported("--create-bridge " + iface)
}

func (u *undoLog) AddPortTable(host []netip.Addr) error { return unsupported("port security") }

func (u *undoLog) AddPort(dev string, index int) error { return unsupported("port security on " + dev) }

func portTableName() string { return "" }

func setHostAddrs(string, []netip.Addr) error { return unsupported("port security") }

func lockMAC(int, net.HardwareAddr) error { return unsupported("port security") }

func holdAddr(int, netip.Addr) error { return unsupported("port security") }

func portCounters(int) (map[string]uint64, error) { return nil, unsupported("port security") }

package tun

import "github.com/sshvpn/sshvpn/relay"

// AccessError is a tunnel device this process may not open or configure,
// and what would cure it on this host (run as root, load the tun module).
// The command that asked adds what else it offers ("or use --backend
// netstack"), so the advice fits it.
type AccessError struct {
	Op   string // what failed: "open /dev/net/tun", "open tun3"
	Err  error
	Cure string
}

func (e *AccessError) Error() string { return e.Op + ": " + e.Err.Error() + ": " + e.Cure }
func (e *AccessError) Unwrap() error { return e.Err }

// Config says which tun or tap device Open attaches to.
type Config struct {
	// Mode picks the device kind: relay.PointToPoint opens a tun (IP
	// packets, named tunN), relay.Ethernet a tap (Ethernet frames, tapN).
	Mode relay.Mode

	// Unit is N in tunN/tapN. relay.AnyUnit takes the first unit from 0 up
	// that is free, as OpenSSH does for "-w any".
	Unit uint32

	// MTU, when not zero, is set on the device before Open returns. Zero
	// leaves the device's MTU alone (1500 for a new device).
	MTU int

	// GSO makes Read and Write pass TCP and UDP super-packets whole, each
	// behind its virtio-net header in the headroom (relay.GSO), for a
	// channel to a peer that takes them so. Otherwise the device reads
	// plain packets but still coalesces the TCP segments it is given into
	// super-packets before writing them, one write for up to 64 KiB. A
	// tap does the same with Ethernet frames: a super-frame is one
	// Ethernet header in front of a super-packet.
	GSO bool
}

// BatchSize is the most packets one Tun Read or Write handles.
const BatchSize = 64

// maxUnits bounds the search for a free unit when Config.Unit is AnyUnit.
const maxUnits = 1024

package relay

import "fmt"

// Mode is the tunnel mode of a tun@openssh.com channel, in OpenSSH's
// numbering (SSH_TUNMODE_POINTOPOINT, SSH_TUNMODE_ETHERNET).
type Mode uint32

const (
	PointToPoint Mode = 1 // layer 3: IP packets behind an address family word
	Ethernet     Mode = 2 // layer 2: bare Ethernet frames
)

// AnyUnit is the unit number that lets the receiving side pick a device
// (OpenSSH's SSH_TUNID_ANY).
const AnyUnit uint32 = 0x7fffffff

func (m Mode) String() string {
	switch m {
	case PointToPoint:
		return "point-to-point"
	case Ethernet:
		return "ethernet"
	}
	return fmt.Sprintf("mode(%d)", uint32(m))
}

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

// ClientDeviceLine is the first of the commands a tunnel's Status gives a
// stock client: it sets the shell variable dev, which the commands after
// it use, to the device ssh -w opened on the client's side. The gateway
// cannot name that device: the channel carries only the gateway's unit.
func ClientDeviceLine(m Mode) string {
	kind := "tun"
	if m == Ethernet {
		kind = "tap"
	}
	return fmt.Sprintf("dev=%sN   # the %s ssh opened on your side: -w N:… opens %sN, -w any the first free one (see ip -br link)", kind, kind, kind)
}

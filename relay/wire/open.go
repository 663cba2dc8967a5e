package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/sshvpn/sshvpn/relay"
)

// ChannelType is the SSH channel type OpenSSH uses for tunnels.
const ChannelType = "tun@openssh.com"

// OpenRequest is the type-specific data of a tun@openssh.com channel open
// (PROTOCOL §2.3): the tunnel mode and the unit the opener wants on the
// other side, relay.AnyUnit to let that side pick.
type OpenRequest struct {
	Mode relay.Mode
	Unit uint32
}

// openLen is two uint32s.
const openLen = 8

// Marshal encodes r as channel open data.
func (r OpenRequest) Marshal() []byte {
	b := make([]byte, 0, openLen)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Mode))
	return binary.BigEndian.AppendUint32(b, r.Unit)
}

// ParseOpenRequest decodes channel open data. It takes exactly two uint32s,
// as ssh.Unmarshal would; it does not judge the values, which is policy.
func ParseOpenRequest(data []byte) (OpenRequest, error) {
	if len(data) != openLen {
		return OpenRequest{}, fmt.Errorf("malformed %s open: %d bytes of data, want %d (mode and unit)", ChannelType, len(data), openLen)
	}
	return OpenRequest{
		Mode: relay.Mode(binary.BigEndian.Uint32(data)),
		Unit: binary.BigEndian.Uint32(data[4:]),
	}, nil
}

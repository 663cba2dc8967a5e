package relay

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Opener is a backend: it connects each tunnel the gateway accepts to a
// packet device of its own (a kernel tun/tap, the userspace stack).
type Opener interface {
	// Open sets up one tunnel. Everything it sets up is undone by the
	// Tunnel's Close, and by nothing else; on error it has undone it
	// already.
	Open(ctx context.Context, req TunnelRequest) (Tunnel, error)
}

// TunnelRequest is one tun@openssh.com open that the gateway's policy
// accepted.
type TunnelRequest struct {
	Mode   Mode
	Unit   uint32 // AnyUnit, or the unit the client asked for or its key forces
	User   string // the SSH user name the client logged in with
	Remote net.Addr
	// Local is the gateway's end of the client's SSH connection: the
	// address the client dialled, unless a NAT stands between them.
	Local net.Addr
	// Key is the client key's SHA256 fingerprint: who the client is.
	// Backends key stable addresses and per-key limits on it.
	Key string
	// AllowedIPs are networks the key may send from besides the tunnel's
	// own addresses (a site it routes through itself), as WireGuard's
	// AllowedIPs; none by default.
	AllowedIPs []netip.Prefix
	// KeyRules are the key's own egress rules, checked before the
	// gateway's; KeySource names its authorized_keys line for messages.
	KeyRules  []KeyRule
	KeySource string
	// Framed says the client is sshvpn on a framed stream channel
	// (wire.StreamChannelType), which carries packets of any size up to
	// 64 KiB: a backend whose cost is per packet may pick a larger MTU.
	Framed bool
	// GSO says the client's device passes GSO super-packets whole: a
	// backend that can do the same opens its device so (see GSO).
	GSO bool
}

// KeyRule is one egress rule from a key's authorized_keys line
// (environment="SSHVPN_ALLOW=…" or "SSHVPN_DENY=…"), as written: the
// backend that enforces egress rules parses it, and refuses the tunnel
// when it cannot.
type KeyRule struct {
	Allow bool
	Rule  string
}

// StreamDialer is a backend that also carries direct-tcpip channels
// (ssh -L and ssh -D): it opens the client's TCP connection to Host:Port
// itself, under the same policy as the client's tunnels.
type StreamDialer interface {
	DialStream(ctx context.Context, req StreamRequest) (net.Conn, error)
}

// StreamRequest is one direct-tcpip open that the gateway's policy
// accepted. Host is a name or an address, as the client sent it.
type StreamRequest struct {
	Host string
	Port uint16
	// Client is who asks, as for a tunnel; its Mode and Unit are unset.
	Client TunnelRequest
}

// Tunnel is what a backend provides for one tunnel, all of it together so
// that a backend that forgets a part does not compile: the Device the
// packets go to, what an sshvpn client is told, and what a stock client's
// session shows.
type Tunnel interface {
	Device

	// Config describes the tunnel to an sshvpn client, which then needs no
	// addressing flags.
	Config() TunnelConfig

	// Status is a few lines for a stock client's session: what the tunnel
	// is and the commands to type on the client's side.
	Status() string
}

// PathTuner is a Device whose queueing toward the peer depends on the
// round trip of the SSH path under it: the rootless stack's CoDel, and how
// much a stock peer may hold unconsumed on a tunnel channel. The gateway
// and the client measure the path once the tunnel is up and tell it;
// until then it assumes a long path.
type PathTuner interface {
	SetPathRTT(rtt time.Duration)
}

// TunnelConfig is what the gateway tells an sshvpn client about its tunnel.
// It travels as JSON (package wire): fields may be added, never changed.
type TunnelConfig struct {
	Device    string         `json:"device,omitempty"`    // the gateway's device, for messages
	MTU       int            `json:"mtu,omitempty"`       // the tunnel MTU
	Addresses []netip.Prefix `json:"addresses,omitempty"` // the client's addresses, with their networks
	Gateways  []netip.Addr   `json:"gateways,omitempty"`  // the gateway's addresses on the tunnel
	Routes    []netip.Prefix `json:"routes,omitempty"`    // networks to route through the tunnel
	DNS       []netip.Addr   `json:"dns,omitempty"`       // name servers reachable through it
	// Domains are the DNS domains whose names the DNS servers answer
	// for: a client sends lookups under them through the tunnel (and, with
	// nothing better than resolv.conf, searches them).
	Domains []string `json:"domains,omitempty"`
	// GSO says the gateway's device passes GSO super-packets whole, so
	// a client whose device can too sends them as they are.
	GSO bool `json:"gso,omitempty"`
}

// Reporter is a Tunnel that tells sshvpn status what its backend holds for
// the client. Report is called from another goroutine than the packets',
// at any time while the tunnel is open, and must not block on them.
type Reporter interface {
	Report() TunnelReport
}

// TunnelReport is what a backend holds for one tunnel.
type TunnelReport struct {
	// Claimed are addresses the client took by sending from them, beyond
	// those it was given; Leased those a DHCP server in the backend
	// leased it.
	Claimed []netip.Addr
	Leased  []netip.Addr
	// Flows and Memory are the backend's per-client limits: connections
	// it holds for the client and the memory they buffer; nil where the
	// backend has no such limit.
	Flows  *Usage
	Memory *Usage
}

// Usage is how much of a limit is taken.
type Usage struct {
	Used, Limit int64 // Limit 0: none
	Refused     uint64
}

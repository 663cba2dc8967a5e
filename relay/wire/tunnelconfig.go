package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/crypto/ssh"
)

// TunnelConfigRequest is the channel request an sshvpn gateway sends on a
// tun@openssh.com channel right after accepting it, so that an sshvpn
// client needs no addressing flags. It carries no reply (want-reply false),
// which is why stock OpenSSH clients, which ignore unknown requests of that
// kind, are not disturbed. Its payload is one SSH string holding the JSON
// encoding of TunnelConfig; fields may be added, never changed.
const TunnelConfigRequest = "tunnel-config@sshvpn"

// TunnelConfig is what the gateway tells its client about a tunnel.
type TunnelConfig struct {
	Device    string         `json:"device,omitempty"`    // the gateway's device, for messages
	MTU       int            `json:"mtu,omitempty"`       // the tunnel MTU
	Addresses []netip.Prefix `json:"addresses,omitempty"` // the client's addresses, with their networks
	Gateways  []netip.Addr   `json:"gateways,omitempty"`  // the gateway's addresses on the tunnel
	Routes    []netip.Prefix `json:"routes,omitempty"`    // networks to route through the tunnel
	DNS       []netip.Addr   `json:"dns,omitempty"`       // name servers reachable through it
}

// Configurer is implemented by Devices that can describe the tunnel to an
// sshvpn client.
type Configurer interface {
	TunnelConfig() TunnelConfig
}

// sendTunnelConfig tells the client about its tunnel.
func sendTunnelConfig(ch ssh.Channel, c TunnelConfig) error {
	js, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = ch.SendRequest(TunnelConfigRequest, false, ssh.Marshal(struct{ JSON string }{string(js)}))
	return err
}

// WaitTunnelConfig waits up to timeout for the gateway's TunnelConfig among
// the channel's requests, and answers any other request that wants a reply
// with a failure. It returns nil, nil when none came: a stock sshd sends
// none. The caller must keep draining reqs afterwards.
func WaitTunnelConfig(ctx context.Context, reqs <-chan *ssh.Request, timeout time.Duration) (*TunnelConfig, error) {
	deadline := time.After(timeout)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case r, ok := <-reqs:
			if !ok {
				return nil, nil
			}
			if r.Type != TunnelConfigRequest {
				if r.WantReply {
					r.Reply(false, nil)
				}
				continue
			}
			var p struct{ JSON string }
			if err := ssh.Unmarshal(r.Payload, &p); err != nil {
				return nil, fmt.Errorf("gateway's %s: %w", TunnelConfigRequest, err)
			}
			var c TunnelConfig
			if err := json.Unmarshal([]byte(p.JSON), &c); err != nil {
				return nil, fmt.Errorf("gateway's %s: %w", TunnelConfigRequest, err)
			}
			return &c, nil
		case <-deadline:
			return nil, nil
		}
	}
}

package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sshvpn/sshvpn/relay"
)

// TunnelConfigRequest is the channel request an sshvpn gateway sends on a
// tun@openssh.com channel right after accepting it, so that an sshvpn
// client needs no addressing flags. It wants no reply, and only a peer
// whose version string says sshvpn is sent it: stock OpenSSH never sees it.
// Its payload is one SSH string holding the JSON encoding of
// relay.TunnelConfig.
const TunnelConfigRequest = "tunnel-config@sshvpn"

// maxTunnelConfig bounds the JSON a client accepts: a config is a few
// hundred bytes, and a gateway must not make its client allocate at will.
const maxTunnelConfig = 64 << 10

// MarshalTunnelConfig encodes c as the payload of a TunnelConfigRequest.
func MarshalTunnelConfig(c relay.TunnelConfig) []byte {
	js, err := json.Marshal(c)
	if err != nil {
		// Only netip values and plain types: Marshal cannot fail.
		panic("wire: marshal tunnel config: " + err.Error())
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(js)), uint32(len(js)))
	return append(b, js...)
}

// ParseTunnelConfig decodes the payload of a TunnelConfigRequest.
func ParseTunnelConfig(payload []byte) (relay.TunnelConfig, error) {
	var c relay.TunnelConfig
	js, err := sshString(payload)
	if err == nil && len(js) > maxTunnelConfig {
		err = fmt.Errorf("%d bytes of JSON, more than %d", len(js), maxTunnelConfig)
	}
	if err == nil {
		err = json.Unmarshal(js, &c)
	}
	if err == nil {
		err = checkNames(c)
	}
	if err != nil {
		return relay.TunnelConfig{}, fmt.Errorf("%s from the gateway: %w", TunnelConfigRequest, err)
	}
	return c, nil
}

// sshString reads a payload that is exactly one SSH string (RFC 4251 §5).
func sshString(p []byte) ([]byte, error) {
	if len(p) < 4 {
		return nil, errors.New("payload shorter than a string length")
	}
	n := binary.BigEndian.Uint32(p)
	if uint64(n) != uint64(len(p)-4) {
		return nil, fmt.Errorf("string of %d bytes in a %d-byte payload", n, len(p))
	}
	return p[4:], nil
}

// Limits on what a gateway may ask a client to put in its resolver
// (relay.MaxDNS, relay.MaxDomains).
const (
	MaxDNS     = relay.MaxDNS
	MaxDomains = relay.MaxDomains
)

// CheckDomain is relay.CheckDomain: a DNS domain as a gateway announces it.
func CheckDomain(d string) error { return relay.CheckDomain(d) }

// checkNames refuses name servers and domains the client could not apply
// as they are.
func checkNames(c relay.TunnelConfig) error {
	if len(c.DNS) > MaxDNS {
		return fmt.Errorf("%d name servers, more than %d", len(c.DNS), MaxDNS)
	}
	for _, a := range c.DNS {
		if !a.IsValid() || a.IsUnspecified() || a.Zone() != "" {
			// A zone names one of the gateway's interfaces, not the client's.
			return fmt.Errorf("name server %q: want a unicast address without a zone", a)
		}
	}
	if len(c.Domains) > MaxDomains {
		return fmt.Errorf("%d DNS domains, more than %d", len(c.Domains), MaxDomains)
	}
	for _, d := range c.Domains {
		if err := CheckDomain(d); err != nil {
			return err
		}
	}
	return nil
}

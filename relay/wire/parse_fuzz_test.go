package wire

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"

	"github.com/sshvpn/sshvpn/relay"
)

// What a peer sends in a channel open and a tunnel-config request is parsed
// without panicking, and what parses encodes back to the same bytes.
func FuzzParseOpenRequest(f *testing.F) {
	f.Add(OpenRequest{Mode: relay.PointToPoint, Unit: relay.AnyUnit}.Marshal())
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0, 7, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseOpenRequest(data)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Marshal(), data) {
			t.Fatalf("%x parsed as %+v, which marshals as %x", data, r, r.Marshal())
		}
	})
}

func FuzzParseTunnelConfig(f *testing.F) {
	f.Add(MarshalTunnelConfig(relay.TunnelConfig{Device: "tun0", MTU: 1500,
		Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.3.2/24"), netip.MustParsePrefix("2001:2:3::2/64")},
		Gateways:  []netip.Addr{netip.MustParseAddr("198.18.3.1")}}))
	f.Add(MarshalTunnelConfig(relay.TunnelConfig{DNS: []netip.Addr{netip.MustParseAddr("198.18.3.1")},
		Domains: []string{"corp.example", "3.18.198.in-addr.arpa"}}))
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0, 0, 0, 9, '{', '}'})
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := ParseTunnelConfig(payload)
		if err != nil {
			return
		}
		again, err := ParseTunnelConfig(MarshalTunnelConfig(c))
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("%+v does not survive a round trip: %+v, %v", c, again, err)
		}
	})
}

func TestParseErrors(t *testing.T) {
	for _, data := range [][]byte{nil, {0, 0, 0, 1}, make([]byte, 9)} {
		if _, err := ParseOpenRequest(data); err == nil {
			t.Errorf("ParseOpenRequest(%x) accepted", data)
		}
	}
	for _, p := range [][]byte{nil, {0, 0}, {0, 0, 0, 5, '{', '}'}, {0, 0, 0, 2, '[', ']'}} {
		if _, err := ParseTunnelConfig(p); err == nil {
			t.Errorf("ParseTunnelConfig(%x) accepted", p)
		}
	}
}

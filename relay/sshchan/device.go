package sshchan

import (
	"log/slog"
	"net/netip"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
)

// DeviceConfig is one side of a tunnel channel, gateway or client.
type DeviceConfig struct {
	// Framed: ch is the framed channel (wire.StreamChannelType) toward an
	// sshvpn peer; otherwise tun@openssh.com.
	Framed bool
	Mode   relay.Mode
	MTU    int  // tun@openssh.com: the largest packet or frame payload
	GSO    bool // framed: the local device passes GSO super-packets whole
	// PeerVersion is the other side's SSH version string.
	PeerVersion []byte
	// In counts packets dropped on the way in; nil to not count them.
	In  *relay.Counters
	Log *slog.Logger
	// Local and Routed: tun@openssh.com, see Config.
	Local, Routed []netip.Prefix
	// Tuners are told the path's round trip once it is measured, besides
	// the channel itself (the local backend, say).
	Tuners []relay.PathTuner
}

// NewDevice makes ch, a tunnel channel of conn, this side's relay.Device,
// and sizes it to the path beside the tunnel rather than before it: the
// framed channel's window (SizeWindow), a stock peer's in-flight cap
// (TunePath). Gateway and client use it alike. The caller keeps draining
// ch's requests.
func NewDevice(conn ssh.Conn, ch ssh.Channel, cfg DeviceConfig) (relay.Device, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Framed {
		go func() {
			if rtt := SizeWindow(conn, ch, cfg.Log); rtt > 0 {
				for _, t := range cfg.Tuners {
					t.SetPathRTT(rtt)
				}
			}
		}()
		return NewFramed(ch, FramedConfig{Mode: cfg.Mode, GSO: cfg.GSO, In: cfg.In}), nil
	}
	c, err := New(ch, Config{Mode: cfg.Mode, MTU: cfg.MTU, PeerVersion: cfg.PeerVersion, In: cfg.In, Log: cfg.Log,
		Local: cfg.Local, Routed: cfg.Routed})
	if err != nil {
		return nil, err
	}
	go TunePath(conn, append([]relay.PathTuner{c}, cfg.Tuners...)...)
	return c, nil
}

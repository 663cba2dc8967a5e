// Package status is what a running sshvpn says about itself: one Report,
// taken at the moment it is asked for, that `sshvpn status` prints and the
// metrics endpoint renders. The process serves it on a unix socket only
// its owner may open; nothing here knows SSH or a backend.
package status

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// Schema is the version of Report's JSON form. It goes up when a field
// changes meaning or goes away; added fields keep it.
const Schema = 1

// Report is one process's state. Exactly one of Gateway and Client is set.
type Report struct {
	Schema  int       `json:"schema"`
	Role    string    `json:"role"` // "gateway" or "client"
	PID     int       `json:"pid"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Gateway *Gateway  `json:"gateway,omitempty"`
	Client  *Client   `json:"client,omitempty"`
}

// Gateway is `sshvpn serve`'s state.
type Gateway struct {
	Listen  string `json:"listen"`
	HostKey string `json:"host_key"` // SHA256 fingerprint
	Backend string `json:"backend"`  // "netstack" or "kernel"
	// Handshaking is connections not yet logged in.
	Handshaking int          `json:"handshaking"`
	Connections []Connection `json:"connections"`
	// Totals are every tunnel's traffic since the gateway started, the
	// departed ones' included: what counters are made of.
	Totals Traffic `json:"totals"`
	// Refused counts what the limits refused, by limit
	// ("connections_per_key", "forwards_per_connection", ...).
	Refused map[string]uint64 `json:"refused,omitempty"`
	// AuthFailures counts refused logins by reason ("unknown_key",
	// "from", "expired", "handshake", ...).
	AuthFailures map[string]uint64 `json:"auth_failures,omitempty"`
	DNS          *DNS              `json:"dns,omitempty"` // netstack's resolver
}

// Connection is one logged-in SSH connection and what it holds.
type Connection struct {
	User        string    `json:"user"`
	Key         string    `json:"key"`                   // SHA256 fingerprint
	KeyComment  string    `json:"key_comment,omitempty"` // authorized_keys comment
	Remote      string    `json:"remote"`                // address:port
	PeerVersion string    `json:"peer_version"`          // SSH-2.0-OpenSSH_9.2p1 ...
	Since       time.Time `json:"since"`
	// RTT is the last keepalive's round trip; 0 before the first.
	RTT      Duration `json:"rtt"`
	Forwards Usage    `json:"forwards"` // direct-tcpip channels (ssh -L, -D)
	Tunnels  []Tunnel `json:"tunnels"`
}

// Tunnel is one tunnel of a connection, on the gateway or the client.
type Tunnel struct {
	Channel string `json:"channel"` // tun@openssh.com or tun-stream@sshvpn
	Mode    string `json:"mode"`    // point-to-point or ethernet
	Backend string `json:"backend"` // netstack or kernel
	Device  string `json:"device"`  // the device or stack that carries it
	// Addresses are the peer's addresses the tunnel was given; Claimed
	// are those it took by sending from them (kernel), Leased those a DHCP
	// server in the stack leased it (ethernet).
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	Claimed   []netip.Addr   `json:"claimed,omitempty"`
	Leased    []netip.Addr   `json:"leased,omitempty"`
	Since     time.Time      `json:"since"`
	// LastReceived is when the last packet came from the peer; zero
	// before the first.
	LastReceived time.Time `json:"last_received"`
	// In is what came from the peer, Out what went to it.
	In  Counters `json:"in"`
	Out Counters `json:"out"`
	// Flows and Memory are the per-client limits of a netstack tunnel:
	// connections the stack holds for it and the memory they buffer.
	Flows  *Usage `json:"flows,omitempty"`
	Memory *Usage `json:"memory,omitempty"`
}

// Traffic is both directions.
type Traffic struct {
	In  Counters `json:"in"`
	Out Counters `json:"out"`
}

// Counters count one direction of traffic.
type Counters struct {
	Packets uint64            `json:"packets"`
	Bytes   uint64            `json:"bytes"`
	Drops   map[string]uint64 `json:"drops,omitempty"` // by reason
}

// Usage is how much of a limit is taken.
type Usage struct {
	Used  int64 `json:"used"`
	Limit int64 `json:"limit"` // 0: none
	// Refused counts what the limit refused.
	Refused uint64 `json:"refused,omitempty"`
}

// DNS is the resolver's counters.
type DNS struct {
	Queries          uint64 `json:"queries"`
	CacheHits        uint64 `json:"cache_hits"`
	CacheEntries     uint64 `json:"cache_entries"`
	CacheBytes       uint64 `json:"cache_bytes"`
	Refused          uint64 `json:"refused"`
	Malformed        uint64 `json:"malformed"`
	Dropped          uint64 `json:"dropped"`
	UpstreamFailures uint64 `json:"upstream_failures"`
}

// Client is `sshvpn connect`'s state.
type Client struct {
	// State is "connecting", "up" or "reconnecting".
	State  string `json:"state"`
	Server string `json:"server"` // user@host:port as dialled
	// LastError is why the last connection ended or the last dial failed;
	// NextTry is when the next dial is due, while reconnecting.
	LastError   string    `json:"last_error,omitempty"`
	NextTry     time.Time `json:"next_try,omitzero"`
	Since       time.Time `json:"since,omitzero"` // the current connection's start
	Reconnects  uint64    `json:"reconnects"`
	PeerVersion string    `json:"peer_version,omitempty"`
	RTT         Duration  `json:"rtt"`
	// Tunnel is the tunnel, while one is up.
	Tunnel *Tunnel        `json:"tunnel,omitempty"`
	Routes []netip.Prefix `json:"routes,omitempty"`
	DNS    []netip.Addr   `json:"dns,omitempty"`
	// Totals are the tunnel's traffic over every connection.
	Totals Traffic `json:"totals"`
	// Proxies are the listening proxies (-D, --http-proxy, -L).
	Proxies []Proxy `json:"proxies,omitempty"`
}

// Proxy is one listening proxy of a rootless client.
type Proxy struct {
	Kind   string `json:"kind"` // "socks", "http", "forward"
	Listen string `json:"listen"`
	Target string `json:"target,omitempty"` // -L's host:port
	Conns  Usage  `json:"conns"`
}

// Duration is a time.Duration that reads and writes as seconds in JSON,
// as a float: 0.0123.
type Duration time.Duration

// MarshalJSON writes seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(d).Seconds(), 'f', -1, 64), nil
}

// UnmarshalJSON reads seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("duration %s: want seconds", b)
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

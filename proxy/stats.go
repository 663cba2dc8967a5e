package proxy

import "sync/atomic"

// UDPDrop says why a UDP ASSOCIATE datagram was not relayed.
type UDPDrop int

const (
	UDPDropMalformed  UDPDrop = iota // header cannot be parsed
	UDPDropFragment                  // FRAG≠0: fragmentation is optional and not done
	UDPDropForeign                   // not from the control connection's client
	UDPDropResolve                   // a destination name did not resolve at the far end
	UDPDropWrite                     // the far or the local socket refused it
	UDPDropNoClient                  // a reply came before the client sent anything
	UDPDropUnverified                // on loopback: the sending socket's owner is not the control connection's, or could not be read
	numUDPDrops
)

var udpDropNames = [numUDPDrops]string{"malformed", "fragment", "foreign", "resolve", "write", "no-client", "unverified"}

func (d UDPDrop) String() string {
	if d < 0 || d >= numUDPDrops {
		return "unknown"
	}
	return udpDropNames[d]
}

// Stats counts what one Server or Forward did. The zero value is ready;
// every method is safe for concurrent use. "Out" is client to far end,
// "In" far end to client.
type Stats struct {
	accepted, refused, authFailures atomic.Uint64
	handshakeEvicted, udpRefused    atomic.Uint64
	active                          atomic.Int64
	dialFailures                    [numReasons]atomic.Uint64
	bytesOut, bytesIn               atomic.Uint64
	udpOut, udpIn                   atomic.Uint64
	udpDrops                        [numUDPDrops]atomic.Uint64
}

// StatsSnapshot is a point-in-time copy of Stats.
type StatsSnapshot struct {
	Accepted uint64 // connections accepted, including refused ones
	Active   int64  // connections being served now
	Refused  uint64 // connections refused at MaxConns
	// HandshakeEvicted counts connections closed while still in their
	// handshake to make room for a newer one.
	HandshakeEvicted uint64
	AuthFailures     uint64            // wrong or missing credentials, and SOCKS4 when a password is required
	DialFailures     map[string]uint64 // by Reason.String(), only reasons seen
	BytesOut         uint64            // stream bytes client to far end
	BytesIn          uint64            // stream bytes far end to client
	UDPOut           uint64            // datagrams client to far end
	UDPIn            uint64            // datagrams far end to client
	UDPRefused       uint64            // UDP ASSOCIATEs refused at the listener's association limit
	UDPDropped       map[string]uint64 // by UDPDrop.String(), only reasons seen
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	snap := StatsSnapshot{
		Accepted: s.accepted.Load(), Active: s.active.Load(), Refused: s.refused.Load(),
		AuthFailures: s.authFailures.Load(), BytesOut: s.bytesOut.Load(), BytesIn: s.bytesIn.Load(),
		UDPOut: s.udpOut.Load(), UDPIn: s.udpIn.Load(),
		HandshakeEvicted: s.handshakeEvicted.Load(), UDPRefused: s.udpRefused.Load(),
	}
	for r := range numReasons {
		if v := s.dialFailures[r].Load(); v > 0 {
			if snap.DialFailures == nil {
				snap.DialFailures = map[string]uint64{}
			}
			snap.DialFailures[r.String()] = v
		}
	}
	for d := range numUDPDrops {
		if v := s.udpDrops[d].Load(); v > 0 {
			if snap.UDPDropped == nil {
				snap.UDPDropped = map[string]uint64{}
			}
			snap.UDPDropped[d.String()] = v
		}
	}
	return snap
}

func (s *Stats) dropUDP(d UDPDrop) { s.udpDrops[d].Add(1) }

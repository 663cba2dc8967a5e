package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Server answers the DHCPv4 client on one segment. Its methods are safe for
// concurrent use.
type Server struct {
	cfg   Config
	opts  options
	log   *slog.Logger
	stats Stats

	mu     sync.Mutex
	lease  lease
	logged [numLogKinds]time.Time // when each kind last went out at its own level
	held   [numLogKinds]uint64    // and how many went to Debug since
}

// Stats counts what a Server did with the messages it was handed.
type Stats struct {
	Offers    atomic.Uint64 // OFFERs, one per DISCOVER
	Acks      atomic.Uint64 // leases given: ACKs to REQUEST
	Naks      atomic.Uint64 // REQUESTs for an address that is not the lease
	Releases  atomic.Uint64 // RELEASEs of the lease
	Declines  atomic.Uint64 // DECLINEs of the lease: its address in use on the client's side
	Informs   atomic.Uint64 // ACKs to INFORM
	Malformed atomic.Uint64 // did not parse: Handle returned an error
	Ignored   atomic.Uint64 // parsed, but not ours to answer (see Handle)
}

// New checks cfg and returns a Server for it.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.check()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, opts: newOptions(cfg), log: cfg.Log}
	if n := s.sizeOfLargestReply(); n > maxPayload {
		return nil, fmt.Errorf("dhcpd: the options take %d bytes, over the %d every client accepts: fewer DNS servers, search domains or routes", n, maxPayload)
	}
	return s, nil
}

// Stats returns the server's counters, live.
func (s *Server) Stats() *Stats { return &s.stats }

// ErrMalformed is what Handle's errors wrap when the message is no DHCPv4
// request it can read.
var ErrMalformed = errors.New("malformed DHCPv4 message")

// Handle takes one message the client sent to port 67 (the UDP payload) and
// returns the reply, with ok false when none is due. It never panics on
// malformed input: it returns an error wrapping ErrMalformed. now is the
// clock, for the lease's expiry.
//
// Messages that are not ours to answer are counted as Ignored, without
// error: replies (op BOOTREPLY), BOOTP requests (no message type), messages
// relayed to us (giaddr set: a segment has one client and no relay, and a
// Reply cannot address a relay's port 67), requests for another server, and
// a REQUEST that names no address (no server id, option 50 or ciaddr), and
// RELEASE, DECLINE or INFORM about an address that is not the lease.
func (s *Server) Handle(msg []byte, now time.Time) (r Reply, ok bool, err error) {
	req, err := dhcpv4.FromBytes(msg)
	if err != nil {
		s.stats.Malformed.Add(1)
		return Reply{}, false, fmt.Errorf("dhcpd: %w: %w", ErrMalformed, err)
	}
	m, err := parse(req)
	if err != nil {
		s.stats.Malformed.Add(1)
		return Reply{}, false, fmt.Errorf("dhcpd: %w: %w", ErrMalformed, err)
	}
	if why := notOurs(m); why != "" {
		return s.ignore(m, why)
	}
	switch m.typ {
	case dhcpv4.MessageTypeDiscover:
		return s.discover(m)
	case dhcpv4.MessageTypeRequest:
		return s.request(m, now)
	case dhcpv4.MessageTypeRelease:
		return s.release(m, now)
	case dhcpv4.MessageTypeDecline:
		return s.decline(m, now)
	case dhcpv4.MessageTypeInform:
		return s.inform(m)
	}
	return s.ignore(m, "not a client's message type")
}

// ignore counts m as ignored and says why at debug level.
func (s *Server) ignore(m *message, why string) (Reply, bool, error) {
	s.stats.Ignored.Add(1)
	s.log.Debug("dhcp message ignored", "type", m.typ.String(), "mac", m.chaddr().String(), "why", why)
	return Reply{}, false, nil
}

// logKind is a kind of log line a client's messages cause.
type logKind int

const (
	logLease logKind = iota
	logNak
	logRelease
	logDecline
	numLogKinds
)

// clientLogEvery is how often each logKind goes out at its own level: a
// client controls how often they happen (a new chaddr in every REQUEST, a
// RELEASE and REQUEST in a loop), so the rest go to Debug, and the next
// one that goes out says how many were held back.
const clientLogEvery = time.Minute

// clientLog logs what a client's message caused, at level at most once per
// clientLogEvery for each kind (by now, the clock Handle is given), at
// Debug otherwise.
func (s *Server) clientLog(kind logKind, now time.Time, level slog.Level, msg string, attrs ...slog.Attr) {
	s.mu.Lock()
	last := s.logged[kind]
	if !last.IsZero() && now.Sub(last) < clientLogEvery && now.Sub(last) >= 0 {
		s.held[kind]++
		level = slog.LevelDebug
	} else {
		s.logged[kind] = now
		if h := s.held[kind]; h > 0 {
			attrs = append(attrs, slog.Uint64("held_back", h))
			s.held[kind] = 0
		}
	}
	s.mu.Unlock()
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// message is a parsed request with the options Handle reads checked.
type message struct {
	*dhcpv4.DHCPv4
	typ       dhcpv4.MessageType
	ciaddr    netip.Addr // the zero Addr when 0.0.0.0
	requested netip.Addr // option 50, or the zero Addr
	serverID  netip.Addr // option 54, or the zero Addr
}

// parse checks the fields Handle relies on: a message type of one byte, and
// options 50 and 54, when present, of one IPv4 address each.
func parse(req *dhcpv4.DHCPv4) (*message, error) {
	m := &message{DHCPv4: req}
	if t, ok := req.Options[dhcpv4.OptionDHCPMessageType.Code()]; ok {
		if len(t) != 1 || t[0] == 0 {
			return nil, fmt.Errorf("option 53 (message type) is %d bytes of %x, want 1 byte from 1", len(t), t)
		}
		m.typ = dhcpv4.MessageType(t[0])
	}
	var err error
	if m.requested, err = optionAddr(req, dhcpv4.OptionRequestedIPAddress); err != nil {
		return nil, err
	}
	if m.serverID, err = optionAddr(req, dhcpv4.OptionServerIdentifier); err != nil {
		return nil, err
	}
	m.ciaddr = fieldAddr(req.ClientIPAddr)
	return m, nil
}

// notOurs says why m is not for this server to answer, or "".
func notOurs(m *message) string {
	switch {
	case m.OpCode != dhcpv4.OpcodeBootRequest:
		return "not a BOOTREQUEST"
	case m.typ == dhcpv4.MessageTypeNone:
		return "BOOTP, not DHCP: no message type"
	case fieldAddr(m.GatewayIPAddr).IsValid():
		return "relayed (giaddr set): a segment has no relay"
	}
	return ""
}

// optionAddr returns the IPv4 address option code holds, the zero Addr when
// it is absent, or an error when it is not 4 bytes.
func optionAddr(req *dhcpv4.DHCPv4, code dhcpv4.OptionCode) (netip.Addr, error) {
	v, ok := req.Options[code.Code()]
	if !ok {
		return netip.Addr{}, nil
	}
	a, ok := netip.AddrFromSlice(v)
	if !ok || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("option %d (%s) is %d bytes, want 4", code.Code(), code, len(v))
	}
	return a, nil
}

// fieldAddr returns a header address field (ciaddr, giaddr) as an Addr, the
// zero Addr for 0.0.0.0. dhcpv4 always reads these fields as 4 bytes.
func fieldAddr(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || a.Unmap().IsUnspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

// chaddr returns the client's hardware address as the message gives it.
func (m *message) chaddr() net.HardwareAddr { return m.ClientHWAddr }

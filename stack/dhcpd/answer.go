package dhcpd

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// discover offers the lease, whatever address the client asks for (option
// 50): the segment has one address to give (RFC 2131 4.3.1).
func (s *Server) discover(m *message) (Reply, bool, error) {
	s.stats.Offers.Add(1)
	return s.grant(m, dhcpv4.MessageTypeOffer), true, nil
}

// request answers a REQUEST in each of the client's states, told apart as
// RFC 2131 4.3.2 does:
//
//   - SELECTING carries our server id: ACK when the requested address is
//     the lease. Some clients also renew with a server id and ciaddr and no
//     option 50; ciaddr then stands for the requested address.
//   - A server id that is not ours: the client chose another server, whose
//     answer it awaits; we stay silent.
//   - RENEWING and REBINDING set ciaddr: ACK when it is the lease, else NAK.
//   - INIT-REBOOT carries option 50 alone: ACK when it is the lease, else
//     NAK (the client remembers an address from elsewhere).
func (s *Server) request(m *message, now time.Time) (Reply, bool, error) {
	var addr netip.Addr
	switch {
	case m.serverID.IsValid() && m.serverID != s.cfg.ServerID:
		return s.ignore(m, "the client chose server "+m.serverID.String())
	case m.serverID.IsValid() && m.requested.IsValid():
		addr = m.requested
	case m.ciaddr.IsValid():
		addr = m.ciaddr
	case m.requested.IsValid():
		addr = m.requested
	default:
		return s.ignore(m, "REQUEST without a server id, requested address or ciaddr")
	}
	if addr != s.cfg.Lease.Addr() {
		s.stats.Naks.Add(1)
		s.clientLog(logNak, now, slog.LevelInfo, "dhcp nak", slog.String("requested", addr.String()),
			slog.String("addr", s.cfg.Lease.Addr().String()), slog.String("mac", m.chaddr().String()))
		return s.nak(m), true, nil
	}
	s.stats.Acks.Add(1)
	s.bind(m, now)
	return s.grant(m, dhcpv4.MessageTypeAck), true, nil
}

// release frees the lease when the client gives it back (RFC 2131 4.4.6);
// no answer is due.
func (s *Server) release(m *message, now time.Time) (Reply, bool, error) {
	if m.serverID.IsValid() && m.serverID != s.cfg.ServerID {
		return s.ignore(m, "RELEASE for server "+m.serverID.String())
	}
	if m.ciaddr != s.cfg.Lease.Addr() {
		return s.ignore(m, "RELEASE of "+m.ciaddr.String()+", not the lease")
	}
	s.stats.Releases.Add(1)
	s.free()
	s.clientLog(logRelease, now, slog.LevelInfo, "dhcp release",
		slog.String("addr", s.cfg.Lease.Addr().String()), slog.String("mac", m.chaddr().String()))
	return Reply{}, false, nil
}

// decline logs a client that found its leased address in use (RFC 2131
// 4.4.1, by ARP) as a warning: on a segment of its own, something on the
// client's side answers for the address, which the gateway cannot fix. The
// lease is the only address there is, so the next DISCOVER gets it again.
func (s *Server) decline(m *message, now time.Time) (Reply, bool, error) {
	if m.serverID.IsValid() && m.serverID != s.cfg.ServerID {
		return s.ignore(m, "DECLINE for server "+m.serverID.String())
	}
	if m.requested != s.cfg.Lease.Addr() {
		return s.ignore(m, "DECLINE of "+m.requested.String()+", not the lease")
	}
	s.stats.Declines.Add(1)
	s.free()
	s.clientLog(logDecline, now, slog.LevelWarn, "dhcp decline: the client finds its address in use on its side of the tunnel",
		slog.String("addr", s.cfg.Lease.Addr().String()), slog.String("mac", m.chaddr().String()))
	return Reply{}, false, nil
}

// inform answers a client that configured the lease itself and asks for
// the other parameters (RFC 2131 4.3.5): an ACK without lease times or
// yiaddr, to ciaddr. An address other than the lease is not the client's
// on this segment, so it gets no answer.
func (s *Server) inform(m *message) (Reply, bool, error) {
	if m.ciaddr != s.cfg.Lease.Addr() {
		return s.ignore(m, "INFORM from "+m.ciaddr.String()+", not the lease")
	}
	s.stats.Informs.Add(1)
	return s.informAck(m), true, nil
}

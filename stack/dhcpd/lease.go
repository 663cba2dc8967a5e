package dhcpd

import (
	"encoding/hex"
	"log/slog"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// lease is the state of the segment's one lease. The address is fixed (the
// client key's); what changes is whether the client holds it, until when,
// and from which MAC.
type lease struct {
	mac     string    // chaddr of the last ACK
	expires time.Time // zero: free (never given, released or declined)
}

// bind records the lease as given to m's client until now plus the lease
// time, and logs it when it is news: the first time, after a release, a
// decline or an expiry, and when the client comes back with another MAC
// (at most once a clientLogEvery: the client picks its chaddr). Renewals
// of a held lease are not logged.
func (s *Server) bind(m *message, now time.Time) {
	s.mu.Lock()
	held := !s.lease.expires.IsZero() && now.Before(s.lease.expires) && s.lease.mac == string(m.ClientHWAddr)
	if s.lease.mac != string(m.ClientHWAddr) {
		s.lease.mac = string(m.ClientHWAddr)
	}
	s.lease.expires = now.Add(s.cfg.LeaseTime)
	s.mu.Unlock()
	if held {
		return
	}
	attrs := []slog.Attr{
		slog.String("addr", s.cfg.Lease.Addr().String()),
		slog.String("mac", m.chaddr().String()),
	}
	if h := m.Options.Get(dhcpv4.OptionHostName); len(h) > 0 {
		attrs = append(attrs, slog.String("hostname", string(h)))
	}
	if id := m.Options.Get(dhcpv4.OptionClientIdentifier); len(id) > 0 {
		attrs = append(attrs, slog.String("client_id", hex.EncodeToString(id)))
	}
	attrs = append(attrs, slog.Duration("lease", s.cfg.LeaseTime))
	s.clientLog(logLease, now, slog.LevelInfo, "dhcp lease", attrs...)
}

// free marks the lease as no longer held (a RELEASE or a DECLINE), so the
// next ACK is logged.
func (s *Server) free() {
	s.mu.Lock()
	s.lease.expires = time.Time{}
	s.mu.Unlock()
}

// Leased is the lease's address while a client holds it at now.
func (s *Server) Leased(now time.Time) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease.expires.IsZero() || !now.Before(s.lease.expires) {
		return netip.Addr{}, false
	}
	return s.cfg.Lease.Addr(), true
}

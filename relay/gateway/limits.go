package gateway

import (
	"net"
	"net/netip"
	"time"
)

// Limits bound what clients may hold, so that one of them, authenticated
// or not, cannot lock out the others. The zero value of a field means its
// default.
type Limits struct {
	// MaxStartups bounds unauthenticated connections from everyone, as
	// sshd's MaxStartups does (default 64).
	MaxStartups int
	// PerSourceMaxStartups bounds them from one source address (an IPv6
	// /64), as sshd's PerSourceMaxStartups (default 8): 64 idle connections
	// from one host then cannot block everyone else's logins.
	PerSourceMaxStartups int
	// LoginGraceTime is how long a connection may stay unauthenticated
	// (default 30 s), sshd's LoginGraceTime.
	LoginGraceTime time.Duration
	// GracePenalty is how long a source whose connection used up the
	// whole LoginGraceTime is refused new connections, in the spirit of
	// sshd's PerSourcePenalties grace-exceeded (default 10 s); repeated
	// offences add up, to at most 10 minutes. Failed logins are not
	// penalised: they end at once and cost the source nothing held.
	GracePenalty time.Duration
	// MaxChannelsPerConn bounds tunnels and sessions one connection holds
	// at once, as sshd's MaxSessions (default 10).
	MaxChannelsPerConn int
	// MaxTunnelsPerKey bounds the tunnels one key holds at once over all
	// its connections (default 8): each tunnel is a device and an address.
	MaxTunnelsPerKey int
	// MaxForwardsPerConn bounds the direct-tcpip channels (ssh -L, ssh -D)
	// one connection holds at once (default 256): a browser behind -D
	// opens dozens, each a host socket.
	MaxForwardsPerConn int
}

// Defaults, documented in the README.
const (
	defaultMaxStartups          = 64
	defaultPerSourceMaxStartups = 8
	defaultLoginGraceTime       = 30 * time.Second
	defaultGracePenalty         = 10 * time.Second
	defaultMaxChannelsPerConn   = 10
	defaultMaxTunnelsPerKey     = 8
	defaultMaxForwardsPerConn   = 256
	maxPenalty                  = 10 * time.Minute
)

func (l Limits) withDefaults() Limits {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.MaxStartups, defaultMaxStartups)
	set(&l.PerSourceMaxStartups, defaultPerSourceMaxStartups)
	set(&l.MaxChannelsPerConn, defaultMaxChannelsPerConn)
	set(&l.MaxTunnelsPerKey, defaultMaxTunnelsPerKey)
	set(&l.MaxForwardsPerConn, defaultMaxForwardsPerConn)
	if l.LoginGraceTime <= 0 {
		l.LoginGraceTime = defaultLoginGraceTime
	}
	if l.GracePenalty <= 0 {
		l.GracePenalty = defaultGracePenalty
	}
	return l
}

// source is one client address, as the limits count it: IPv4 addresses
// alone, IPv6 by /64, since one host holds a whole /64.
type source = netip.Addr

func sourceOf(a net.Addr) source {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// sourceState is what the server remembers of one source.
type sourceState struct {
	handshaking  int
	penaltyUntil time.Time
}

// admit decides whether a new connection from src may start its handshake;
// the caller holds s.mu. It returns why not.
func (s *Server) admit(src source, now time.Time) string {
	l := s.limits
	if s.closing {
		return "the gateway is stopping"
	}
	if s.handshaking >= l.MaxStartups {
		return "too many unauthenticated connections (MaxStartups)"
	}
	st := s.sources[src]
	if st == nil {
		if len(s.sources) >= maxSources {
			s.forgetIdleSources(now)
		}
		st = &sourceState{}
		s.sources[src] = st
	}
	if now.Before(st.penaltyUntil) {
		return "penalised for connections that never logged in (PerSourcePenalties)"
	}
	if st.handshaking >= l.PerSourceMaxStartups {
		return "too many unauthenticated connections from this source (PerSourceMaxStartups)"
	}
	st.handshaking++
	s.handshaking++
	return ""
}

// maxSources is how many sources the server remembers before it forgets
// those that hold nothing and whose penalty has run out.
const maxSources = 4096

func (s *Server) forgetIdleSources(now time.Time) {
	for src, st := range s.sources {
		if st.handshaking == 0 && !now.Before(st.penaltyUntil) {
			delete(s.sources, src)
		}
	}
}

// handshakeDone counts a connection out of the unauthenticated ones, and
// penalises its source if it used up the grace time.
func (s *Server) handshakeDone(src source, graceExceeded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handshaking--
	st := s.sources[src]
	if st == nil {
		return
	}
	st.handshaking--
	now := time.Now()
	if graceExceeded {
		from := st.penaltyUntil
		if from.Before(now) {
			from = now
		}
		st.penaltyUntil = from.Add(s.limits.GracePenalty)
		if limit := now.Add(maxPenalty); st.penaltyUntil.After(limit) {
			st.penaltyUntil = limit
		}
	}
	if st.handshaking == 0 && !now.Before(st.penaltyUntil) {
		delete(s.sources, src)
	}
}

// takeKeyTunnel counts one more tunnel for key unless it holds the most
// it may; giveKeyTunnel returns it.
func (s *Server) takeKeyTunnel(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keyTunnels[key] >= s.limits.MaxTunnelsPerKey {
		return false
	}
	s.keyTunnels[key]++
	return true
}

func (s *Server) giveKeyTunnel(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keyTunnels[key]--; s.keyTunnels[key] <= 0 {
		delete(s.keyTunnels, key)
	}
}

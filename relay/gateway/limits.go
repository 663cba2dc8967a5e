package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Limits bound what clients may hold, so that one of them, authenticated
// or not, cannot lock out the others. A zero field takes its value from
// DefaultLimits.
type Limits struct {
	// MaxStartups bounds unauthenticated connections from everyone, as
	// sshd's MaxStartups does.
	MaxStartups int
	// PerSourceMaxStartups bounds them from one source address (an IPv6
	// /64), as sshd's PerSourceMaxStartups: 64 idle connections from one
	// host then cannot block everyone else's logins.
	PerSourceMaxStartups int
	// LoginGraceTime is how long a connection may stay unauthenticated,
	// sshd's LoginGraceTime.
	LoginGraceTime time.Duration
	// GracePenalty is how long a source whose connection used up the
	// whole LoginGraceTime is refused new connections, in the spirit of
	// sshd's PerSourcePenalties grace-exceeded; repeated offences add up,
	// to at most 10 minutes. Failed logins are not penalised: they end at
	// once and cost the source nothing held.
	GracePenalty time.Duration
	// MaxConnsPerKey bounds the connections one key holds at once. sshd
	// has no such bound, but its logins cost a process each; here every
	// connection is a handful of goroutines and up to MaxForwardsPerConn
	// host sockets, and one key must not hold them all.
	MaxConnsPerKey int
	// MaxChannelsPerConn bounds tunnels and sessions one connection holds
	// at once, as sshd's MaxSessions.
	MaxChannelsPerConn int
	// MaxTunnelsPerKey bounds the tunnels one key holds at once over all
	// its connections: each tunnel is a device and an address.
	MaxTunnelsPerKey int
	// MaxForwardsPerConn bounds the direct-tcpip channels (ssh -L, ssh -D)
	// one connection holds at once, each a host socket. A browser behind
	// -D opens dozens; a rootless sshvpn client carries every TCP flow of
	// its proxies this way, so the bound is the key's whole share.
	MaxForwardsPerConn int
	// MaxForwardsPerKey bounds them over all the key's connections.
	MaxForwardsPerKey int
}

// DefaultLimits are the limits of a gateway that sets none, and the
// defaults of sshvpn serve's flags.
var DefaultLimits = Limits{
	MaxStartups:          64,
	PerSourceMaxStartups: 8,
	LoginGraceTime:       30 * time.Second,
	GracePenalty:         10 * time.Second,
	MaxConnsPerKey:       16,
	MaxChannelsPerConn:   10,
	MaxTunnelsPerKey:     8,
	MaxForwardsPerConn:   1024,
	MaxForwardsPerKey:    2048,
}

// SetLimits puts l (its zero fields from DefaultLimits) in force for what
// is admitted from now on: connections, logins, channels and forwards
// already held stay, even above a lowered limit, and count against it.
// sshvpn serve calls it on SIGHUP.
func (s *Server) SetLimits(l Limits) {
	l = l.withDefaults()
	s.limits.Store(&l)
}

// Limits are the limits in force.
func (s *Server) Limits() Limits { return *s.lim() }

func (s *Server) lim() *Limits { return s.limits.Load() }

// maxPenalty bounds what repeated GracePenalty add up to.
const maxPenalty = 10 * time.Minute

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.MaxStartups, d.MaxStartups)
	set(&l.PerSourceMaxStartups, d.PerSourceMaxStartups)
	set(&l.MaxConnsPerKey, d.MaxConnsPerKey)
	set(&l.MaxChannelsPerConn, d.MaxChannelsPerConn)
	set(&l.MaxTunnelsPerKey, d.MaxTunnelsPerKey)
	set(&l.MaxForwardsPerConn, d.MaxForwardsPerConn)
	set(&l.MaxForwardsPerKey, d.MaxForwardsPerKey)
	if l.LoginGraceTime <= 0 {
		l.LoginGraceTime = d.LoginGraceTime
	}
	if l.GracePenalty <= 0 {
		l.GracePenalty = d.GracePenalty
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
	l := s.lim()
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
		st.penaltyUntil = from.Add(s.lim().GracePenalty)
		if limit := now.Add(maxPenalty); st.penaltyUntil.After(limit) {
			st.penaltyUntil = limit
		}
	}
	if st.handshaking == 0 && !now.Before(st.penaltyUntil) {
		delete(s.sources, src)
	}
}

// keyResource is one kind of thing a key holds, counted over all its
// connections.
type keyResource int

const (
	keyConns keyResource = iota
	keyTunnels
	keyForwards
	keyResources
)

func (r keyResource) String() string {
	return [...]string{"connections", "tunnels", "forwarded connections"}[r]
}

// perKey is how many of r one key may hold.
func (l Limits) perKey(r keyResource) int {
	return [...]int{l.MaxConnsPerKey, l.MaxTunnelsPerKey, l.MaxForwardsPerKey}[r]
}

// Refused counts what the limits refused, since the gateway started.
type Refused struct {
	ConnsPerKey, TunnelsPerKey, ForwardsPerKey atomic.Uint64
	ChannelsPerConn, ForwardsPerConn           atomic.Uint64
}

func (s *Refused) keyRefused(r keyResource) *atomic.Uint64 {
	return [...]*atomic.Uint64{&s.ConnsPerKey, &s.TunnelsPerKey, &s.ForwardsPerKey}[r]
}

// keyUse is what one key holds.
type keyUse [keyResources]int

// takeKey counts one more r for key unless the key holds the most it may;
// giveKey returns it. A refusal is counted in Stats.
func (s *Server) takeKey(key string, r keyResource) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.keys[key]
	if u == nil {
		u = new(keyUse)
	}
	if u[r] >= s.lim().perKey(r) {
		s.refused.keyRefused(r).Add(1)
		return false
	}
	u[r]++
	s.keys[key] = u
	return true
}

func (s *Server) giveKey(key string, r keyResource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.keys[key]
	if u == nil {
		return
	}
	if u[r]--; *u == (keyUse{}) {
		delete(s.keys, key)
	}
}

// keyRefusal says why a key was refused one more r, and logs it, a line
// per kind every few seconds however fast a client asks.
func (s *Server) keyRefusal(log *slog.Logger, key string, r keyResource) string {
	why := fmt.Sprintf("key %s already holds %d %s, the most this gateway allows one key", key, s.lim().perKey(r), r)
	if n, ok := s.refuse.Allow("per-key " + r.String()); ok {
		log.Warn("refused: a per-key limit", "why", why, "refused_since_last", n)
	}
	return why
}

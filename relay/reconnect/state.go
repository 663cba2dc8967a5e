package reconnect

import (
	"sync"
	"time"

	"github.com/sshvpn/sshvpn/relay"
)

// The phases of a Run, as State reports them.
const (
	Connecting   = "connecting"   // before anything was up: dialling, or waiting to retry
	Up           = "up"           // a connection (and its tunnel, when it has one) is up
	Reconnecting = "reconnecting" // after a loss, waiting for or making the next dial
)

// State is where a Client's Run is, for sshvpn status.
type State struct {
	Phase string
	// LastError is why the last connection ended or the last dial
	// failed; NextTry is when the next dial is due, while reconnecting.
	LastError string
	NextTry   time.Time
	Since     time.Time // when the current connection came up
	// Reconnects counts connections that came up after an earlier one
	// was: losses mended, not dials (failed ones and those before the
	// first success count for nothing).
	Reconnects uint64
	// PeerVersion is the server's SSH version, Channel the tunnel's
	// channel type and Config what an sshvpn gateway said of it: those of
	// the current connection, or the last one.
	PeerVersion string
	Channel     string
	Config      *relay.TunnelConfig
	// Tunnel says a tunnel is up now (not only a connection for flows).
	Tunnel bool
	// In and Out are the tunnel's traffic over every connection: what
	// came from the server and what went to it.
	In, Out relay.Snapshot
}

// state is the Client's record of its State.
type state struct {
	mu      sync.Mutex
	s       State
	in, out *relay.Counters // the Run's, once it has a tunnel
}

// State says where the Client's Run is now.
func (c *Client) State() State {
	st := &c.state
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.s
	if s.Phase == "" {
		s.Phase = Connecting
	}
	if st.in != nil {
		s.In, s.Out = st.in.Snapshot(), st.out.Snapshot()
	}
	return s
}

func (st *state) update(f func(s *State)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(&st.s)
}

// counting points State at the Run's counters.
func (st *state) counting(in, out *relay.Counters) {
	st.mu.Lock()
	st.in, st.out = in, out
	st.mu.Unlock()
}

// dialing notes a dial starting; the phase stays what waiting made it
// (connecting until the first connection was up).
func (st *state) dialing() {
	st.update(func(s *State) {
		if s.Phase == "" {
			s.Phase = Connecting
		}
		s.NextTry = time.Time{}
	})
}

// up notes a connection up, with a tunnel when channel is set.
func (st *state) up(peer []byte, channel string, cfg *relay.TunnelConfig) {
	st.update(func(s *State) {
		if !s.Since.IsZero() {
			s.Reconnects++ // an earlier connection was up
		}
		s.Phase, s.Since, s.PeerVersion, s.Tunnel = Up, time.Now(), string(peer), channel != ""
		if channel != "" {
			s.Channel = channel
			if cfg != nil {
				s.Config = cfg
			}
		}
	})
}

// waiting notes a loss or a failed dial and when the next dial is due.
func (st *state) waiting(err error, next time.Time, everUp bool) {
	st.update(func(s *State) {
		if everUp {
			s.Phase = Reconnecting
		} else {
			s.Phase = Connecting
		}
		s.Tunnel, s.NextTry = false, next
		if err != nil {
			s.LastError = err.Error()
		}
	})
}

package gateway

import (
	"maps"
	"slices"
	"time"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/status"
)

// tunnelState is one tunnel up on a connection, with what Status shows
// of it.
type tunnelState struct {
	t       relay.Tunnel
	channel string
	mode    relay.Mode
	since   time.Time
	in, out *relay.Counters // from the client, to it
}

// Status is the gateway's state now: its connections, their tunnels and
// what the limits and logins refused. The caller fills in what the
// Server does not know: the listen address, host key and backend.
func (s *Server) Status() status.Gateway {
	s.mu.Lock()
	var conns []*connState
	handshaking := 0
	for _, cs := range s.conns {
		if cs == nil {
			handshaking++
			continue
		}
		conns = append(conns, cs)
	}
	g := status.Gateway{
		Handshaking:  handshaking,
		Connections:  []status.Connection{},
		Refused:      s.refused.counts(s.startupsRefused),
		AuthFailures: maps.Clone(s.authFailures),
	}
	s.mu.Unlock()

	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	in, out := s.departed[0], s.departed[1]
	in.Drops, out.Drops = maps.Clone(in.Drops), maps.Clone(out.Drops)
	flows, memory := s.departedFlowsRefused, s.departedMemoryRefused
	for _, cs := range conns {
		c := cs.report()
		for _, t := range c.Tunnels {
			addCounters(&in, t.In)
			addCounters(&out, t.Out)
			if t.Flows != nil {
				flows += t.Flows.Refused
			}
			if t.Memory != nil {
				memory += t.Memory.Refused
			}
		}
		g.Connections = append(g.Connections, c)
	}
	for name, n := range map[string]uint64{"flows_per_client": flows, "memory_per_client": memory} {
		if n > 0 {
			if g.Refused == nil {
				g.Refused = map[string]uint64{}
			}
			g.Refused[name] = n
		}
	}
	slices.SortFunc(g.Connections, func(a, b status.Connection) int { return a.Since.Compare(b.Since) })
	g.Totals = status.Traffic{In: counters(in), Out: counters(out)}
	return g
}

// report is the connection's part of Status; the caller holds
// srv.statusMu.
func (cs *connState) report() status.Connection {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := status.Connection{
		User:        cs.conn.User(),
		Key:         cs.login.key,
		KeyComment:  cs.login.opts.Comment,
		Remote:      cs.conn.RemoteAddr().String(),
		PeerVersion: string(cs.conn.ClientVersion()),
		Since:       cs.since,
		RTT:         status.Duration(cs.rtt.Load()),
		Forwards:    status.Usage{Used: int64(cs.forwards), Limit: int64(cs.srv.lim().MaxForwardsPerConn), Refused: cs.forwardsRefused},
		Tunnels:     make([]status.Tunnel, 0, len(cs.tunnels)),
	}
	for _, ts := range cs.tunnels {
		c.Tunnels = append(c.Tunnels, ts.report())
	}
	return c
}

func (ts *tunnelState) report() status.Tunnel {
	cfg := ts.t.Config()
	in, out := ts.in.Snapshot(), ts.out.Snapshot()
	t := status.Tunnel{
		Channel:      ts.channel,
		Mode:         ts.mode.String(),
		Device:       cfg.Device,
		Addresses:    cfg.Addresses,
		Since:        ts.since,
		LastReceived: in.Last,
		In:           counters(in),
		Out:          counters(out),
	}
	if r, ok := ts.t.(relay.Reporter); ok {
		rep := r.Report()
		t.Claimed, t.Leased = rep.Claimed, rep.Leased
		t.Flows, t.Memory = usage(rep.Flows), usage(rep.Memory)
	}
	return t
}

// limitRefusals are what the tunnel's per-client limits refused: flows
// and memory, on a backend that has them.
func (ts *tunnelState) limitRefusals() (flows, memory uint64) {
	r, ok := ts.t.(relay.Reporter)
	if !ok {
		return 0, 0
	}
	rep := r.Report()
	if rep.Flows != nil {
		flows = rep.Flows.Refused
	}
	if rep.Memory != nil {
		memory = rep.Memory.Refused
	}
	return flows, memory
}

func usage(u *relay.Usage) *status.Usage {
	if u == nil {
		return nil
	}
	return &status.Usage{Used: u.Used, Limit: u.Limit, Refused: u.Refused}
}

func counters(s relay.Snapshot) status.Counters {
	return status.Counters{Packets: s.Packets, Bytes: s.Bytes, Drops: s.Drops}
}

// addSnapshot adds b's counts to a's.
func addSnapshot(a *relay.Snapshot, b relay.Snapshot) {
	a.Packets += b.Packets
	a.Bytes += b.Bytes
	for r, n := range b.Drops {
		if a.Drops == nil {
			a.Drops = make(map[string]uint64)
		}
		a.Drops[r] += n
	}
}

func addCounters(a *relay.Snapshot, c status.Counters) {
	addSnapshot(a, relay.Snapshot{Packets: c.Packets, Bytes: c.Bytes, Drops: c.Drops})
}

// counts names what the limits refused, only the limits that refused;
// startups are the connections MaxStartups, PerSourceMaxStartups and the
// grace penalty refused.
func (r *Refused) counts(startups uint64) map[string]uint64 {
	m := map[string]uint64{}
	for name, v := range map[string]uint64{
		"startups":                startups,
		"connections_per_key":     r.ConnsPerKey.Load(),
		"tunnels_per_key":         r.TunnelsPerKey.Load(),
		"forwards_per_key":        r.ForwardsPerKey.Load(),
		"channels_per_connection": r.ChannelsPerConn.Load(),
		"forwards_per_connection": r.ForwardsPerConn.Load(),
	} {
		if v > 0 {
			m[name] = v
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

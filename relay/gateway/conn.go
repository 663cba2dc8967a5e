package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/sshchan"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// connState is one authenticated client connection.
type connState struct {
	srv   *Server
	conn  *ssh.ServerConn
	login login
	log   *slog.Logger
	wg    sync.WaitGroup

	since time.Time
	rtt   atomic.Int64 // the last keepalive's round trip, in nanoseconds

	mu       sync.Mutex
	tunnels  []*tunnelState
	channels int // open tunnels and sessions, for Limits.MaxChannelsPerConn
	forwards int // open direct-tcpip channels, for Limits.MaxForwardsPerConn
	sessions int // open session channels: a hangup in one of several ends only it
	// forwardsRefused counts the forwards its limits refused.
	forwardsRefused uint64
	opened          chan struct{} // closed when the first tunnel is up
	openOnce        sync.Once
	// end ends the connection's tunnels and forwards (its context) when
	// the user hangs up its terminal session; left is closed once the
	// client has gone.
	end  context.CancelFunc
	left chan struct{}

	// The window this connection's forwards grant beyond x/crypto's,
	// from its round trip, measured once when the first forward comes.
	measureOnce sync.Once
	flowExtra   atomic.Uint32
}

// forwardWindow is the window a forward grants beyond x/crypto's 2 MiB, so
// that an upload through ssh -D over a long path is not held to 2 MiB a
// round trip: 0 until the connection's round trip is known (measured in
// the background, once), then sized to it.
func (cs *connState) forwardWindow() uint32 {
	cs.measureOnce.Do(func() {
		cs.wg.Go(func() {
			if rtt, err := sshchan.PathRTT(cs.conn); err == nil {
				cs.flowExtra.Store(sshchan.FlowWindowExtra(rtt))
			}
		})
	})
	return cs.flowExtra.Load()
}

// serve handles the connection's channel opens until the connection ends.
// Everything the connection opened goes with it, as with sshd: its
// context is cancelled when the client leaves, which ends its tunnels,
// its forwards (whatever their targets do) and dials still in flight.
func (cs *connState) serve(ctx context.Context, chans <-chan ssh.NewChannel) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs.opened = make(chan struct{})
	cs.end, cs.left = cancel, make(chan struct{})
	for nc := range chans {
		switch t := nc.ChannelType(); t {
		case "direct-tcpip":
			if why := cs.takeForward(); why != "" {
				nc.Reject(ssh.ResourceShortage, "too many forwarded connections: "+why)
				continue
			}
			cs.wg.Go(func() {
				defer cs.giveForward()
				cs.forward(ctx, nc)
			})
		case wire.ChannelType, wire.StreamChannelType, "session":
			if !cs.take() {
				nc.Reject(ssh.ResourceShortage, fmt.Sprintf("too many channels: this gateway allows %d per connection", cs.srv.lim().MaxChannelsPerConn))
				continue
			}
			cs.wg.Go(func() {
				defer cs.give()
				if t != "session" {
					cs.tunnel(ctx, nc)
				} else {
					cs.session(nc)
				}
			})
		default:
			nc.Reject(ssh.UnknownChannelType, fmt.Sprintf("sshvpn opens no %q channels: it carries tunnels (ssh -w), a status session and, on the netstack backend, ssh -L and -D", truncate(t, 64)))
		}
	}
	close(cs.left)
	cancel()
	cs.wg.Wait()
}

func (cs *connState) tunnel(ctx context.Context, nc ssh.NewChannel) {
	var req wire.StreamOpen
	var err error
	framed := nc.ChannelType() == wire.StreamChannelType
	if framed {
		req, err = wire.ParseStreamOpen(nc.ExtraData())
	} else {
		req.OpenRequest, err = wire.ParseOpenRequest(nc.ExtraData())
	}
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "tunnel refused: "+err.Error())
		return
	}
	unit, err := checkTunnel(cs.srv.cfg.PermitTunnel, req.Mode, req.Unit, cs.login.opts)
	if err == nil && !framed {
		err = sshchan.Check(cs.conn.ClientVersion())
	}
	if err != nil {
		cs.log.Warn("tunnel refused", "mode", req.Mode, "unit", unitString(req.Unit), "why", err)
		nc.Reject(ssh.Prohibited, err.Error())
		return
	}
	if !cs.srv.takeKey(cs.login.key, keyTunnels) {
		nc.Reject(ssh.ResourceShortage, "tunnel refused: "+cs.srv.keyRefusal(cs.log, cs.login.key, keyTunnels))
		return
	}
	defer cs.srv.giveKey(cs.login.key, keyTunnels)
	treq := cs.request()
	treq.Mode, treq.Unit, treq.Framed, treq.GSO = req.Mode, unit, framed, req.GSO
	t, err := cs.srv.cfg.Backend.Open(ctx, treq)
	if err != nil {
		cs.log.Error("tunnel failed", "mode", req.Mode, "unit", unitString(unit), "err", err)
		nc.Reject(ssh.ConnectionFailed, "tunnel failed on the gateway: "+err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		t.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	// Packets the channel cannot frame count as drops on the way in.
	var in relay.Counters
	var tuners []relay.PathTuner
	if pt, ok := t.(relay.PathTuner); ok {
		tuners = append(tuners, pt)
	}
	c, err := sshchan.NewDevice(cs.conn, ch, sshchan.DeviceConfig{Framed: framed, Mode: req.Mode, MTU: t.MTU(), GSO: relay.GSO(t),
		PeerVersion: cs.conn.ClientVersion(), In: &in, Log: cs.log, Local: clientNets(t.Config()), Routed: treq.AllowedIPs, Tuners: tuners})
	if err != nil {
		cs.log.Error("tunnel closed at once", "err", err)
		ch.Close()
		t.Close()
		return
	}
	if framed || sshchan.PeerOf(cs.conn.ClientVersion()) == sshchan.SSHVPN {
		cfg := t.Config()
		cfg.GSO = relay.GSO(t)
		// Before any packet: the client reads it first.
		if _, err := ch.SendRequest(wire.TunnelConfigRequest, false, wire.MarshalTunnelConfig(cfg)); err != nil {
			cs.log.Warn("cannot send the tunnel's configuration", "err", err)
		}
	}
	cs.run(ctx, c, t, req.Mode, framed, &in)
}

// run pumps one tunnel until either side ends, then tears it down.
func (cs *connState) run(ctx context.Context, c relay.Device, t relay.Tunnel, mode relay.Mode, framed bool, in *relay.Counters) {
	var out relay.Counters
	ts := &tunnelState{t: t, channel: wire.TunnelChannelType(framed), mode: mode, since: time.Now(), in: in, out: &out}
	cs.add(ts)
	cfg := t.Config()
	log := cs.log.With("tunnel", cfg.Device)
	log.Info("tunnel up", "mode", mode, "channel", ts.channel, "addresses", cfg.Addresses)
	log.Debug("tunnel offloads", "gso", relay.GSO(t))
	// The backend's device is the pump's first side because the pump
	// closes its sides in order, and closing the channel can wait behind a
	// write to a stalled client: the device and its routes must go at once.
	err := relay.NewPump(t, c, &out, in, log).Run(ctx)
	c.Close()
	// The pump closed both already; this Close covers a pump that never ran.
	if cerr := t.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	i, o := cs.remove(ts)
	why := "the client or the gateway closed it"
	if err != nil {
		why = err.Error()
	}
	log.Info("tunnel down", "why", why, "in", i, "out", o)
}

// take counts one more open channel, unless the client holds the most it may.
func (cs *connState) take() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.channels >= cs.srv.lim().MaxChannelsPerConn {
		cs.srv.refused.ChannelsPerConn.Add(1)
		return false
	}
	cs.channels++
	return true
}

func (cs *connState) give() {
	cs.mu.Lock()
	cs.channels--
	cs.mu.Unlock()
}

// takeForward counts one more forwarded connection, unless the
// connection or its key holds the most it may; then it says why.
func (cs *connState) takeForward() string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if most := cs.srv.lim().MaxForwardsPerConn; cs.forwards >= most {
		cs.srv.refused.ForwardsPerConn.Add(1)
		cs.forwardsRefused++
		why := fmt.Sprintf("this gateway allows %d per connection", most)
		if n, ok := cs.srv.refuse.Allow("forwards per connection"); ok {
			cs.log.Warn("refused: a per-connection limit", "why", why, "refused_since_last", n)
		}
		return why
	}
	if !cs.srv.takeKey(cs.login.key, keyForwards) {
		cs.forwardsRefused++
		return cs.srv.keyRefusal(cs.log, cs.login.key, keyForwards)
	}
	cs.forwards++
	return ""
}

func (cs *connState) giveForward() {
	cs.srv.giveKey(cs.login.key, keyForwards)
	cs.mu.Lock()
	cs.forwards--
	cs.mu.Unlock()
}

func (cs *connState) add(ts *tunnelState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.tunnels = append(cs.tunnels, ts)
	cs.openOnce.Do(func() { close(cs.opened) })
}

// remove forgets a tunnel that ended, and adds its last counts, in and
// out, to the gateway's departed traffic in the same step, so that no
// Status sees it twice or not at all. The counts are read under statusMu:
// a Status that read them live before cannot have seen more than the
// departed totals then get, so no counter goes back.
func (cs *connState) remove(ts *tunnelState) (in, out relay.Snapshot) {
	cs.srv.statusMu.Lock()
	defer cs.srv.statusMu.Unlock()
	in, out = ts.in.Snapshot(), ts.out.Snapshot()
	flows, memory := ts.limitRefusals()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for i, t := range cs.tunnels {
		if t == ts {
			cs.tunnels = append(cs.tunnels[:i], cs.tunnels[i+1:]...)
			break
		}
	}
	addSnapshot(&cs.srv.departed[0], in)
	addSnapshot(&cs.srv.departed[1], out)
	cs.srv.departedFlowsRefused += flows
	cs.srv.departedMemoryRefused += memory
	return in, out
}

// status is the text the session channel shows.
func (cs *connState) status() string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.tunnels) == 0 {
		return "sshvpn: no tunnel is open on this connection. Ask for one with ssh -w any -o Tunnel=point-to-point (or ethernet).\n"
	}
	var b strings.Builder
	for _, ts := range cs.tunnels {
		b.WriteString(ts.t.Status())
	}
	return b.String()
}

// clientNets are the tunnel networks a client's own addresses are in. A
// stock client picks its address by hand, maybe not the one the gateway
// offered, and the gateway routes to it whatever it picked in them. What
// the client routes on (its AllowedIPs) is excluded separately.
func clientNets(cfg relay.TunnelConfig) []netip.Prefix {
	var n []netip.Prefix
	for _, p := range cfg.Addresses {
		n = append(n, p.Masked())
	}
	return n
}

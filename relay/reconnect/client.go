package reconnect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/sshchan"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// Client keeps one tunnel up from the client side: it dials, opens a
// tun@openssh.com channel, learns the tunnel's configuration from an sshvpn
// gateway, and carries packets between the channel and the local device;
// when the connection dies it dials again with capped, jittered exponential
// backoff. The local device is made once and stays in place across
// reconnects, read by one Pump for the client's whole life, so applications
// see a pause, not a reset.
type Client struct {
	// Dial connects and authenticates, within a time of its own choosing
	// (a server that accepts and then stalls must not hold a reconnect
	// forever). Its errors are final unless Retryable says otherwise.
	Dial func(ctx context.Context) (*ssh.Client, error)
	// Retryable reports whether a Dial error may pass (the network, the
	// server restarting) rather than need the user (a refused key, a
	// changed host key). Nil: none may.
	Retryable func(error) bool
	// KeepAlive watches a connection until ctx ends; an error means the
	// server stopped answering. Nil: no keepalives.
	KeepAlive func(ctx context.Context, c *ssh.Client) error
	Mode      relay.Mode
	Unit      uint32 // the remote unit, relay.AnyUnit for any
	// Setup makes and configures the local device, once, when the first
	// tunnel is up, with what the gateway said (nil from a stock sshd):
	// until then nothing on the machine has changed. Run closes the
	// device when it returns.
	Setup func(*relay.TunnelConfig) (relay.Device, error)
	// Update applies a later tunnel's configuration to the device Setup
	// made; nil to keep the first one.
	Update func(*relay.TunnelConfig) error
	// Persist keeps retrying when the first connection fails. Without it,
	// as with ssh, a failure before the first tunnel was up is final: the
	// user learns at once that the host, the key or the server is wrong.
	// Once a tunnel was up, Run always reconnects.
	Persist bool
	// GSO says Setup can make a device that passes GSO super-packets
	// whole, which the client offers a gateway that speaks the framed
	// channel; Setup does so when the gateway's TunnelConfig.GSO says its
	// device does too.
	GSO bool
	// Up, when set, is called once, when the first tunnel is up (sshvpn
	// connect -f goes to the background then); with Flows, when the first
	// connection is.
	Up func()
	// Flows says the connections also carry flows of their own:
	// direct-tcpip channels that the rootless proxies open on whichever
	// connection Connection returns (which serves them without Flows
	// too). The tunnel then becomes optional: a
	// connection whose server refuses it, or for which SkipTunnel says
	// why not, stays up without one and counts as up.
	Flows bool
	// SkipTunnel, when set with Flows, is asked before the tunnel is
	// opened on a connection; a non-empty answer is why this connection
	// goes without one.
	SkipTunnel func(serverVersion []byte) string
	// NoTunnel, when set with Flows, hears why a connection goes without
	// a tunnel, each time one does.
	NoTunnel func(why string)
	// OnState, when set, hears each change of state: "connecting" before
	// the first dial, and with the reason each time a dial fails before
	// any tunnel was up and another will follow (with Persist); "up" each
	// time a tunnel (with Flows, a connection) is; "reconnecting" with
	// the reason each time one that was up is lost, or a dial after that
	// fails, and another will follow. State's NextTry says when.
	OnState func(state string, why error)
	// AttemptWithin bounds, for Probe, one connection attempt: the dial,
	// the tunnel's opening and configuration, the device's setup. An
	// attempt that runs longer counts as stuck. Zero: two minutes. Give
	// more than Dial's own bound; a Dial that waits for a person at a
	// prompt has none, and Probe is for services, which cannot prompt.
	AttemptWithin time.Duration
	// Log may be nil.
	Log *slog.Logger

	conn  connection
	state state
	loop  loop
}

// Backoff bounds: the first retry comes after about minBackoff, later ones
// double up to maxBackoff, each drawn between half and all of that.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
	// configWait is how long an sshvpn gateway has to send its tunnel
	// configuration.
	configWait = 5 * time.Second
	// stableAfter is how long a tunnel must have lived for the next
	// failure to start the backoff over.
	stableAfter = 30 * time.Second
)

// backoff returns the wait before retry n (0 first).
func backoff(n int) time.Duration {
	d := maxBackoff
	if n < 16 {
		d = min(maxBackoff, minBackoff<<n)
	}
	return d/2 + rand.N(d/2+1)
}

// Run keeps the tunnel up until ctx ends (it returns nil, or ErrNeverUp
// when no tunnel was ever up) or an error that retrying cannot fix.
func (c *Client) Run(ctx context.Context) error {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &tunnel{client: c, log: log}
	defer c.loop.end()
	defer t.stop(cancel)
	defer c.conn.end()
	c.onState(Connecting, nil)
	for attempt := 0; ; attempt++ {
		c.state.dialing()
		c.loop.begin("a connection attempt", c.attemptWithin())
		up, err := t.session(ctx)
		if ctx.Err() != nil {
			return t.ended()
		}
		if !c.retryable(err) {
			return err
		}
		if !t.everUp && !c.Persist {
			return &FirstContactError{err}
		}
		if !up.IsZero() && time.Since(up) > stableAfter {
			attempt = 0 // that tunnel lived: start the backoff over
		}
		wait := backoff(attempt)
		next := time.Now().Add(wait)
		// State first: OnState's listener may ask it when the next try is.
		c.state.waiting(err, next, t.everUp)
		if t.everUp {
			c.onState(Reconnecting, err)
		} else {
			c.onState(Connecting, err)
		}
		if !t.everUp {
			log.Warn("cannot connect; retrying", "err", err, "in", wait.Round(time.Millisecond))
		} else if t.local == nil {
			log.Warn("connection lost; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		} else {
			log.Warn("tunnel down; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		}
		if !c.await(ctx, wait) {
			return t.ended()
		}
	}
}

// await waits d, answering probes, and says whether ctx is still live.
func (c *Client) await(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	c.loop.wait(time.Now().Add(d))
	for {
		select {
		case <-ctx.Done():
			return false
		case <-c.loop.probes():
		case <-timer.C:
			return true
		}
	}
}

func (c *Client) attemptWithin() time.Duration {
	if c.AttemptWithin > 0 {
		return c.AttemptWithin
	}
	return defaultAttemptWithin
}

func (c *Client) onState(state string, why error) {
	if c.OnState != nil {
		c.loop.hook("OnState", func() { c.OnState(state, why) })
	}
}

// ErrNeverUp is Run's answer when ctx ended before any tunnel was up:
// the user gave up, and a script must not take it for success.
var ErrNeverUp = errors.New("interrupted before a tunnel was up")

// ended is Run's result once ctx has ended.
func (t *tunnel) ended() error {
	if !t.everUp {
		return ErrNeverUp
	}
	return nil
}

// tunnel is one Run: the local device, the remote side sessions attach
// to, and the Pump between them, all made when the first tunnel is up.
type tunnel struct {
	client *Client
	log    *slog.Logger

	local     relay.Device
	remote    *remote
	in, out   relay.Counters // remote→local and local→remote
	pumpDone  chan struct{}  // closed when the Pump stopped: ctx ended or the local device failed
	pumpErr   error          // why; read after pumpDone
	announced bool           // Client.Up was called
	everUp    bool           // a tunnel (or, with Flows, a connection) was up
	noTunnel  string         // why the last connection went without a tunnel, logged when it changes
	wg        sync.WaitGroup
}

// start makes the Pump that carries packets for the rest of the Run.
func (t *tunnel) start(ctx context.Context, local relay.Device) {
	t.local, t.remote = local, newRemote(local.MTU())
	t.client.state.counting(&t.in, &t.out)
	t.pumpDone = make(chan struct{})
	pump := relay.NewPump(local, t.remote, &t.out, &t.in, t.log)
	t.wg.Go(func() {
		t.pumpErr = pump.Run(ctx)
		close(t.pumpDone)
	})
}

// stop ends the Pump, which closes the local device and the remote, and
// waits for it.
func (t *tunnel) stop(cancel context.CancelFunc) {
	cancel()
	t.wg.Wait()
}

// stopped waits for the Pump to stop and says why: ctx ended (nil) or the
// local device failed, which no reconnect mends.
func (t *tunnel) stopped() error {
	<-t.pumpDone
	if t.pumpErr == nil {
		return nil
	}
	return &localError{t.pumpErr}
}

// FirstContactError is a failure before any tunnel was up, which Run does
// not retry unless Persist is set.
type FirstContactError struct{ Err error }

func (e *FirstContactError) Error() string { return e.Err.Error() }
func (e *FirstContactError) Unwrap() error { return e.Err }

// localError is a failure of the local device: final.
type localError struct{ err error }

func (e *localError) Error() string { return "local device: " + e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// sessionError marks a failure after the tunnel was up: always worth a
// reconnect.
type sessionError struct{ err error }

func (e *sessionError) Error() string { return e.err.Error() }
func (e *sessionError) Unwrap() error { return e.err }

func (c *Client) retryable(err error) bool {
	if _, ok := errors.AsType[*localError](err); ok {
		return false
	}
	if _, ok := errors.AsType[*sessionError](err); ok {
		return true
	}
	return c.Retryable != nil && c.Retryable(err)
}

// session runs one connection from dial to loss. It returns when the
// tunnel came up, zero if it never did.
func (t *tunnel) session(ctx context.Context) (up time.Time, err error) {
	c := t.client
	t.log.Info("connecting")
	// Dial bounds itself: a deadline here would also run while the user
	// types a passphrase.
	sc, err := c.Dial(ctx)
	if err != nil {
		c.conn.failed(err)
		return up, err
	}
	// Leave as ssh leaves: SSH_MSG_DISCONNECT, then close. On every path,
	// so a server that never answers the open is left at once on Ctrl-C.
	leave := sync.OnceFunc(func() {
		sshchan.Disconnect(sc, sshchan.DisconnectByApplication, "disconnected by user")
	})
	defer leave()
	stopLeave := context.AfterFunc(ctx, leave)
	defer stopLeave()
	// Flows may use the connection at once, while the tunnel opens.
	c.conn.up(sc)
	defer c.conn.down(errors.New("the connection to the server was lost"))
	why := ""
	if c.Flows && c.SkipTunnel != nil {
		c.loop.hook("SkipTunnel", func() { why = c.SkipTunnel(sc.ServerVersion()) })
	}
	var (
		ch     ssh.Channel
		reqs   <-chan *ssh.Request
		framed bool
	)
	if why == "" {
		ch, reqs, framed, err = t.open(sc)
		if ctx.Err() != nil {
			return up, ctx.Err()
		}
		if err != nil {
			err = refusal(c.Mode, sc.ServerVersion(), err)
			switch {
			case t.local != nil && transientRefusal(err):
				// The server's last session may still hold the unit.
				return up, &sessionError{err}
			case !c.Flows:
				return up, err
			}
			why = err.Error()
		}
	}
	if why != "" {
		return t.flowsOnly(ctx, sc, why, stopLeave, leave)
	}
	defer ch.Close()
	cfg, err := tunnelConfig(ctx, sc, framed, reqs)
	go ssh.DiscardRequests(reqs)
	if err != nil {
		return up, &sessionError{err}
	}
	if err := t.setup(ctx, cfg); err != nil {
		return up, err
	}
	if !framed && relay.GSO(t.local) {
		// Only after a gateway that spoke the framed channel was replaced
		// by one that does not.
		return up, &sessionError{fmt.Errorf("the server no longer opens %s, and %s passes GSO packets whole: restart sshvpn connect", wire.StreamChannelType, "the local device")}
	}
	channel, err := sshchan.NewDevice(sc, ch, sshchan.DeviceConfig{Framed: framed, Mode: c.Mode, MTU: t.local.MTU(), GSO: relay.GSO(t.local),
		PeerVersion: sc.ServerVersion(), In: &t.in, Log: t.log})
	if err != nil {
		return up, err
	}
	t.log.Info("tunnel up", "mode", c.Mode, "server", string(sc.ServerVersion()), "channel", wire.TunnelChannelType(framed))
	t.log.Debug("tunnel offloads", "gso", relay.GSO(t.local))
	c.state.up(sc.ServerVersion(), wire.TunnelChannelType(framed), cfg)
	t.noTunnel = ""
	t.announce()
	if !stopLeave() {
		return up, ctx.Err() // ctx ended while the tunnel came up: gone already
	}
	return time.Now(), t.carry(ctx, sc, channel, leave)
}

// announce marks the run as up, and tells Client.Up the first time.
func (t *tunnel) announce() {
	t.everUp = true
	t.client.onState(Up, nil)
	if c := t.client; c.Up != nil && !t.announced {
		t.announced = true
		c.loop.hook("Up", c.Up)
	}
}

// flowsOnly keeps a connection that has no tunnel up for its flows until it
// is lost or ctx ends. why is logged when it differs from the last
// connection's, so a reconnect loop does not repeat it.
func (t *tunnel) flowsOnly(ctx context.Context, sc *ssh.Client, why string, stopLeave func() bool, leave func()) (time.Time, error) {
	if why != t.noTunnel {
		// Not a warning: against a stock sshd this is the usual case, and
		// TCP, what most proxied traffic is, does not need the tunnel.
		t.log.Info("no tunnel on this connection: TCP flows go as direct-tcpip channels, UDP through the proxies is off", "why", why)
		t.noTunnel = why
	}
	if c := t.client; c.NoTunnel != nil {
		c.loop.hook("NoTunnel", func() { c.NoTunnel(why) })
	}
	t.log.Info("connection up", "server", string(sc.ServerVersion()))
	t.client.state.up(sc.ServerVersion(), "", nil)
	t.announce()
	if !stopLeave() {
		return time.Time{}, ctx.Err()
	}
	return time.Now(), t.carry(ctx, sc, nil, leave)
}

// open opens the tunnel's channel: the framed stream toward an sshvpn
// gateway, tun@openssh.com toward any other server and toward an sshvpn
// too old to know the framed one, which says so by rejecting its type.
func (t *tunnel) open(sc *ssh.Client) (ch ssh.Channel, reqs <-chan *ssh.Request, framed bool, err error) {
	c := t.client
	req := wire.OpenRequest{Mode: c.Mode, Unit: c.Unit}
	if sshchan.PeerOf(sc.ServerVersion()) == sshchan.SSHVPN {
		ch, reqs, err = sc.OpenChannel(wire.StreamChannelType, wire.StreamOpen{OpenRequest: req, GSO: c.GSO}.Marshal())
		if oe, ok := errors.AsType[*ssh.OpenChannelError](err); !ok || oe.Reason != ssh.UnknownChannelType {
			return ch, reqs, err == nil, err
		}
		t.log.Info("the gateway does not know the framed channel; opening " + wire.ChannelType)
	}
	ch, reqs, err = sc.OpenChannel(wire.ChannelType, req.Marshal())
	return ch, reqs, false, err
}

// refusal explains a refused tunnel. A stock sshd refuses with no reason
// worth reading ("open failed"), and the cause is nearly always on the
// server: PermitTunnel, or a login that may not make a tun device.
func refusal(mode relay.Mode, server []byte, err error) error {
	if _, ok := errors.AsType[*ssh.OpenChannelError](err); !ok {
		return fmt.Errorf("open %s tunnel: %w", mode, err)
	}
	if sshchan.PeerOf(server) == sshchan.SSHVPN {
		return fmt.Errorf("the sshvpn gateway refused the %s tunnel: %w", mode, err)
	}
	kind := "point-to-point"
	if mode == relay.Ethernet {
		kind = "ethernet"
	}
	return fmt.Errorf("open %s tunnel: %w: the server needs PermitTunnel yes (or %s) in sshd_config, "+
		"a login as root or as the owner of a persistent %s device there "+
		"(ip tuntap add NAME mode %s user USER, then -w any:N for its unit N), and that unit free",
		mode, err, kind, devKind(mode), devKind(mode))
}

func devKind(m relay.Mode) string {
	if m == relay.Ethernet {
		return "tap"
	}
	return "tun"
}

// transientRefusal tells a refusal that may pass (the unit busy, the
// server short of resources) from a policy that will not.
func transientRefusal(err error) bool {
	oe, ok := errors.AsType[*ssh.OpenChannelError](err)
	return ok && (oe.Reason == ssh.ConnectionFailed || oe.Reason == ssh.ResourceShortage)
}

// tunnelConfig waits for an sshvpn gateway's configuration among the
// channel's requests, answering any other that wants a reply with a
// failure. A stock sshd sends none and is not waited for.
func tunnelConfig(ctx context.Context, sc *ssh.Client, framed bool, reqs <-chan *ssh.Request) (*relay.TunnelConfig, error) {
	if !framed && sshchan.PeerOf(sc.ServerVersion()) != sshchan.SSHVPN {
		return nil, nil
	}
	deadline := time.After(configWait)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			return nil, fmt.Errorf("the sshvpn gateway sent no %s within %v", wire.TunnelConfigRequest, configWait)
		case r, ok := <-reqs:
			if !ok {
				return nil, errors.New("the gateway closed the tunnel before sending its configuration")
			}
			if r.Type != wire.TunnelConfigRequest {
				if r.WantReply {
					r.Reply(false, nil)
				}
				continue
			}
			cfg, err := wire.ParseTunnelConfig(r.Payload)
			return &cfg, err
		}
	}
}

// setup makes the local device and starts the Pump on the first tunnel,
// and on later ones applies what changed in the gateway's configuration
// (a new address when the old session still holds the previous one).
func (t *tunnel) setup(ctx context.Context, cfg *relay.TunnelConfig) error {
	if t.local != nil {
		if t.client.Update != nil && cfg != nil {
			if err := t.client.Update(cfg); err != nil {
				// The device half follows the gateway: another
				// session may bring it back in step.
				return &sessionError{fmt.Errorf("apply the gateway's new configuration: %w", err)}
			}
		}
		return nil
	}
	local, err := t.client.Setup(cfg)
	if err != nil {
		return err
	}
	t.start(ctx, local)
	return nil
}

// watch waits, answering probes, until ctx ends (nil), the connection is
// lost, the attached channel fails or the Pump stops.
func (t *tunnel) watch(ctx context.Context, lost <-chan error, a *attachment) error {
	var attached <-chan struct{}
	if a != nil {
		attached = a.done
	}
	t.client.loop.wait(time.Time{})
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.client.loop.probes():
		case err := <-lost:
			return &sessionError{err}
		case <-attached:
			if errors.Is(a.err, net.ErrClosed) { // the Pump stopped and closed the remote
				return t.stopped()
			}
			return &sessionError{fmt.Errorf("tunnel channel: %w", a.err)}
		case <-t.pumpDone: // nil, never ready, before the first tunnel
			return t.stopped()
		}
	}
}

// closeWithin bounds, for Probe, leaving a connection: a disconnect
// message, closing the channel and the connection, and waiting for the
// keepalive to end.
const closeWithin = 30 * time.Second

// carry attaches the channel to the remote side until the connection, the
// channel or the local device fails, or ctx ends. Every goroutine it starts
// has ended when it returns.
func (t *tunnel) carry(ctx context.Context, sc *ssh.Client, channel relay.Device, leave func()) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	lost := make(chan error, 2) // the keepalive and the connection may both report
	if t.client.KeepAlive != nil {
		wg.Go(func() {
			if err := t.client.KeepAlive(ctx, sc); err != nil && ctx.Err() == nil {
				lost <- fmt.Errorf("server not answering: %w", err)
			}
		})
	}
	wg.Go(func() {
		err := sc.Wait()
		if err == nil {
			err = errors.New("the server closed the connection")
		}
		lost <- err
	})
	// Without a channel (a connection for flows only) nothing is
	// attached, and a Pump, if one runs, keeps waiting for the next one.
	var a *attachment
	if channel != nil {
		a = t.remote.attach(channel)
	}
	err := t.watch(ctx, lost, a)
	t.client.loop.begin("closing the connection", closeWithin)
	if ctx.Err() != nil {
		// The user is leaving: SSH_MSG_DISCONNECT, as ssh sends it, so
		// the server tears down a tunnel the user ended rather than one it
		// lost. It goes before detach closes the channel: like ssh, send
		// no SSH_MSG_CHANNEL_CLOSE first, which sshd answers with
		// shutdown(2) on its tun fd and "Socket operation on non-socket".
		leave()
	}
	if a != nil {
		t.remote.detach(a, errors.New("session ended"))
	}
	cancel()
	sc.Close() // ends sc.Wait and a keepalive request in flight
	wg.Wait()
	attrs := []any{"in", t.in.Snapshot(), "out", t.out.Snapshot()}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	t.log.Info("session ended", attrs...)
	return err
}

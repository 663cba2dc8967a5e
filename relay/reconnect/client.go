package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Client keeps one tunnel up from the client side: it dials, opens a
// tun@openssh.com channel, learns the tunnel's configuration from an sshvpn
// gateway, and pumps packets between the channel and the local device; when
// the connection dies it dials again with capped, jittered exponential
// backoff. The local device stays in place across reconnects, so
// applications see a pause, not a reset.
type Client struct {
	// Dial connects and authenticates. Its errors are final unless
	// Retryable says otherwise.
	Dial func(ctx context.Context) (*ssh.Client, error)
	// Retryable reports whether a Dial error may pass (the network, the
	// server restarting) rather than need the user (a refused key, a
	// changed host key).
	Retryable func(error) bool
	// KeepAlive watches a connection until ctx ends; an error means the
	// server stopped answering. Nil: no keepalives.
	KeepAlive func(ctx context.Context, c *ssh.Client) error
	Mode      Mode
	Unit      uint32 // the remote unit, AnyUnit for any
	// Setup makes and configures the local device, once, when the first
	// tunnel is up, with what the gateway said (nil from a stock sshd):
	// until then nothing on the machine has changed. Each session borrows
	// the device; Run closes it when it returns.
	Setup func(*TunnelConfig) (LocalDevice, error)
	// Update applies a later tunnel's configuration to the device Setup
	// made; nil to keep the first one.
	Update func(*TunnelConfig) error
	Log    *slog.Logger

	local   LocalDevice
	upSince time.Time // when the current session's tunnel came up
}

// LocalDevice is the client's own device: a Device that can also stop a
// blocked Read without closing, so sessions can borrow it in turn.
type LocalDevice interface {
	Device
	Lender
}

// Lender is a Device that can stop a blocked Read without closing: Client
// lends it to one session after another.
type Lender interface {
	SetReadDeadline(time.Time) error
}

// Backoff bounds: the first retry comes after about minBackoff, later ones
// double up to maxBackoff, each drawn between half and all of that.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
	// configWait is how long an sshvpn gateway has to send TunnelConfig.
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

// Run keeps the tunnel up until ctx ends (it returns nil) or an error that
// retrying cannot fix.
func (c *Client) Run(ctx context.Context) error {
	defer func() {
		if c.local != nil {
			c.local.Close()
		}
	}()
	for attempt := 0; ; attempt++ {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !c.retryable(err) {
			return err
		}
		if !c.upSince.IsZero() && time.Since(c.upSince) > stableAfter {
			attempt = 0 // that tunnel lived: start the backoff over
		}
		c.upSince = time.Time{}
		wait := backoff(attempt)
		c.Log.Warn("tunnel down; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// sessionError marks a failure after the tunnel was up: always worth a
// reconnect.
type sessionError struct{ err error }

func (e *sessionError) Error() string { return e.err.Error() }
func (e *sessionError) Unwrap() error { return e.err }

func (c *Client) retryable(err error) bool {
	if _, ok := errors.AsType[*sessionError](err); ok {
		return true
	}
	return c.Retryable != nil && c.Retryable(err)
}

// dialTimeout bounds one connection's TCP connect, handshake and login: a
// server that accepts and then stalls must not hold a reconnect forever.
const dialTimeout = 30 * time.Second

// session runs one connection from dial to loss.
func (c *Client) session(ctx context.Context) error {
	c.Log.Info("connecting")
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	sc, err := c.Dial(dctx)
	cancel()
	if err != nil {
		return err
	}
	defer sc.Close()
	ch, reqs, err := sc.OpenChannel(ChannelType, ssh.Marshal(tunnelOpen{Mode: uint32(c.Mode), Unit: c.Unit}))
	if err != nil {
		err = fmt.Errorf("open %s tunnel: %w", c.Mode, err)
		if c.local != nil && transientRefusal(err) {
			// The server's last session may still hold the unit.
			return &sessionError{err}
		}
		return err
	}
	cfg, err := c.tunnelConfig(ctx, sc, reqs)
	go ssh.DiscardRequests(reqs)
	if err != nil {
		return &sessionError{err}
	}
	if err := c.setup(cfg); err != nil {
		ch.Close()
		return err
	}
	c.Log.Info("tunnel up", "mode", c.Mode, "server", string(sc.ServerVersion()))
	c.upSince = time.Now()
	return c.pump(ctx, sc, ch)
}

// transientRefusal tells a refusal that may pass (the unit busy, the
// server short of resources) from a policy that will not.
func transientRefusal(err error) bool {
	oe, ok := errors.AsType[*ssh.OpenChannelError](err)
	return ok && (oe.Reason == ssh.ConnectionFailed || oe.Reason == ssh.ResourceShortage)
}

// tunnelConfig waits for an sshvpn gateway's TunnelConfig; a stock sshd
// sends none.
func (c *Client) tunnelConfig(ctx context.Context, sc *ssh.Client, reqs <-chan *ssh.Request) (*TunnelConfig, error) {
	if !isSSHVPN(sc.ServerVersion()) {
		return nil, nil
	}
	cfg, err := WaitTunnelConfig(ctx, reqs, configWait)
	if err == nil && cfg == nil {
		err = fmt.Errorf("the sshvpn gateway sent no %s within %v", TunnelConfigRequest, configWait)
	}
	return cfg, err
}

// setup makes the local device on the first tunnel, and on later ones
// applies what changed in the gateway's configuration (a new address when
// the old session still holds the previous one).
func (c *Client) setup(cfg *TunnelConfig) error {
	if c.local != nil {
		if c.Update != nil && cfg != nil {
			return c.Update(cfg)
		}
		return nil
	}
	local, err := c.Setup(cfg)
	if err != nil {
		return err
	}
	c.local = local
	return nil
}

// pump moves packets until the connection or ctx ends.
func (c *Client) pump(ctx context.Context, sc *ssh.Client, ch ssh.Channel) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan error, 2) // the keepalive and the connection may both report
	if c.KeepAlive != nil {
		go func() {
			if err := c.KeepAlive(ctx, sc); err != nil {
				lost <- err
				sc.Close()
			}
		}()
	}
	go func() {
		lost <- sc.Wait()
		cancel()
	}()
	var in, out Counters
	channel := NewChannel(ch, ChannelConfig{Mode: c.Mode, MTU: c.local.MTU(), In: &in, Log: c.Log,
		Drift: WindowDrift(sc.ServerVersion())})
	local := lend(c.local)
	err := NewPump(local, channel, &out, &in, c.Log).Run(ctx)
	local.giveBack()
	sc.Close()
	if local.failed.Load() {
		return err // the local device broke: reconnecting cannot mend it
	}
	if err == nil {
		select {
		case err = <-lost:
		default:
		}
	}
	if err == nil {
		err = errors.New("the server closed the connection")
	}
	return &sessionError{err}
}

// lent is a Device on loan to one Pump: closing it ends the loan, not the
// device.
type lent struct {
	Device
	closed atomic.Bool
	failed atomic.Bool // the device itself failed, not the loan
}

func lend(d Device) *lent { return &lent{Device: d} }

func (l *lent) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if l.closed.Load() {
		return 0, errLoanEnded
	}
	n, err := l.Device.Read(bufs, sizes, offset)
	return n, l.check(err)
}

func (l *lent) Write(bufs [][]byte, offset int) (int, error) {
	if l.closed.Load() {
		return 0, errLoanEnded
	}
	n, err := l.Device.Write(bufs, offset)
	return n, l.check(err)
}

// check tells the end of the loan from a failure of the device itself.
func (l *lent) check(err error) error {
	switch {
	case err == nil || errors.Is(err, ErrDropped):
		return err
	case l.closed.Load():
		return errLoanEnded
	}
	l.failed.Store(true)
	return fmt.Errorf("local device: %w", err)
}

// Close wakes a blocked Read through the read deadline.
func (l *lent) Close() error {
	if !l.closed.Swap(true) {
		l.Device.(Lender).SetReadDeadline(time.Now())
	}
	return nil
}

// giveBack readies the device for the next loan.
func (l *lent) giveBack() { l.Device.(Lender).SetReadDeadline(time.Time{}) }

// errLoanEnded reads as a clean end to Pump.
var errLoanEnded = fmt.Errorf("tunnel session ended: %w", net.ErrClosed)

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
	Log   *slog.Logger

	local LocalDevice
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
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !c.retryable(err) {
			return err
		}
		if time.Since(start) > stableAfter {
			attempt = 0
		}
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

// session runs one connection from dial to loss.
func (c *Client) session(ctx context.Context) error {
	c.Log.Info("connecting")
	sc, err := c.Dial(ctx)
	if err != nil {
		return err
	}
	defer sc.Close()
	ch, reqs, err := sc.OpenChannel(ChannelType, ssh.Marshal(tunnelOpen{Mode: uint32(c.Mode), Unit: c.Unit}))
	if err != nil {
		return fmt.Errorf("open %s tunnel: %w", c.Mode, err)
	}
	var cfg *TunnelConfig
	if isSSHVPN(sc.ServerVersion()) {
		if cfg, err = WaitTunnelConfig(reqs, configWait); err != nil {
			return err
		}
	}
	go ssh.DiscardRequests(reqs)
	if c.local == nil {
		if c.local, err = c.Setup(cfg); err != nil {
			ch.Close()
			return err
		}
	}
	c.Log.Info("tunnel up", "mode", c.Mode, "server", string(sc.ServerVersion()))
	return &sessionError{c.pump(ctx, sc, ch)}
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
	if err == nil {
		select {
		case err = <-lost:
		default:
		}
	}
	if err == nil {
		err = errors.New("connection closed")
	}
	return err
}

// lent is a Device on loan to one Pump: closing it ends the loan, not the
// device.
type lent struct {
	Device
	closed atomic.Bool
}

func lend(d Device) *lent { return &lent{Device: d} }

func (l *lent) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if l.closed.Load() {
		return 0, errLoanEnded
	}
	n, err := l.Device.Read(bufs, sizes, offset)
	if err != nil && l.closed.Load() {
		return n, errLoanEnded
	}
	return n, err
}

func (l *lent) Write(bufs [][]byte, offset int) (int, error) {
	if l.closed.Load() {
		return 0, errLoanEnded
	}
	return l.Device.Write(bufs, offset)
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

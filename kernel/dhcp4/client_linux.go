//go:build linux

package dhcp4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// Retransmission: an exchange sends its message up to exchangeTries
// times, firstTimeout after the first and doubling (1+2+4+8 s). RFC 2131
// suggests 4 s first; a tunnel's first frames are often lost while it
// attaches, and a second DISCOVER a second later costs nothing.
const (
	firstTimeout  = time.Second
	exchangeTries = 4
	// maxAcquireWait bounds the wait between failed attempts to get a
	// lease, which doubles from firstTimeout.
	maxAcquireWait = 30 * time.Second
	// minRetryWait is the least wait between a renewal's (or a
	// rebinding's) unanswered exchanges: RFC 2131 says half the time left,
	// at least 60 s, for leases of hours; a tunnel's may be minutes.
	minRetryWait = time.Second
)

// requested are the options the client asks for beyond nclient4's (mask,
// router, domain name, name servers).
var requested = dhcpv4.WithRequestedOptions(dhcpv4.OptionBroadcastAddress, dhcpv4.OptionDNSDomainSearchList,
	dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue)

// Client is one interface's DHCPv4 client.
type Client struct {
	ifname string
	conn   *conn
	nc     *nclient4.Client
	usable func(*Lease) error
	log    *slog.Logger

	mu    sync.Mutex
	offer *dhcpv4.DHCPv4 // the OFFER the lease came from
	ack   *dhcpv4.DHCPv4 // the last ACK: the lease held, nil for none
	lease *Lease         // ack, read
}

// Open opens the client's socket on the interface ifname, which must be
// up; it needs no address. usable, if not nil, refuses a lease the host
// must not take, saying why: the client then does without one and asks
// again later, as for an ACK it cannot read.
func Open(ifname string, usable func(*Lease) error, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("DHCP client: %w", err)
	}
	conn, err := listen(ifi)
	if err != nil {
		return nil, err
	}
	nc, err := nclient4.NewWithConn(conn, ifi.HardwareAddr, nclient4.WithTimeout(firstTimeout), nclient4.WithRetry(exchangeTries))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("DHCP client on %s: %w", ifname, err)
	}
	return &Client{ifname: ifname, conn: conn, nc: nc, usable: usable, log: log.With("device", ifname)}, nil
}

// Close closes the client's socket; a lease held is not released (see
// Release).
func (c *Client) Close() error { return c.nc.Close() }

// Run keeps a lease until ctx ends, and returns ctx's error then. apply is
// called with every lease granted, the first and each renewal (which
// usually keeps the address), and with nil when the lease is lost: refused (NAK) or
// expired, after which Run asks again. An error from apply ends Run.
func (c *Client) Run(ctx context.Context, apply func(*Lease) error) error {
	for {
		if err := c.acquire(ctx); err != nil {
			return err
		}
		if err := c.applyLease(apply); err != nil {
			return err
		}
		if err := c.keep(ctx, apply); err != nil {
			return err
		}
	}
}

// acquire gets a lease, asking until one is granted or ctx ends.
func (c *Client) acquire(ctx context.Context) error {
	wait := firstTimeout
	for attempt := 1; ; attempt++ {
		sent := time.Now()
		l, err := c.nc.Request(ctx, requested)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			// An ACK the client cannot use is not declined: RFC 2131
			// 4.4.1 keeps DHCPDECLINE for an address found in use, and
			// the server would hold the address back from everyone,
			// while the next attempt drew another from the pool.
			var lease *Lease
			if lease, err = c.read(l.ACK, l.Offer, sent); err == nil {
				c.hold(l.Offer, l.ACK, lease)
				return nil
			}
		}
		if _, nak := errors.AsType[*nclient4.ErrNak](err); !nak {
			// A NAK to a REQUEST for an OFFER is a race between servers:
			// ask again at once. Anything else waits, an unusable ACK
			// too: the server would grant the same again.
			c.log.Warn("no DHCP lease yet; asking again", "attempt", attempt, "err", err, "in", wait)
			if !sleep(ctx, wait) {
				return ctx.Err()
			}
			wait = min(2*wait, maxAcquireWait)
		}
	}
}

// read reads the lease an ACK grants and checks that the host may take
// it.
func (c *Client) read(ack, offer *dhcpv4.DHCPv4, sent time.Time) (*Lease, error) {
	l, err := leaseOf(ack, offer, sent, c.log)
	if err != nil {
		return nil, fmt.Errorf("the DHCP server's ACK is unusable: %w", err)
	}
	if c.usable != nil {
		if err := c.usable(l); err != nil {
			return nil, fmt.Errorf("DHCP lease %s refused: %w", l, err)
		}
	}
	return l, nil
}

// keep renews the lease held, from T1 with its server and from T2 with
// any, and returns nil once it is lost (nil given to apply), or ctx's
// error.
func (c *Client) keep(ctx context.Context, apply func(*Lease) error) error {
	for {
		c.mu.Lock()
		l := c.lease
		c.mu.Unlock()
		if !sleep(ctx, time.Until(l.RenewAt())) {
			return ctx.Err()
		}
		server := &net.UDPAddr{IP: l.Server.AsSlice(), Port: nclient4.ServerPort}
		ack, sent := c.extend(ctx, server, l.RebindAt(), "renew")
		if ack == nil && ctx.Err() == nil {
			c.log.Warn("the DHCP server does not renew the lease; asking any server", "server", l.Server, "expires", l.ExpiresAt().Format(time.TimeOnly))
			ack, sent = c.extend(ctx, nclient4.DefaultServers, l.ExpiresAt(), "rebind")
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var lease *Lease
		why := "it expired unrenewed"
		switch {
		case ack != nil && ack.MessageType() == dhcpv4.MessageTypeAck:
			var err error
			if lease, err = c.read(ack, c.offer, sent); err != nil {
				why = err.Error()
			}
		case ack != nil:
			why = "the server refused it (NAK)"
		}
		if lease == nil {
			c.log.Warn("DHCP lease lost; asking for a new one", "address", l.Addr, "why", why)
			c.drop()
			if err := apply(nil); err != nil {
				return err
			}
			return nil
		}
		c.hold(c.offer, ack, lease)
		if err := c.applyLease(apply); err != nil {
			return err
		}
	}
}

// extend asks for the lease held to go on, sending to dest until an ACK
// or NAK comes or until passes; nil when none came. sent is when the
// request answered went out, from which the new lease counts.
func (c *Client) extend(ctx context.Context, dest *net.UDPAddr, until time.Time, what string) (reply *dhcpv4.DHCPv4, sent time.Time) {
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	for {
		c.mu.Lock()
		ack := c.ack
		c.mu.Unlock()
		xid, err := dhcpv4.GenerateTransactionID()
		if err != nil {
			c.log.Warn("DHCP "+what+" not sent", "err", err)
			return nil, sent
		}
		req, err := dhcpv4.NewRenewFromAck(ack, requested, dhcpv4.WithTransactionID(xid),
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize)))
		if err != nil {
			c.log.Warn("DHCP "+what+" not sent", "err", err)
			return nil, sent
		}
		sent = time.Now()
		resp, err := c.nc.SendAndRead(ctx, dest, req, nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak))
		if err == nil {
			return resp, sent
		}
		c.log.Debug("DHCP "+what+" unanswered", "to", dest, "err", err)
		if !sleep(ctx, max(time.Until(until)/2, minRetryWait)) {
			return nil, sent
		}
	}
}

// hold makes the lease the one held, and its address the source of what
// the client sends from now on.
func (c *Client) hold(offer, ack *dhcpv4.DHCPv4, l *Lease) {
	c.mu.Lock()
	c.offer, c.ack, c.lease = offer, ack, l
	c.mu.Unlock()
	c.conn.setSource(l.Addr.Addr())
}

// drop forgets the lease held.
func (c *Client) drop() {
	c.mu.Lock()
	c.offer, c.ack, c.lease = nil, nil, nil
	c.mu.Unlock()
	c.conn.setSource(netip.Addr{})
}

// applyLease hands the lease held to apply.
func (c *Client) applyLease(apply func(*Lease) error) error {
	c.mu.Lock()
	l := c.lease
	c.mu.Unlock()
	return apply(l)
}

// Release gives the lease held back to the server that granted it
// (DHCPRELEASE) and forgets it. Call it once Run has returned. It reports
// whether a lease was held.
func (c *Client) Release() (released bool, err error) {
	c.mu.Lock()
	ack, l := c.ack, c.lease
	c.mu.Unlock()
	if ack == nil {
		return false, nil
	}
	msg, err := dhcpv4.NewReleaseFromACK(ack, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(l.Server.AsSlice())))
	if err != nil {
		return false, fmt.Errorf("DHCP release on %s: %w", c.ifname, err)
	}
	if _, err := c.conn.WriteTo(msg.ToBytes(), &net.UDPAddr{IP: l.Server.AsSlice(), Port: nclient4.ServerPort}); err != nil {
		return false, fmt.Errorf("DHCP release on %s: %w", c.ifname, err)
	}
	c.drop()
	return true, nil
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

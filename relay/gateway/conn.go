package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// connState is one authenticated client connection.
type connState struct {
	srv  *Server
	conn *ssh.ServerConn
	log  *slog.Logger
	wg   sync.WaitGroup

	mu       sync.Mutex
	tunnels  []Device
	channels int           // open tunnels and sessions, for maxChannels
	opened   chan struct{} // closed when the first tunnel is up
	openOnce sync.Once
}

// maxChannels bounds what one authenticated client may hold open at once
// (sshd's MaxSessions is 10): each tunnel is a kernel device and buffers.
const maxChannels = 10

func (cs *connState) serve(ctx context.Context, chans <-chan ssh.NewChannel) {
	cs.opened = make(chan struct{})
	for nc := range chans {
		switch t := nc.ChannelType(); t {
		case ChannelType, "session":
			if !cs.take() {
				nc.Reject(ssh.ResourceShortage, fmt.Sprintf("too many channels: this gateway allows %d per connection", maxChannels))
				continue
			}
			cs.wg.Add(1)
			go func() {
				defer cs.wg.Done()
				defer cs.give()
				if t == ChannelType {
					cs.tunnel(ctx, nc)
				} else {
					cs.session(nc)
				}
			}()
		default:
			nc.Reject(ssh.UnknownChannelType, fmt.Sprintf("sshvpn opens no %q channels: it carries tunnels (ssh -w) and a status session", t))
		}
	}
	cs.wg.Wait()
}

// tunnelOpen is the type-specific data of a tun@openssh.com open
// (PROTOCOL §2.3).
type tunnelOpen struct {
	Mode uint32
	Unit uint32
}

func (cs *connState) tunnel(ctx context.Context, nc ssh.NewChannel) {
	var req tunnelOpen
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		nc.Reject(ssh.ConnectionFailed, "tunnel refused: malformed tun@openssh.com open request")
		return
	}
	opts, _ := cs.conn.Permissions.ExtraData[keyOptionsKey{}].(*KeyOptions)
	mode := Mode(req.Mode)
	unit, err := checkTunnel(cs.srv.cfg.PermitTunnel, mode, req.Unit, opts)
	if err != nil {
		cs.log.Warn("tunnel refused", "mode", mode, "unit", unitString(req.Unit), "why", err)
		nc.Reject(ssh.Prohibited, err.Error())
		return
	}
	dev, err := cs.srv.cfg.Open(ctx, TunnelRequest{Mode: mode, Unit: unit, User: cs.conn.User(), Remote: cs.conn.RemoteAddr()})
	if err != nil {
		cs.log.Error("tunnel failed", "mode", mode, "unit", unitString(unit), "err", err)
		nc.Reject(ssh.ConnectionFailed, "tunnel failed on the gateway: "+err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		dev.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	if c, ok := dev.(Configurer); ok && isSSHVPN(cs.conn.ClientVersion()) {
		if err := sendTunnelConfig(ch, c.TunnelConfig()); err != nil {
			cs.log.Warn("cannot send the tunnel's configuration", "err", err)
		}
	}
	cs.run(ctx, ch, dev, mode)
}

// isSSHVPN reports whether the peer is sshvpn, which understands sshvpn's
// own requests; stock OpenSSH is sent nothing it does not know.
func isSSHVPN(version []byte) bool {
	return strings.HasPrefix(string(version), "SSH-2.0-sshvpn")
}

// run pumps one tunnel until either side ends, then tears the device down.
func (cs *connState) run(ctx context.Context, ch ssh.Channel, dev Device, mode Mode) {
	var in, out Counters
	c := NewChannel(ch, ChannelConfig{
		Mode: mode, MTU: dev.MTU(), In: &in, Log: cs.log,
		Drift: WindowDrift(cs.conn.ClientVersion()),
	})
	cs.add(dev)
	log := cs.log.With("tunnel", describeShort(dev))
	log.Info("tunnel up", "mode", mode)
	// The device is the pump's first side because the pump closes its
	// sides in order, and closing the channel can wait behind a write to a
	// stalled client: the device and its routes must go at once.
	err := NewPump(dev, c, &out, &in, log).Run(ctx)
	c.Close()
	// The pump closed both already; this Close covers a pump that never ran.
	if cerr := dev.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	cs.remove(dev)
	i, o := in.Snapshot(), out.Snapshot()
	log.Info("tunnel down", "err", err,
		"in.packets", i.Packets, "in.bytes", i.Bytes, "in.drops", i.Drops,
		"out.packets", o.Packets, "out.bytes", o.Bytes, "out.drops", o.Drops)
}

// take counts one more open channel, unless the client holds maxChannels.
func (cs *connState) take() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.channels >= maxChannels {
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

func (cs *connState) add(d Device) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.tunnels = append(cs.tunnels, d)
	cs.openOnce.Do(func() { close(cs.opened) })
}

func (cs *connState) remove(d Device) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for i, t := range cs.tunnels {
		if t == d {
			cs.tunnels = append(cs.tunnels[:i], cs.tunnels[i+1:]...)
			break
		}
	}
}

// status is the text the session channel shows.
func (cs *connState) status() string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.tunnels) == 0 {
		return "sshvpn: no tunnel is open on this connection. Ask for one with ssh -w any -o Tunnel=point-to-point (or ethernet).\n"
	}
	var b strings.Builder
	for _, t := range cs.tunnels {
		if d, ok := t.(Describer); ok {
			b.WriteString(d.Describe())
		} else {
			fmt.Fprintf(&b, "sshvpn: tunnel up (MTU %d)\n", t.MTU())
		}
	}
	return b.String()
}

func describeShort(d Device) string {
	if n, ok := d.(interface{ Name() string }); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", d)
}

// session serves a session channel: sshvpn runs no commands, it shows the
// tunnel's status and keeps the session open, so that `ssh -w any gw` works
// without -N.
func (cs *connState) session(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	pty := false
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			pty = true
			req.Reply(true, nil)
		case "shell", "exec":
			req.Reply(true, nil)
			cs.wg.Add(1)
			go func() {
				defer cs.wg.Done()
				cs.greet(ch, pty)
			}()
		case "env", "window-change":
			req.Reply(true, nil)
		default:
			req.Reply(false, nil)
		}
	}
}

// greetWait is how long the status waits for the tunnel: ssh opens the
// tunnel before the session, but the two are served concurrently.
const greetWait = 2 * time.Second

func (cs *connState) greet(ch ssh.Channel, pty bool) {
	select {
	case <-cs.opened:
	case <-time.After(greetWait):
	}
	text := cs.status() + "This session runs no command; the tunnel stays up while it is open."
	if pty {
		text += " Press Ctrl-D to close it."
	}
	text += "\n"
	if pty {
		text = strings.ReplaceAll(text, "\n", "\r\n")
	}
	ch.Write([]byte(text))
	if !pty {
		// Without a terminal the client's stdin may well be /dev/null:
		// its EOF must not end the tunnel; the client closes the channel.
		// Whatever it types is read and dropped so it never fills the
		// window.
		io.Copy(io.Discard, ch)
		return
	}
	waitForHangup(ch)
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
	ch.Close()
}

// waitForHangup reads a terminal session's input until Ctrl-C, Ctrl-D or
// its end.
func waitForHangup(ch ssh.Channel) {
	buf := make([]byte, 256)
	for {
		n, err := ch.Read(buf)
		if err != nil || strings.ContainsAny(string(buf[:n]), "\x03\x04") {
			return
		}
	}
}

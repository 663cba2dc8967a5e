package sshclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay/sshchan"
)

// ClientVersion is the SSH identification string sshvpn sends.
const ClientVersion = "SSH-2.0-sshvpn"

// maxJumpDepth bounds ProxyJump chains, including chains that a hop's own
// ProxyJump extends (and loops among them).
const maxJumpDepth = 16

// Dialer connects and authenticates like ssh. The zero value works: no
// prompts, messages discarded, agent at $SSH_AUTH_SOCK.
type Dialer struct {
	// Stderr receives what ssh prints: host key warnings, "Permanently
	// added", and prompts. nil discards.
	Stderr io.Writer
	// Prompt asks for passphrases and for StrictHostKeyChecking=ask
	// confirmations. nil means there is no terminal: encrypted keys are
	// skipped and ask behaves like yes. BatchMode in the Config has the
	// same effect.
	Prompt Prompter
	// AgentSocket is the ssh-agent socket: "" reads SSH_AUTH_SOCK, "none"
	// disables the agent.
	AgentSocket string
	// Log receives debug notes (skipped keys, agent errors); nil discards.
	Log *slog.Logger
	// Control, when set, is applied to the TCP socket Dial opens to the
	// server or first jump host. A full tunnel marks it so that it keeps
	// the path outside the tunnel.
	Control func(network, address string, c syscall.RawConn) error

	keys  keyCache  // decrypted keys, kept across dials
	names nameCache // the addresses each host name last resolved to
	// lookup resolves host names; nil is net.DefaultResolver's. Tests
	// make it fail.
	lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)
}

func (d *Dialer) stderr() io.Writer {
	if d.Stderr == nil {
		return io.Discard
	}
	return d.Stderr
}

func (d *Dialer) logger() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

func (d *Dialer) agentSocket() string {
	switch d.AgentSocket {
	case "none":
		return ""
	case "":
		return os.Getenv("SSH_AUTH_SOCK")
	}
	return d.AgentSocket
}

// Dial connects to cfg.HostName:cfg.Port, through each ProxyJump hop in
// order, verifies the host key and authenticates. Each hop is resolved
// with its own configuration, as the ssh that ProxyJump runs would resolve
// it. Closing the returned client closes the hops too. ctx bounds the
// whole setup; cfg.ConnectTimeout bounds each TCP connection.
func (d *Dialer) Dial(ctx context.Context, cfg *Config) (*ssh.Client, error) {
	return d.dial(ctx, cfg, 0)
}

func (d *Dialer) dial(ctx context.Context, cfg *Config, depth int) (*ssh.Client, error) {
	if depth > maxJumpDepth {
		return nil, fmt.Errorf("more than %d ProxyJump hops: is there a loop?", maxJumpDepth)
	}
	start := time.Now()
	conn, via, err := d.connect(ctx, cfg, depth)
	if err != nil {
		return nil, err
	}
	timeout := cfg.ConnectTimeout
	if timeout > 0 && via == nil {
		// As ssh: the connect's share is spent; what is left bounds the
		// banner exchange and the rest.
		timeout = max(timeout-time.Since(start), time.Millisecond)
	}
	client, err := d.handshake(ctx, conn, cfg, timeout)
	if err != nil {
		conn.Close()
		if via != nil {
			via.Close()
		}
		return nil, err
	}
	if sshchan.PeerOf(client.ServerVersion()) == sshchan.SSHVPN {
		noQuickAck(conn)
	}
	if via != nil {
		// The hop lives exactly as long as the connection it carries.
		go func() {
			client.Wait()
			via.Close()
		}()
	}
	return client, nil
}

// connect opens the transport: TCP, or a direct-tcpip channel through the
// last ProxyJump hop (which is itself dialed recursively).
func (d *Dialer) connect(ctx context.Context, cfg *Config, depth int) (net.Conn, *ssh.Client, error) {
	addr := net.JoinHostPort(cfg.HostName, strconv.Itoa(cfg.Port))
	hops, err := ParseJump(cfg.ProxyJump)
	if err != nil {
		return nil, nil, fmt.Errorf("ProxyJump: %w", err)
	}
	if len(hops) == 0 {
		conn, err := d.dialTCP(ctx, cfg)
		if err != nil {
			return nil, nil, connectError(cfg, err)
		}
		return quickAck(conn), nil, nil
	}
	hopCfg, err := d.resolveHop(cfg, hops)
	if err != nil {
		return nil, nil, err
	}
	via, err := d.dial(ctx, hopCfg, depth+1)
	if err != nil {
		return nil, nil, fmt.Errorf("jump host %s: %w", hopCfg.OriginalHost, err)
	}
	conn, err := via.DialContext(ctx, "tcp", addr)
	if err != nil {
		via.Close()
		return nil, nil, fmt.Errorf("connect to %s through jump host %s: %w", addr, hopCfg.OriginalHost, err)
	}
	return conn, via, nil
}

// resolveHop resolves the last hop the way ssh.c builds its jump command:
// ssh [-l user] [-p port] [-J earlier,hops] [-F file] host.
func (d *Dialer) resolveHop(cfg *Config, hops []JumpHost) (*Config, error) {
	parts := strings.Split(cfg.ProxyJump, ",")
	rest := strings.Join(parts[:len(parts)-1], ",")
	o := hops[len(hops)-1].Options(cfg.configFile, rest)
	e := cfg.env
	if e.home == "" {
		var err error
		if e, err = currentEnv(); err != nil {
			return nil, err
		}
	}
	hop, err := resolve(o, e)
	if err != nil {
		return nil, fmt.Errorf("jump host %s: %w", o.Destination, err)
	}
	for _, n := range hop.Notes {
		d.logger().Debug("ssh_config", "host", o.Destination, "note", n)
	}
	if hop.HostName == cfg.HostName && hop.Port == cfg.Port && hop.User == cfg.User {
		return nil, fmt.Errorf("jumphost loop via %s", o.Destination)
	}
	return hop, nil
}

// handshake runs the SSH handshake and authentication on conn. As in ssh,
// ConnectTimeout bounds it (the TCP connect's share already spent); time
// spent waiting for the user at a prompt does not count.
func (d *Dialer) handshake(ctx context.Context, conn net.Conn, cfg *Config, timeout time.Duration) (*ssh.Client, error) {
	auth := newAuthenticator(cfg, d)
	defer auth.close()
	hk := newHostKeyChecker(cfg, d)
	bc := &bannerConn{Conn: sshchan.BufferReads(conn)}
	timer := newHandshakeTimer(timeout, conn)
	defer timer.stop()
	if auth.prompt != nil {
		auth.prompt = pausingPrompter{auth.prompt, timer}
	}
	if hk.prompt != nil {
		hk.prompt = pausingPrompter{hk.prompt, timer}
	}
	cc := &ssh.ClientConfig{
		Config:            ssh.Config{Ciphers: cfg.Ciphers, KeyExchanges: cfg.KeyExchanges, MACs: cfg.MACs},
		User:              cfg.User,
		Auth:              auth.methods(),
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(),
		ClientVersion:     ClientVersion,
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(bc, hk.addr, cc)
	if !stop() && err == nil {
		c.Close()
		err = ctx.Err()
	}
	if !timer.stop() && err == nil {
		c.Close()
		err = ErrTimedOut
	}
	if err != nil {
		switch {
		case timer.fired() && !bc.bannerSeen():
			// ssh's words, from ssh_exchange_identification.
			return nil, fmt.Errorf("%w during banner exchange", ErrTimedOut)
		case timer.fired():
			return nil, fmt.Errorf("%s@%s: %w during the key exchange or login", cfg.User, hk.display(), ErrTimedOut)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%s@%s: %w", cfg.User, hk.display(), ctx.Err())
		case isAuthFailure(err):
			return nil, &PermissionDeniedError{User: cfg.User, Host: cfg.HostName, err: err}
		case errors.Is(err, io.EOF) && !bc.bannerSeen():
			// sshd's MaxStartups, a TCP wrapper, or not an SSH server.
			//lint:ignore ST1005 ssh's words, capitalized as ssh prints them
			return nil, fmt.Errorf("Connection closed by %s: %w", remoteString(conn), err)
		}
		if u := errors.Unwrap(err); u != nil && strings.HasPrefix(err.Error(), "ssh: handshake failed: ") {
			err = u // x/crypto's framing says nothing the host does not
		}
		return nil, fmt.Errorf("%s@%s: %w", cfg.User, hk.display(), err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

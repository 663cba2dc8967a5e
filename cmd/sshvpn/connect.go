package main

import (
	"context"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/kernel"
	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/keepalive"
	"github.com/sshvpn/sshvpn/relay/reconnect"
	"github.com/sshvpn/sshvpn/relay/sshclient"
)

func connect(ctx context.Context, args []string, stderr io.Writer) error {
	// As ssh does, stop when the terminal goes.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	c, err := parseConnect(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.level.Level}))
	cfg, err := sshclient.Resolve(c.ssh)
	if err != nil {
		return err
	}
	for _, n := range cfg.Notes {
		log.Warn("ssh_config: ignored", "what", n)
	}
	mode, err := cfg.TunnelMode()
	if err != nil {
		return err
	}
	local, remote, err := cfg.TunnelUnits()
	if err != nil {
		return err
	}
	if err := kernel.CheckAccess(); err != nil {
		return err
	}
	d := &sshclient.Dialer{Stderr: stderr, Log: log}
	if tty, err := sshclient.OpenTTY(stderr); err == nil && !cfg.BatchMode {
		d.Prompt = tty
	}
	interval, count := cfg.ServerAliveInterval, cfg.ServerAliveCountMax
	if interval == 0 {
		interval = defaultKeepAlive
	}
	lc := kernel.LocalConfig{Mode: mode, Unit: local, MTU: c.mtu, Addrs: c.addrs, Routes: c.routes, Log: log}
	if len(c.peer) > 0 {
		lc.Peer = c.peer[0]
	}
	var dev *kernel.Local
	client := &reconnect.Client{
		Dial:      func(ctx context.Context) (*ssh.Client, error) { return d.Dial(ctx, cfg) },
		Retryable: sshclient.Retryable,
		KeepAlive: func(ctx context.Context, sc *ssh.Client) error {
			return keepalive.Watch(ctx, sc, interval, count)
		},
		Mode: mode,
		Unit: remote,
		Setup: func(gw *relay.TunnelConfig) (relay.Device, error) {
			l, err := kernel.OpenLocal(lc, gw)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			dev = l
			return l, nil
		},
		Update: func(gw *relay.TunnelConfig) error { return dev.Update(gw) },
		Log:    log.With("host", cfg.HostName, "port", cfg.Port),
	}
	return client.Run(ctx)
}

// defaultKeepAlive detects a dead gateway when ServerAliveInterval is not
// set: a VPN must notice a dead peer to reconnect, where an interactive ssh
// session can wait for the user.
const defaultKeepAlive = 15 * time.Second

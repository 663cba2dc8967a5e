package sshchantest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"

	"golang.org/x/crypto/ssh"

	"github.com/sshvpn/sshvpn/relay"
	"github.com/sshvpn/sshvpn/relay/wire"
)

// Client is a Peer that dialled: it opened the tunnel as ssh -w does.
type Client struct {
	*Peer
	SSH *ssh.Client // for a session beside the tunnel, as ssh without -N opens
}

// Dial runs an SSH client over conn, authenticating as user with key and
// accepting any host key, and opens a tun@openssh.com channel in mode for
// unit (relay.AnyUnit for any). The Peer owns conn from then on.
func Dial(conn net.Conn, user string, key ssh.Signer, pol Policy, mode relay.Mode, unit uint32) (*Client, error) {
	cfg := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // the test made the server
		ClientVersion:   pol.Version,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, conn.RemoteAddr().String(), cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("sshchantest: ssh to %s: %w", conn.RemoteAddr(), err)
	}
	client := ssh.NewClient(c, chans, reqs)
	ch, creqs, err := client.OpenChannel(wire.ChannelType, wire.OpenRequest{Mode: mode, Unit: unit}.Marshal())
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("sshchantest: open %s: %w", wire.ChannelType, err)
	}
	go ssh.DiscardRequests(creqs)
	p, err := newPeer(client.Conn, ch, pol, mode, client.ServerVersion())
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("sshchantest: %w", err)
	}
	return &Client{Peer: p, SSH: client}, nil
}

// Server is what Accept needs: who may log in, and the key it shows.
type Server struct {
	Authorized ssh.PublicKey // the only key let in
	HostKey    ssh.Signer    // nil: a fresh Ed25519 key
}

// Accept serves one SSH connection from ln as a server, and returns the
// Peer of the first tun@openssh.com channel the client opens; it refuses
// any other channel. The Peer owns the connection.
func (s Server) Accept(ln net.Listener, pol Policy) (*Peer, error) {
	cfg := &ssh.ServerConfig{
		ServerVersion: pol.Version,
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if !bytes.Equal(key.Marshal(), s.Authorized.Marshal()) {
				return nil, errors.New("not the authorized key")
			}
			return nil, nil
		},
	}
	hk := s.HostKey
	if hk == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if hk, err = ssh.NewSignerFromKey(k); err != nil {
			return nil, err
		}
	}
	cfg.AddHostKey(hk)
	conn, err := ln.Accept()
	if err != nil {
		return nil, fmt.Errorf("sshchantest: accept: %w", err)
	}
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("sshchantest: ssh from %s: %w", conn.RemoteAddr(), err)
	}
	go ssh.DiscardRequests(reqs) // keepalives get a failure, as from sshd
	for nc := range chans {
		if nc.ChannelType() != wire.ChannelType {
			nc.Reject(ssh.Prohibited, "sshchantest serves only "+wire.ChannelType)
			continue
		}
		req, err := wire.ParseOpenRequest(nc.ExtraData())
		if err != nil {
			nc.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			break
		}
		go ssh.DiscardRequests(creqs)
		go func() {
			for nc := range chans {
				nc.Reject(ssh.Prohibited, "sshchantest serves one tunnel")
			}
		}()
		p, err := newPeer(sc, ch, pol, req.Mode, sc.ClientVersion())
		if err != nil {
			sc.Close()
			return nil, fmt.Errorf("sshchantest: %w", err)
		}
		return p, nil
	}
	sc.Close()
	return nil, fmt.Errorf("sshchantest: %s closed the connection without opening a tunnel", conn.RemoteAddr())
}

package sshclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// maxPassphraseTries is ssh's number of passphrase prompts per key.
const maxPassphraseTries = 3

// authenticator provides ssh's publickey authentication: agent keys first
// (under IdentitiesOnly only those whose public half matches an identity
// file), then the identity files the agent did not already offer.
type authenticator struct {
	cfg       *Config
	agentSock string
	prompt    Prompter // nil: encrypted keys are skipped
	log       *slog.Logger
	keys      *keyCache

	mu    sync.Mutex
	agent net.Conn
}

func newAuthenticator(cfg *Config, d *Dialer) *authenticator {
	a := &authenticator{cfg: cfg, agentSock: d.agentSocket(), log: d.logger(), keys: &d.keys}
	if !cfg.BatchMode {
		a.prompt = d.Prompt
	}
	return a
}

// methods returns the auth methods. The callback runs when the server asks
// for publickey, and encrypted keys ask for their passphrase only when the
// server has accepted their public half.
func (a *authenticator) methods() []ssh.AuthMethod {
	return []ssh.AuthMethod{ssh.PublicKeysCallback(a.signers)}
}

// close ends the agent connection; call it after the handshake.
func (a *authenticator) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.agent != nil {
		a.agent.Close()
		a.agent = nil
	}
}

// signers orders keys as OpenSSH's pubkey_prepare does: agent keys that
// match a configured identity first, then (unless IdentitiesOnly) the
// agent's others, then the identity files the agent does not hold. With
// many keys in the agent, the configured one is tried before sshd's
// MaxAuthTries runs out.
func (a *authenticator) signers() ([]ssh.Signer, error) {
	ids := a.loadIdentities()
	var out []ssh.Signer
	offered := map[string]bool{}
	agent := a.agentSigners()
	for _, wantMatch := range []bool{true, false} {
		for _, s := range agent {
			blob := string(s.PublicKey().Marshal())
			if offered[blob] || hasPublicKey(ids, blob) != wantMatch || (!wantMatch && a.cfg.IdentitiesOnly) {
				continue
			}
			offered[blob] = true
			out = append(out, s)
		}
	}
	for _, id := range ids {
		if id.signer == nil || offered[string(id.pub.Marshal())] {
			continue
		}
		offered[string(id.pub.Marshal())] = true
		out = append(out, id.signer)
	}
	return out, nil
}

func hasPublicKey(ids []identity, blob string) bool {
	for _, id := range ids {
		if string(id.pub.Marshal()) == blob {
			return true
		}
	}
	return false
}

func (a *authenticator) agentSigners() []ssh.Signer {
	if a.agentSock == "" {
		return nil
	}
	conn, err := net.Dial("unix", a.agentSock)
	if err != nil {
		a.log.Debug("ssh-agent unavailable", "socket", a.agentSock, "err", err)
		return nil
	}
	a.mu.Lock()
	a.agent = conn
	a.mu.Unlock()
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		a.log.Debug("ssh-agent: list keys", "err", err)
		return nil
	}
	return signers
}

// identity is one identity file: its public half and, when usable, a
// signer (a lazySigner for encrypted keys).
type identity struct {
	path   string
	pub    ssh.PublicKey
	signer ssh.Signer
}

func (a *authenticator) loadIdentities() []identity {
	var ids []identity
	for _, path := range a.cfg.IdentityFiles {
		id, err := a.loadIdentity(path)
		if err != nil {
			a.log.Debug("identity file skipped", "path", path, "err", err)
		}
		if id.pub != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// loadIdentity reads one identity file. It may return a public key without
// a signer (and an error saying why): that key still selects agent keys
// under IdentitiesOnly.
func (a *authenticator) loadIdentity(path string) (identity, error) {
	id := identity{path: path, pub: readPublicKey(path + ".pub")}
	raw, err := os.ReadFile(path)
	if err != nil {
		return id, err
	}
	signer, err := ssh.ParsePrivateKey(raw)
	if err == nil {
		id.pub, id.signer = signer.PublicKey(), signer
		return id, nil
	}
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		return id, err
	}
	if missing.PublicKey != nil {
		id.pub = missing.PublicKey
	}
	switch {
	case id.pub == nil:
		return id, errors.New("encrypted key without a public half (add the .pub file beside it)")
	case a.prompt == nil:
		return id, errors.New("encrypted key and no terminal (or BatchMode) to ask for its passphrase")
	}
	id.signer = a.keys.get(path, id.pub, raw, a.prompt)
	return id, nil
}

// keyCache keeps a Dialer's encrypted keys once their passphrase was given,
// so that a reconnect, which may come while nobody watches the terminal,
// does not ask again.
type keyCache struct {
	mu   sync.Mutex
	keys map[string]*lazySigner
}

// get returns the lazySigner for path, the same one while the file is
// unchanged.
func (c *keyCache) get(path string, pub ssh.PublicKey, raw []byte, prompt Prompter) *lazySigner {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.keys[path]; ok && bytes.Equal(l.raw, raw) {
		return l
	}
	if c.keys == nil {
		c.keys = make(map[string]*lazySigner)
	}
	l := &lazySigner{path: path, pub: pub, raw: raw, prompt: prompt}
	c.keys[path] = l
	return l
}

func readPublicKey(path string) ssh.PublicKey {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(bytes.TrimSpace(b))
	if err != nil {
		return nil
	}
	return pub
}

// lazySigner decrypts its key on the first signature, which x/crypto/ssh
// asks for only after the server accepted the public key.
type lazySigner struct {
	path   string
	pub    ssh.PublicKey
	raw    []byte
	prompt Prompter

	mu     sync.Mutex
	signer ssh.AlgorithmSigner
}

var _ ssh.AlgorithmSigner = (*lazySigner)(nil)

func (l *lazySigner) PublicKey() ssh.PublicKey { return l.pub }

func (l *lazySigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := l.load()
	if err != nil {
		return nil, err
	}
	return s.Sign(rand, data)
}

func (l *lazySigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := l.load()
	if err != nil {
		return nil, err
	}
	return s.SignWithAlgorithm(rand, data, algorithm)
}

// load asks for the passphrase up to three times; an empty answer gives
// up, as in ssh. x/crypto/ssh then ends authentication with the error.
func (l *lazySigner) load() (ssh.AlgorithmSigner, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.signer != nil {
		return l.signer, nil
	}
	for range maxPassphraseTries {
		pass, err := l.prompt.ReadSecret(fmt.Sprintf("Enter passphrase for key '%s': ", l.path))
		if err != nil || pass == "" {
			break
		}
		s, err := ssh.ParsePrivateKeyWithPassphrase(l.raw, []byte(pass))
		if err != nil {
			continue
		}
		as, ok := s.(ssh.AlgorithmSigner)
		if !ok {
			return nil, fmt.Errorf("key %s: unsupported signer", l.path)
		}
		l.signer = as
		return as, nil
	}
	return nil, fmt.Errorf("key %s: no correct passphrase given", l.path)
}

package sshclient

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ConnectTimeout bounds the handshake, not only the TCP connect: a server
// that accepts and never speaks fails in ssh's words after the timeout.
func TestConnectTimeoutCoversTheBanner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent
		}
	}()
	start := time.Now()
	_, _, err = dialTest(t, &Dialer{AgentSocket: "none"}, ln.Addr().(*net.TCPAddr).Port,
		Options{Opts: []string{"ConnectTimeout=1"}})
	took := time.Since(start)
	if err == nil || err.Error() != "Connection timed out during banner exchange" {
		t.Fatalf("Dial = %v, want ssh's banner timeout", err)
	}
	if !errors.Is(err, ErrTimedOut) || !Retryable(err) {
		t.Errorf("the banner timeout is not ErrTimedOut, or not retryable: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("Dial took %v with ConnectTimeout=1", took)
	}
}

// A refused login reads as ssh's, and is final.
func TestPermissionDenied(t *testing.T) {
	srv := startServer(t, false, newTestKey(t).pub)
	_, _, err := dialTest(t, &Dialer{AgentSocket: startAgent(t, newTestKey(t))}, srv.port(), Options{})
	if err == nil || err.Error() != "tester@127.0.0.1: Permission denied (publickey)." {
		t.Fatalf("Dial = %v, want ssh's Permission denied", err)
	}
	if Retryable(err) {
		t.Error("a refused key is retryable")
	}
}

// A refused TCP connect reads as ssh's and keeps its errno.
func TestConnectRefusedInSSHWords(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, _, err = dialTest(t, &Dialer{AgentSocket: "none"}, port, Options{})
	want := "connect to host 127.0.0.1 port " + itoa(port) + ": Connection refused"
	if err == nil || err.Error() != want {
		t.Fatalf("Dial = %v, want %q", err, want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("lost the errno: %v", err)
	}
	_, _, err = dialTest(t, &Dialer{AgentSocket: "none"}, 22, Options{Destination: "u@no-such-host.invalid"})
	if err == nil || !strings.HasPrefix(err.Error(), "Could not resolve hostname no-such-host.invalid: ") {
		t.Fatalf("Dial = %v, want ssh's Could not resolve hostname", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// Once a name has resolved, a reconnect that cannot resolve it (the name
// servers are behind the tunnel that is down) uses the last addresses.
func TestDialUsesLastAddressesWhenTheNameFails(t *testing.T) {
	k := newTestKey(t)
	srv := startServer(t, false, k.pub)
	var fail bool
	d := &Dialer{AgentSocket: startAgent(t, k)}
	d.lookup = func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		if fail || host != "gw.test" {
			return nil, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	if _, _, err := dialTest(t, d, srv.port(), Options{Destination: "tester@gw.test"}); err != nil {
		t.Fatal(err)
	}
	fail = true
	if _, _, err := dialTest(t, d, srv.port(), Options{Destination: "tester@gw.test"}); err != nil {
		t.Fatalf("with the name servers gone: %v", err)
	}
	if _, _, err := dialTest(t, d, srv.port(), Options{Destination: "tester@other.test"}); err == nil ||
		!strings.Contains(err.Error(), "Could not resolve hostname other.test: Temporary failure in name resolution") {
		t.Fatalf("a name never resolved: %v", err)
	}
}

// KexAlgorithms, MACs and HostKeyAlgorithms are applied, not dropped: a
// list the server shares connects, one it does not fails the handshake,
// and names x/crypto lacks are left out with a note.
func TestAlgorithmListsApply(t *testing.T) {
	k := newTestKey(t)
	srv := startServer(t, false, k.pub)
	d := &Dialer{AgentSocket: startAgent(t, k)}
	_, cfg, err := dialTest(t, d, srv.port(), Options{Opts: []string{
		"KexAlgorithms=curve25519-sha256,gss-curve25519-sha256-", "MACs=umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
		"Ciphers=chacha20-poly1305@openssh.com", "HostKeyAlgorithms=ssh-ed25519"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.KeyExchanges, ",") != "curve25519-sha256" || strings.Join(cfg.MACs, ",") != "hmac-sha2-256-etm@openssh.com" {
		t.Errorf("kex %q macs %q", cfg.KeyExchanges, cfg.MACs)
	}
	if !strings.Contains(strings.Join(cfg.Notes, "\n"), "umac-128-etm@openssh.com") {
		t.Errorf("no note of the MAC left out: %q", cfg.Notes)
	}
	_, _, err = dialTest(t, d, srv.port(), Options{Opts: []string{"HostKeyAlgorithms=ecdsa-sha2-nistp256"}})
	if err == nil {
		t.Fatal("connected with a host key algorithm the server lacks")
	}
}

// Under -q (LogLevel QUIET) ssh does not say "Permanently added"; nor
// does sshvpn.
func TestQuietAddsHostsSilently(t *testing.T) {
	k := newTestKey(t)
	srv := startServer(t, false, k.pub)
	var stderr bytes.Buffer
	if _, _, err := dialTest(t, &Dialer{AgentSocket: startAgent(t, k), Stderr: &stderr}, srv.port(),
		Options{Opts: []string{"LogLevel=QUIET"}}); err != nil {
		t.Fatal(err)
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr under LogLevel QUIET: %q", stderr.String())
	}
}

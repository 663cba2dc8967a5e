package sshclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/sshvpn/sshvpn/relay"
)

func TestTunnelMode(t *testing.T) {
	for in, want := range map[string]relay.Mode{"": relay.PointToPoint, "yes": relay.PointToPoint, "no": relay.PointToPoint,
		"point-to-point": relay.PointToPoint, "ethernet": relay.Ethernet} {
		if got, err := (&Config{Tunnel: in}).TunnelMode(); err != nil || got != want {
			t.Errorf("Tunnel %q: %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := (&Config{Tunnel: "layer2"}).TunnelMode(); err == nil {
		t.Error("an unknown Tunnel was taken")
	}
}

func TestTunnelUnits(t *testing.T) {
	for in, want := range map[string][2]uint32{"": {relay.AnyUnit, relay.AnyUnit}, "3": {3, relay.AnyUnit},
		"any:7": {relay.AnyUnit, 7}, "0:0": {0, 0}} {
		l, r, err := (&Config{TunnelDevice: in}).TunnelUnits()
		if err != nil || l != want[0] || r != want[1] {
			t.Errorf("TunnelDevice %q: %d:%d, %v; want %d:%d", in, l, r, err, want[0], want[1])
		}
	}
	if _, _, err := (&Config{TunnelDevice: "0:x"}).TunnelUnits(); err == nil {
		t.Error("a bad TunnelDevice was taken")
	}
}

func TestRetryable(t *testing.T) {
	op := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{op(syscall.ECONNREFUSED), true},
		{op(syscall.ENETUNREACH), true},
		{fmt.Errorf("handshake: %w", io.EOF), true},
		{context.DeadlineExceeded, true},
		{&net.DNSError{Err: "server misbehaving", IsTemporary: true}, true},
		{&net.DNSError{Err: "no such host", IsNotFound: true}, false},
		{op(syscall.EACCES), false},
		{errors.New("ssh: unable to authenticate, attempted methods [none publickey]"), false},
		{&knownhosts.KeyError{}, false},
	} {
		if got := Retryable(tt.err); got != tt.want {
			t.Errorf("Retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

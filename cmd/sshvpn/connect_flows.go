package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/sshvpn/sshvpn/proxy"
	"github.com/sshvpn/sshvpn/stack"
)

// dialDevice dials a connection the device's flow terminator took (with
// --transport flow): a direct-tcpip channel to the destination's address,
// as a proxy's flow.
func (f *flows) dialDevice(ctx context.Context, _, dst netip.AddrPort) (net.Conn, error) {
	conn, err := f.dial(ctx, dst.Addr().String(), dst.Port())
	if err != nil {
		return nil, deviceFlowError(err)
	}
	return conn, nil
}

// deviceFlowError puts a flow's refusal in the terminator's terms: a
// server that forbids forwarding makes the device's TCP go as packets, a
// refusing destination resets the application's connection, and the rest
// is unreachable.
func deviceFlowError(err error) error {
	switch {
	case errors.Is(err, proxy.ErrNotAllowed):
		return fmt.Errorf("%w: %w", stack.ErrFlowProhibited, err)
	case errors.Is(err, proxy.ErrRefused):
		return fmt.Errorf("%w: %w", stack.ErrFlowRefused, err)
	}
	return err
}

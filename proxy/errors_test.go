package proxy

import (
	"context"
	"fmt"
	"syscall"
	"testing"
)

func TestReplyMapping(t *testing.T) {
	for _, tc := range []struct {
		err    error
		socks5 byte
		http   int
	}{
		{ErrNotSupported, 0x07, 501},
		{fmt.Errorf("UDP ASSOCIATE: no tunnel: %w", ErrNotSupported), 0x07, 501},
		{errTooManyUDP, 0x01, 503},
		{ErrRefused, 0x05, 502},
		{ErrNotAllowed, 0x02, 403},
		{ErrNetUnreachable, 0x03, 502},
		{ErrHostUnreachable, 0x04, 502},
		{ErrTimeout, 0x06, 504},
		{ErrUnavailable, 0x01, 503},
		{syscall.ECONNREFUSED, 0x05, 502},
		{syscall.ENETUNREACH, 0x03, 502},
		{syscall.EHOSTUNREACH, 0x04, 502},
		{syscall.ETIMEDOUT, 0x06, 504},
		{context.DeadlineExceeded, 0x06, 504},
		{fmt.Errorf("open direct-tcpip to h:80: %w", ErrNotAllowed), 0x02, 403},
		{errTest, 0x01, 502},
	} {
		if got := SOCKS5Reply(tc.err); got != tc.socks5 {
			t.Errorf("SOCKS5Reply(%v) = %02x, want %02x", tc.err, got, tc.socks5)
		}
		if got := SOCKS4Reply(tc.err); got != 0x5b {
			t.Errorf("SOCKS4Reply(%v) = %02x, want 5b", tc.err, got)
		}
		if got := HTTPStatus(tc.err); got != tc.http {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tc.err, got, tc.http)
		}
	}
}

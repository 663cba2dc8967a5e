package sshclient

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
)

// Retryable tells a passing network failure of Dial (worth a reconnect)
// from one the user must fix: a refused key, a changed host key, a refused
// tunnel, a host name that does not resolve. syscall.Errno is a net.Error,
// so the test is by errno, not by type.
func Retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimedOut) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	for _, e := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	if dns, ok := errors.AsType[*net.DNSError](err); ok {
		return dns.IsTemporary || dns.IsTimeout
	}
	return false
}

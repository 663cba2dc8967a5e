package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"syscall"
)

// Sentinel errors a DialFunc wraps so that each protocol can tell its
// client why a connection failed, in that protocol's own words.
var (
	ErrRefused         = errors.New("connection refused at the far end")
	ErrNotAllowed      = errors.New("connection not allowed by the far end's policy")
	ErrNetUnreachable  = errors.New("network unreachable from the far end")
	ErrHostUnreachable = errors.New("host unreachable from the far end")
	ErrTimeout         = errors.New("connection timed out at the far end")
	ErrUnavailable     = errors.New("the far end is unavailable")
	// ErrNotSupported says the far side cannot do what was asked at all
	// (UDP when there is no tunnel), as opposed to failing this time.
	ErrNotSupported = errors.New("not supported by the far end")

	// errTooMany answers a connection past MaxConns; it is reported as
	// ErrUnavailable is.
	errTooMany = errors.New("too many connections on this proxy listener")
	// errTooManyUDP answers a UDP ASSOCIATE past maxAssociations, as
	// ErrUnavailable is.
	errTooManyUDP = fmt.Errorf("too many UDP associations on this proxy listener (limit %d)", maxAssociations)
)

// Reason classifies a failed dial; Stats counts failures by it.
type Reason int

const (
	ReasonOther Reason = iota // anything not recognised below: a general failure
	ReasonRefused
	ReasonNotAllowed
	ReasonNetUnreachable
	ReasonHostUnreachable
	ReasonTimeout
	ReasonUnavailable
	ReasonNotSupported
	numReasons
)

var reasonNames = [numReasons]string{"other", "refused", "not-allowed", "net-unreachable", "host-unreachable", "timeout", "unavailable", "not-supported"}

func (r Reason) String() string {
	if r < 0 || r >= numReasons {
		return "unknown"
	}
	return reasonNames[r]
}

// ReasonOf classifies err: the sentinels above first, then the kernel's
// errno values a dialler may pass on unwrapped.
func ReasonOf(err error) Reason {
	switch {
	case errors.Is(err, ErrRefused), errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, ErrNotAllowed):
		return ReasonNotAllowed
	case errors.Is(err, ErrNetUnreachable), errors.Is(err, syscall.ENETUNREACH):
		return ReasonNetUnreachable
	case errors.Is(err, ErrHostUnreachable), errors.Is(err, syscall.EHOSTUNREACH):
		return ReasonHostUnreachable
	case errors.Is(err, ErrTimeout), errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, ErrUnavailable), errors.Is(err, errTooMany), errors.Is(err, errTooManyUDP):
		return ReasonUnavailable
	case errors.Is(err, ErrNotSupported):
		return ReasonNotSupported
	}
	return ReasonOther
}

// SOCKS5 reply codes (RFC 1928 §6).
const (
	socks5Succeeded       = 0x00
	socks5GeneralFailure  = 0x01
	socks5NotAllowed      = 0x02
	socks5NetUnreachable  = 0x03
	socks5HostUnreachable = 0x04
	socks5Refused         = 0x05
	socks5TTLExpired      = 0x06
	socks5CmdUnsupported  = 0x07
	socks5AddrUnsupported = 0x08
)

// SOCKS4 reply codes: it has one way to say no.
const (
	socks4Granted  = 0x5a
	socks4Rejected = 0x5b
)

// socks5Reply is the SOCKS5 REP for each reason. RFC 1928 has no code for
// a timeout; 06 (TTL expired) is what clients print as one.
var socks5Reply = [numReasons]byte{
	ReasonOther:           socks5GeneralFailure,
	ReasonRefused:         socks5Refused,
	ReasonNotAllowed:      socks5NotAllowed,
	ReasonNetUnreachable:  socks5NetUnreachable,
	ReasonHostUnreachable: socks5HostUnreachable,
	ReasonTimeout:         socks5TTLExpired,
	ReasonUnavailable:     socks5GeneralFailure,
	ReasonNotSupported:    socks5CmdUnsupported,
}

// httpStatus is the HTTP status for each reason.
var httpStatus = [numReasons]int{
	ReasonOther:           http.StatusBadGateway,
	ReasonRefused:         http.StatusBadGateway,
	ReasonNotAllowed:      http.StatusForbidden,
	ReasonNetUnreachable:  http.StatusBadGateway,
	ReasonHostUnreachable: http.StatusBadGateway,
	ReasonTimeout:         http.StatusGatewayTimeout,
	ReasonUnavailable:     http.StatusServiceUnavailable,
	ReasonNotSupported:    http.StatusNotImplemented,
}

// SOCKS5Reply, SOCKS4Reply and HTTPStatus say how each protocol reports err.
func SOCKS5Reply(err error) byte { return socks5Reply[ReasonOf(err)] }

// SOCKS4Reply is always "rejected or failed" (5B): SOCKS4 has no finer code.
func SOCKS4Reply(err error) byte { return socks4Rejected }

// HTTPStatus is the status an HTTP proxy answers err with.
func HTTPStatus(err error) int { return httpStatus[ReasonOf(err)] }

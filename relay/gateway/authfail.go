package gateway

import (
	"errors"

	"golang.org/x/crypto/ssh"
)

// The reasons a login is refused, as sshvpn status counts them.
const (
	refusedUnknownKey  = "unknown_key" // the key is on no line
	refusedFrom        = "from"        // a from= on its line does not match
	refusedExpired     = "expired"     // its line's expiry-time= passed
	refusedCertificate = "certificate" // a certificate its CA's line refuses
	refusedUnreadable  = "unreadable"  // authorized_keys could not be read
	refusedHandshake   = "handshake"   // the SSH handshake failed before any key was refused
)

// refusal is a Lookup error that knows its reason; its text is its
// cause's, unchanged.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refused(reason string, err error) error { return &refusal{reason, err} }

// refusalReason classifies a Lookup error.
func refusalReason(err error, cert bool) string {
	if r, ok := errors.AsType[*refusal](err); ok {
		return r.reason
	}
	if cert {
		return refusedCertificate
	}
	return refusedUnreadable
}

// countAuthFailure counts one refused login by reason.
func (s *Server) countAuthFailure(reason string) {
	s.mu.Lock()
	s.authFailures[reason]++
	s.mu.Unlock()
}

// handshakeFailed counts a handshake that failed for another reason than
// a refused key, which authenticate counted already.
func (s *Server) handshakeFailed(err error) {
	if _, ok := errors.AsType[*ssh.ServerAuthError](err); ok {
		return
	}
	s.countAuthFailure(refusedHandshake)
}

//go:build !linux

package status

import (
	"errors"
	"net"
)

// peerUID cannot learn a peer's uid here: without it, status serves no
// one and believes no server, rather than guess.
func peerUID(*net.UnixConn) (int, error) {
	return -1, errors.New("peer credentials: not supported on this system")
}

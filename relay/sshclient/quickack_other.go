//go:build !linux

package sshclient

import "net"

// TCP_QUICKACK is Linux's; elsewhere the connection is left as it is.
func quickAck(c net.Conn) net.Conn { return c }

func noQuickAck(net.Conn) {}

package sshchan

import (
	"bufio"
	"net"
)

// readBuffer is what one read of the connection under an SSH transport
// asks for. x/crypto/ssh reads its connection through a 4 KiB bufio.Reader:
// at tunnel rates that is one read(2) for every two or three packets, a
// sixth of a client's CPU in the profile of a download from a stock sshd.
// 64 KiB takes what a busy socket holds in one read.
const readBuffer = 64 << 10

// bufferedConn is a net.Conn whose reads go through a large buffer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

// BufferReads wraps c, the connection an SSH client or server will run
// on, so that the transport's small reads are served from one large read.
func BufferReads(c net.Conn) net.Conn {
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBuffer)}
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

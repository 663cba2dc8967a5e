package sshclient

import (
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Stock sshd runs a tunnel without a tty and so never sets TCP_NODELAY on
// its connection: a small message it sends while another is still
// unacknowledged (a ping's reply, a window adjust) waits for our ACK, and
// our kernel delays that ACK: an idle ping through a stock sshd took
// 16 ms instead of 0.4. Asking the kernel for a quick ACK after every read
// of the connection lets sshd's Nagle go at once; what it costs (smaller
// segments from sshd in an upload) and the runs that decided it are in
// bench/README.md, "Why the constants are what they are".
//
// TCP_QUICKACK is not sticky, so it is set again after each read: one
// setsockopt per read of the connection, which BufferReads makes reads of
// up to 64 KiB. An sshvpn peer sets TCP_NODELAY, as every Go program does,
// and is read without it.

// quickAckConn is a TCP connection that acknowledges what it reads at once.
type quickAckConn struct {
	*net.TCPConn
	rc  syscall.RawConn
	set func(fd uintptr) // made once: a closure per Read would allocate
	on  atomic.Bool
}

// quickAck wraps c, if it is TCP, so that its reads ask for a quick ACK.
func quickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{TCPConn: tc, rc: rc}
	q.set = func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) }
	q.on.Store(true)
	return q
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 && c.on.Load() {
		c.rc.Control(c.set) // fails only on a closed socket, which the next Read reports
	}
	return n, err
}

// noQuickAck stops c's quick ACKs, for a peer that does not need them.
func noQuickAck(c net.Conn) {
	if q, ok := c.(*quickAckConn); ok {
		q.on.Store(false)
	}
}
